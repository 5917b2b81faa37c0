// One berth per storage root: a proper-lockfile lock held for the daemon's lifetime. proper-lockfile decides
// staleness by mtime alone, so after a kill -9 a restart would wait out the stale period; a pid file beside the
// lock lets start-up clear a lock whose owner is provably dead at once.
import fs from 'node:fs/promises';
import path from 'node:path';
import lockfile from 'proper-lockfile';
import { BerthError, errnoCode } from '../common/errors';

export interface StoreLock {
  release(): Promise<void>;
}

const STALE_MS = 10_000;

export async function lockStore(dir: string, onCompromised: (err: Error) => void): Promise<StoreLock> {
  const lockPath = path.join(dir, '.berth.lock');
  const pidPath = path.join(dir, '.berth.pid');
  await clearDeadOwner(lockPath, pidPath);
  let release: () => Promise<void>;
  try {
    release = await lockfile.lock(dir, {
      lockfilePath: lockPath,
      stale: STALE_MS,
      realpath: false,
      retries: { retries: 3, minTimeout: 200, maxTimeout: 500 },
      onCompromised,
    });
  } catch (err) {
    if (errnoCode(err) === 'ELOCKED') {
      const owner = await readPid(pidPath);
      throw new BerthError('FAILED_PRECONDITION', `storage root ${dir} is locked by another berth${owner ? ` (pid ${owner})` : ''}; two daemons must not share a root`);
    }
    throw err;
  }
  await fs.writeFile(pidPath, `${process.pid}\n`);
  return {
    release: async () => {
      await fs.rm(pidPath, { force: true });
      await release();
    },
  };
}

async function clearDeadOwner(lockPath: string, pidPath: string): Promise<void> {
  const pid = await readPid(pidPath);
  if (pid === undefined || pid === process.pid || (await isBerth(pid))) return;
  await fs.rm(lockPath, { recursive: true, force: true });
  await fs.rm(pidPath, { force: true });
}

async function readPid(pidPath: string): Promise<number | undefined> {
  try {
    const pid = Number((await fs.readFile(pidPath, 'utf8')).trim());
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** True when `pid` is alive and looks like a berth daemon (pid reuse by another program does not count). */
async function isBerth(pid: number): Promise<boolean> {
  try {
    const cmdline = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes('berth');
  } catch {
    return false;
  }
}
