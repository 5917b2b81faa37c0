// The CRI socket file: its directory, a stale file left by a crash, and a live one held by another daemon.
import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { BerthError, errnoCode } from '../common/errors';

/** Makes the socket's directory (0750 when berth creates it) and clears a stale socket file. */
export async function prepareSocketPath(socketPath: string): Promise<void> {
  await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o750 });
  let st;
  try {
    st = await fs.lstat(socketPath);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    throw new BerthError('FAILED_PRECONDITION', `${socketPath} exists and is not a socket; refusing to replace it`);
  }
  if (await isServing(socketPath)) {
    throw new BerthError('FAILED_PRECONDITION', `another process is serving on ${socketPath} (is berth already running?)`);
  }
  await fs.rm(socketPath, { force: true });
}

function isServing(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = net.connect(socketPath);
    const done = (serving: boolean): void => {
      conn.destroy();
      resolve(serving);
    };
    conn.once('connect', () => done(true));
    conn.once('error', () => done(false));
    conn.setTimeout(2000, () => done(true)); // something holds it but does not answer: do not steal it
  });
}

/** Socket 0660, group-owned by `group` (a name or gid) when one is configured. */
export async function secureSocket(socketPath: string, group: string): Promise<void> {
  await fs.chmod(socketPath, 0o660);
  if (group === '') return;
  await fs.chown(socketPath, 0, resolveGid(group));
}

function resolveGid(group: string): number {
  if (/^\d+$/.test(group)) return Number(group);
  try {
    const line = execFileSync('getent', ['group', group], { encoding: 'utf8' });
    const gid = Number(line.split(':')[2]);
    if (Number.isInteger(gid)) return gid;
  } catch {
    // reported below
  }
  throw new BerthError('INVALID_ARGUMENT', `api.socket_group: no group named "${group}"`);
}
