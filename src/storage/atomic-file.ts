// Crash-safe file replacement: write a temp file beside the target, fsync it, rename over the target, fsync the
// directory. A reader sees the old content or the new, never a torn file. `durable: false` keeps the rename (no torn
// file for a reader) but skips both fsyncs, for files that a power cut makes meaningless anyway.
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

export const TEMP_PREFIX = '.tmp-';

// Checkpoints and cache entries are a few KiB: open/write/close/rename of those take microseconds in the calling
// thread, where each would cost a thread-pool round trip (≈0.1–0.3 ms on a busy node) done asynchronously. Only the
// fsyncs, which wait for the disk, go to the pool. Bigger data is written asynchronously throughout.
const SMALL_BYTES = 64 * 1024;
const fsyncFd = promisify(fsSync.fsync);

export async function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o600, opts: { durable?: boolean } = {}): Promise<void> {
  const durable = opts.durable ?? true;
  const temp = tempNameFor(file);
  if (data.length <= SMALL_BYTES) await writeSmall(temp, data, mode, durable);
  else await writeLarge(temp, data, mode, durable);
  try {
    fsSync.renameSync(temp, file);
  } catch (err) {
    fsSync.rmSync(temp, { force: true });
    throw err;
  }
  if (durable) await syncDir(path.dirname(file));
}

/** Makes an earlier `durable: false` write of `file` durable: its data, then its directory entry. */
export async function syncFile(file: string): Promise<void> {
  const fd = fsSync.openSync(file, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    fsSync.closeSync(fd);
  }
  await syncDir(path.dirname(file));
}

function tempNameFor(file: string): string {
  return path.join(path.dirname(file), `${TEMP_PREFIX}${path.basename(file)}-${randomBytes(6).toString('hex')}`);
}

async function writeSmall(temp: string, data: string | Uint8Array, mode: number, durable: boolean): Promise<void> {
  const fd = fsSync.openSync(temp, 'wx', mode);
  try {
    fsSync.writeFileSync(fd, data);
    if (durable) await fsyncFd(fd);
  } catch (err) {
    fsSync.closeSync(fd);
    fsSync.rmSync(temp, { force: true });
    throw err;
  }
  fsSync.closeSync(fd);
}

async function writeLarge(temp: string, data: string | Uint8Array, mode: number, durable: boolean): Promise<void> {
  const handle = await fs.open(temp, 'wx', mode);
  try {
    await handle.writeFile(data);
    if (durable) await handle.sync();
  } catch (err) {
    await handle.close();
    await fs.rm(temp, { force: true });
    throw err;
  }
  await handle.close();
}

async function syncDir(dir: string): Promise<void> {
  const fd = fsSync.openSync(dir, 'r');
  try {
    await fsyncFd(fd);
  } finally {
    fsSync.closeSync(fd);
  }
}
