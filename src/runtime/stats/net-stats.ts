// A pod's network counters from /proc/net/dev as its network namespace sees it. Node never setns()es (only the
// calling thread would move, and libuv's threads would not): either a pod process's /proc/<pid>/net/dev (which
// shows that process's namespace), or nsenter + cat in a child process.
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import { BerthError, errnoCode, errorMessage, invalidArgument } from '../../common/errors';

const NSENTER = '/usr/bin/nsenter';
const CAT = '/usr/bin/cat';
const CHILD_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
const DEFAULT_TIMEOUT_MS = 5_000;

export interface NetInterfaceStats {
  name: string;
  rxBytes: bigint;
  rxErrors: bigint;
  txBytes: bigint;
  txErrors: bigint;
}

const COUNTER = /^\d+$/;

/** Pure: every interface in /proc/net/dev text (two header lines, then `name: 8 rx counters 8 tx counters`). A
 *  line in another shape is an INTERNAL error (berth read the wrong thing), not a guess. */
export function parseNetDev(text: string): NetInterfaceStats[] {
  const out: NetInterfaceStats[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.includes('|')) continue; // the headers: "Inter-|   Receive …" and " face |bytes …"
    // The name is right-aligned in 6 columns and a long byte count follows the colon without a space
    // ("veth1a2b3c:123456789"); names cannot contain ':'.
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim();
    const fields = line.slice(colon + 1).trim().split(/\s+/);
    if (colon < 0 || name === '' || fields.length !== 16 || !fields.every((f) => COUNTER.test(f))) {
      throw new BerthError('INTERNAL', `/proc/net/dev line not in the kernel's format: ${JSON.stringify(line.slice(0, 200))}`);
    }
    const n = (i: number): bigint => BigInt(fields[i] as string);
    out.push({ name, rxBytes: n(0), rxErrors: n(2), txBytes: n(8), txErrors: n(10) });
  }
  return out;
}

export interface PodNetStatsOptions {
  /** A process in the pod's network namespace (e.g. pause or a container's init): read without any namespace switch. */
  pid?: number;
  /** The pod's pinned netns file; checked against the pid's namespace, and read with nsenter when the pid does not do. */
  netnsPath?: string;
  /** For the nsenter child. Default 5 s. */
  timeoutMs?: number;
}

export interface PodNetStats {
  /** Every interface but lo. */
  interfaces: NetInterfaceStats[];
  /** Which way they were read. */
  source: 'pid' | 'nsenter';
}

export async function readPodNetStats(opts: PodNetStatsOptions): Promise<PodNetStats> {
  const { pid, netnsPath } = opts;
  if (pid === undefined && netnsPath === undefined) throw invalidArgument('pod net stats need a pid or a netns path');
  if (pid !== undefined && (!Number.isInteger(pid) || pid <= 0)) throw invalidArgument(`bad pid ${pid}`);
  const expected = netnsPath === undefined ? undefined : await netnsId(netnsPath);

  if (pid !== undefined) {
    const text = await fs.readFile(`/proc/${pid}/net/dev`, 'utf8').catch((err: unknown) => {
      if (netnsPath !== undefined) return undefined; // gone: the pinned file still works
      throw new BerthError('NOT_FOUND', `reading /proc/${pid}/net/dev: ${errorMessage(err)}`, { cause: err });
    });
    // Checked after the read: had the pid died and been reused in between, the link would not match now either.
    if (text !== undefined && (expected === undefined || (await fs.readlink(`/proc/${pid}/ns/net`).catch(() => '')) === expected)) {
      return { interfaces: withoutLo(parseNetDev(text)), source: 'pid' };
    }
  }
  return { interfaces: withoutLo(parseNetDev(await nsenterCat(netnsPath as string, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS))), source: 'nsenter' };
}

const withoutLo = (list: NetInterfaceStats[]): NetInterfaceStats[] => list.filter((i) => i.name !== 'lo');

/** `net:[<inode>]`, what readlink(/proc/<pid>/ns/net) gives for a process in the namespace pinned at `file`. */
async function netnsId(file: string): Promise<string> {
  try {
    return `net:[${(await fs.stat(file, { bigint: true })).ino}]`;
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new BerthError('NOT_FOUND', `netns ${file} does not exist`, { cause: err });
    throw new BerthError('INTERNAL', `netns ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

function nsenterCat(netnsPath: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      NSENTER,
      [`--net=${netnsPath}`, '--', CAT, '/proc/net/dev'],
      { env: CHILD_ENV, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const why = err.killed ? `timed out after ${timeoutMs} ms` : typeof err.code === 'number' ? `exit ${err.code}` : errorMessage(err);
        const code = err.killed ? 'DEADLINE_EXCEEDED' : 'INTERNAL';
        reject(new BerthError(code, `reading /proc/net/dev in ${netnsPath}: nsenter failed (${why})${stderr.trim() ? `: ${stderr.trim()}` : ''}`));
      },
    );
  });
}
