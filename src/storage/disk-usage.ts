// du for a directory tree, walked asynchronously so a large tree never blocks the event loop. Bytes are blocks
// on disk (what fills the filesystem, as the kubelet's eviction cares about), hard links counted once.
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../common/errors';

export interface DiskUsage {
  bytes: bigint;
  inodes: bigint;
}

export async function diskUsage(dir: string): Promise<DiskUsage> {
  const seen = new Set<string>();
  let bytes = 0n;
  let inodes = 0n;
  const pending: string[] = [dir];
  while (pending.length > 0) {
    const current = pending.pop() as string;
    let st;
    try {
      st = await fs.lstat(current, { bigint: true });
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue; // removed while we walked
      throw err;
    }
    const key = `${st.dev}:${st.ino}`;
    if (seen.has(key)) continue;
    seen.add(key);
    inodes += 1n;
    bytes += st.blocks * 512n;
    if (!st.isDirectory()) continue;
    let names: string[];
    try {
      names = await fs.readdir(current);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) pending.push(path.join(current, name));
  }
  return { bytes, inodes };
}
