// Resolve a container's user (uid, gid, supplementary groups, home) from the CRI security context and the image's
// USER, looking names up in the image's /etc/passwd and /etc/group. The files are opened with openat2(RESOLVE_IN_ROOT),
// so a hostile image whose `etc/passwd -> /etc/passwd` or `etc -> /` resolves inside the rootfs, never to the host's.
import fs from 'node:fs';
import { promisify } from 'node:util';
import * as nfs from '../../native/fs';
import { BerthError, errnoCode, errorMessage, invalidArgument } from '../common/errors';

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** The primary gid first (as containerd and moby do), then /etc/group memberships, then supplemental groups. */
  additionalGids: number[];
  username?: string;
  home: string;
}

export interface UserSpec {
  runAsUser?: bigint | number;
  runAsGroup?: bigint | number;
  runAsUsername?: string;
  /** The image config's USER: "", "name", "uid", "name:group", "uid:gid", "name:gid", "uid:group". */
  imageUser: string;
  supplementalGroups: number[];
  /** CRI supplemental_groups_policy Strict: ignore the image's /etc/group memberships. */
  strictGroups?: boolean;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

export const MAX_ID_FILE_BYTES = 1024 * 1024;
const MAX_ID = 0xffffffff;

const read = promisify(fs.read);

function parseId(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= MAX_ID ? n : undefined;
}

/** Parse passwd(5) text; comments, NIS `+`/`-` lines and malformed lines are skipped. */
export function parsePasswd(text: string): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    const uid = parseId(f[2]);
    const gid = parseId(f[3]);
    if (!f[0] || uid === undefined || gid === undefined) continue;
    out.push({ name: f[0], uid, gid, home: f[5] || '/' });
  }
  return out;
}

/** Parse group(5) text; malformed lines are skipped. */
export function parseGroup(text: string): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#') || line.startsWith('+') || line.startsWith('-')) continue;
    const f = line.split(':');
    const gid = parseId(f[2]);
    if (!f[0] || gid === undefined) continue;
    const members = (f[3] ?? '').split(',').map((m) => m.trim()).filter((m) => m !== '');
    out.push({ name: f[0], gid, members });
  }
  return out;
}

const RESOLVE = nfs.RESOLVE_IN_ROOT | nfs.RESOLVE_NO_MAGICLINKS;

/**
 * Read a small regular file at `rel` inside `rootfs`, resolving every link inside it. Missing → undefined.
 * The type is checked through an O_PATH handle first: opening a FIFO would block, a device could have side effects.
 */
export async function readFileInRoot(rootfs: string, rel: string, maxBytes = MAX_ID_FILE_BYTES): Promise<Buffer | undefined> {
  const shown = `/${rel}`;
  const fail = (what: string): BerthError => invalidArgument(`image file ${shown}: ${what}`);
  const fds: number[] = [];
  try {
    fds.push(fs.openSync(rootfs, fs.constants.O_RDONLY | nfs.O_DIRECTORY | nfs.O_CLOEXEC));
    const rootFd = fds[0] as number;
    let pathFd: number;
    try {
      pathFd = nfs.openat2(rootFd, rel, nfs.O_PATH | nfs.O_CLOEXEC, 0, RESOLVE);
    } catch (err) {
      const code = errnoCode(err);
      // ELOOP: e.g. `etc/passwd -> /etc/passwd`, which inside the root points at itself.
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') return undefined;
      throw fail(`cannot open: ${errorMessage(err)}`);
    }
    fds.push(pathFd);
    const pre = fs.fstatSync(pathFd);
    if (!pre.isFile()) throw fail('not a regular file');
    const fd = nfs.openat2(rootFd, rel, nfs.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY | nfs.O_CLOEXEC, 0, RESOLVE);
    fds.push(fd);
    const st = fs.fstatSync(fd);
    if (!st.isFile() || st.ino !== pre.ino || st.dev !== pre.dev) throw fail('changed while being opened');
    let buf = Buffer.alloc(Math.min(st.size, maxBytes) + 1);
    let len = 0;
    for (;;) {
      if (len === buf.length) buf = Buffer.concat([buf, Buffer.alloc(Math.min(buf.length, maxBytes + 1 - len))]);
      const { bytesRead } = await read(fd, buf, len, buf.length - len, null);
      if (bytesRead === 0) break;
      len += bytesRead;
      if (len > maxBytes) throw fail(`larger than ${maxBytes} bytes`);
    }
    return buf.subarray(0, len);
  } catch (err) {
    if (err instanceof BerthError) throw err;
    throw fail(errorMessage(err));
  } finally {
    for (const fd of fds.reverse()) fs.closeSync(fd);
  }
}

function toId(v: bigint | number, field: string): number {
  const n = typeof v === 'bigint' ? v : BigInt(Number.isInteger(v) ? v : -1);
  if (n < 0n || n > BigInt(MAX_ID)) throw invalidArgument(`${field}: ${String(v)} is not a valid id (0..${MAX_ID})`);
  return Number(n);
}

/** Resolve the user as containerd does: run_as_user / run_as_username win over the image's USER; run_as_group wins. */
export async function resolveUser(rootfs: string, spec: UserSpec): Promise<ResolvedUser> {
  const passwdBytes = await readFileInRoot(rootfs, 'etc/passwd');
  const groupBytes = await readFileInRoot(rootfs, 'etc/group');
  const passwd = parsePasswd(passwdBytes?.toString('utf8') ?? '');
  const groups = parseGroup(groupBytes?.toString('utf8') ?? '');

  const byName = (name: string, what: string): PasswdEntry => {
    const e = passwd.find((p) => p.name === name);
    if (!e) throw invalidArgument(`user ${JSON.stringify(name)} not found in the image's /etc/passwd (${what})`);
    return e;
  };
  const byUid = (uid: number): PasswdEntry | undefined => passwd.find((p) => p.uid === uid);

  let entry: PasswdEntry | undefined;
  let uid: number;
  let gid: number | undefined;
  if (spec.runAsUser !== undefined) {
    uid = toId(spec.runAsUser, 'run_as_user');
    entry = byUid(uid);
  } else if (spec.runAsUsername) {
    entry = byName(spec.runAsUsername, 'run_as_username');
    uid = entry.uid;
  } else {
    const [userPart = '', groupPart] = splitOnce(spec.imageUser.trim(), ':');
    const numeric = userPart === '' ? 0 : parseId(userPart);
    if (numeric !== undefined) {
      uid = numeric;
      entry = byUid(uid);
    } else {
      entry = byName(userPart, 'image USER');
      uid = entry.uid;
    }
    if (groupPart !== undefined && groupPart !== '') {
      gid = parseId(groupPart);
      if (gid === undefined) {
        const g = groups.find((x) => x.name === groupPart);
        if (!g) throw invalidArgument(`group ${JSON.stringify(groupPart)} not found in the image's /etc/group (image USER)`);
        gid = g.gid;
      }
    }
  }
  gid ??= entry?.gid ?? 0;
  if (spec.runAsGroup !== undefined) gid = toId(spec.runAsGroup, 'run_as_group');

  const additional = new Set<number>([gid]);
  const name = entry?.name;
  if (name !== undefined && !spec.strictGroups) {
    for (const g of groups) if (g.members.includes(name)) additional.add(g.gid);
  }
  for (const g of spec.supplementalGroups) additional.add(toId(g, 'supplemental_groups'));

  const resolved: ResolvedUser = { uid, gid, additionalGids: [...additional], home: entry?.home ?? '/' };
  if (name !== undefined) resolved.username = name;
  return resolved;
}

function splitOnce(s: string, sep: string): [string, string | undefined] {
  const i = s.indexOf(sep);
  return i < 0 ? [s, undefined] : [s.slice(0, i), s.slice(i + 1)];
}
