// CheckpointContainer through the OCI runtime and CRIU, packed like CRI-O's archives: a tar with the CRIU images under
// checkpoint/, the OCI spec (spec.dump) and berth's record of the container (config.dump). Without a working CRIU the
// call fails at once with FAILED_PRECONDITION, never a hang.
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { BerthError, errorMessage, failedPrecondition, invalidArgument } from '../common/errors';
import { run } from './process';
import type { ContainerRecord } from './container-manager';
import type { OciRuntime } from './oci-runtime';

const CRIU_DIRS = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const CHECK_TIMEOUT_MS = 15_000;

let criuVerdict: Promise<{ path: string } | { error: string }> | undefined;

/** Finds CRIU and asks it whether this kernel supports checkpointing (once per process). */
export function criuUsable(dirs = CRIU_DIRS): Promise<{ path: string } | { error: string }> {
  const probe = async (): Promise<{ path: string } | { error: string }> => {
    let found: string | undefined;
    for (const d of dirs) {
      const p = path.join(d, 'criu');
      if (await fs.access(p, fs.constants.X_OK).then(() => true, () => false)) {
        found = p;
        break;
      }
    }
    if (!found) return { error: 'CheckpointContainer needs CRIU, which is not installed on this node (Debian package "criu")' };
    const r = await run(found, ['check'], { timeoutMs: CHECK_TIMEOUT_MS }).catch((err: unknown) => ({ code: -1, stderr: Buffer.from(errorMessage(err)), timedOut: false }));
    if (r.code === 0) return { path: found };
    const lines = r.stderr.toString('utf8').trim().split('\n').filter(Boolean);
    return { error: `CRIU (${found}) cannot checkpoint on this host: "criu check" says ${r.timedOut ? 'nothing within 15 s' : lines.at(-1) ?? `exit ${String(r.code)}`}` };
  };
  if (dirs !== CRIU_DIRS) return probe();
  return (criuVerdict ??= probe());
}

export async function checkpointContainer(c: ContainerRecord, runtime: OciRuntime, location: string, timeoutMs: number): Promise<void> {
  if (!path.isAbsolute(location) || location.includes('\0')) throw invalidArgument(`location must be an absolute path for the archive, got "${location.slice(0, 200)}"`);
  if (c.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${c.id} is ${c.state}; only a running container can be checkpointed`);
  const criu = await criuUsable();
  if ('error' in criu) throw failedPrecondition(criu.error);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-checkpoint-'));
  try {
    const images = path.join(work, 'checkpoint');
    await fs.mkdir(images);
    await runtime.checkpoint(c.id, images, work, timeoutMs);
    await fs.copyFile(path.join(c.bundle, 'config.json'), path.join(work, 'spec.dump'));
    await fs.writeFile(path.join(work, 'config.dump'), JSON.stringify({ id: c.id, name: c.name, podId: c.podId, image: c.imageName, imageId: c.imageId, createdAt: c.createdAtNs }));
    const temp = `${location}.tmp-${process.pid}`;
    const r = await run('/bin/tar', ['-C', work, '-cf', temp, 'checkpoint', 'spec.dump', 'config.dump'], { timeoutMs });
    if (r.code !== 0) throw new BerthError('INTERNAL', `checkpoint ${c.id}: packing the archive: ${r.stderr.toString('utf8').trim()}`);
    await fs.rename(temp, location);
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}
