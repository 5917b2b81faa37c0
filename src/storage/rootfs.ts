// Container root filesystems: the image's layers as overlay lower dirs (top layer first) under a per-container
// upper and work dir. The upper dir is what ImageFsInfo counts as the container filesystem.
import fs from 'node:fs/promises';
import path from 'node:path';
import { mountOverlay, umount2, MNT_DETACH } from '../../native/mount';
import { BerthError, errnoCode } from '../common/errors';
import type { LayerStore } from './layer-store';

export interface RootfsPaths {
  dir: string;
  upper: string;
  work: string;
  merged: string;
}

export function rootfsPaths(containersDir: string, containerId: string): RootfsPaths {
  const dir = path.join(containersDir, containerId);
  return { dir, upper: path.join(dir, 'upper'), work: path.join(dir, 'work'), merged: path.join(dir, 'merged') };
}

/** Mounts the container's root filesystem; `chainIds` bottom layer first, as an image lists them. */
export async function mountRootfs(layers: LayerStore, chainIds: string[], paths: RootfsPaths, readonly = false): Promise<string> {
  const lowers = chainIds
    .map((id) => {
      if (!layers.get(id)) throw new BerthError('FAILED_PRECONDITION', `layer ${id} is not in the store`);
      return layers.diffPath(id);
    })
    .reverse();
  for (const dir of [paths.upper, paths.work, paths.merged]) await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  mountOverlay({ lowers, upper: paths.upper, work: paths.work, target: paths.merged, readonly });
  return paths.merged;
}

/** Unmounts if mounted; not mounted is fine (idempotent, and used by recovery). */
export function unmountRootfs(paths: RootfsPaths): void {
  try {
    umount2(paths.merged, MNT_DETACH);
  } catch (err) {
    const code = errnoCode(err);
    if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
  }
}

export async function removeRootfs(paths: RootfsPaths): Promise<void> {
  unmountRootfs(paths);
  await fs.rm(paths.dir, { recursive: true, force: true });
}
