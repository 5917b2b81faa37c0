// What one layer tar entry says, read defensively before anything touches the disk: its name cleaned lexically, its
// owner, mode, mtime and the xattrs an image may set, its data written to an fd; and tar-stream patched to keep
// binary PAX xattr values intact.
import { writeSync } from 'node:fs';
import type * as tar from 'tar-stream';
import { BerthError, errnoCode } from '../common/errors';

export type Header = tar.Header;
export type EntryStream = tar.ExtractEvents['entry'][1];
export interface Meta {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
  xattrs: [string, Buffer][];
}

export const PATH_MAX = 4096;
const NAME_MAX = 255;
const XATTR_PAX = 'SCHILY.xattr.';

export const quote = (s: string): string => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
export const invalid = (msg: string): BerthError => new BerthError('INVALID_ARGUMENT', msg);

/** Lexically cleans a tar name ("./a//b/" → "a/b"), refusing one that climbs above the root. */
export function cleanPath(raw: string, what: string): string {
  if (raw.includes('\0')) throw invalid(`${what} has a NUL byte in its name`);
  if (Buffer.byteLength(raw) > PATH_MAX) throw invalid(`${what} has a name longer than ${PATH_MAX} bytes`);
  const parts: string[] = [];
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.pop() === undefined) throw invalid(`${what} escapes the layer root`);
    } else if (Buffer.byteLength(c) > NAME_MAX) {
      throw invalid(`${what} has a path component longer than ${NAME_MAX} bytes`);
    } else {
      parts.push(c);
    }
  }
  return parts.join('/');
}

const validId = (id: number): boolean => Number.isInteger(id) && id >= 0 && id < 0xffffffff;

export function meta(h: Header, what: string, binaryPax: boolean): Meta {
  const pax = (typeof h.pax === 'object' && h.pax !== null ? h.pax : {}) as Record<string, string>;
  const uid = pax['uid'] !== undefined ? Number(pax['uid']) : (h.uid ?? 0);
  const gid = pax['gid'] !== undefined ? Number(pax['gid']) : (h.gid ?? 0);
  if (!validId(uid) || !validId(gid)) throw invalid(`${what} has an invalid owner ${uid}:${gid}`);
  const paxTime = Number(pax['mtime']);
  const headerTime = h.mtime.getTime() / 1000;
  const mtime = Number.isFinite(paxTime) ? paxTime : Number.isFinite(headerTime) ? headerTime : 0;
  const xattrs: [string, Buffer][] = [];
  for (const [key, value] of Object.entries(pax)) {
    if (!key.startsWith(XATTR_PAX)) continue;
    const name = key.slice(XATTR_PAX.length);
    // An image must not fake overlay metadata (opaque, redirect, metacopy); other namespaces are skipped.
    const allowed =
      (name.startsWith('user.') && !name.startsWith('user.overlay.')) ||
      (name.startsWith('trusted.') && !name.startsWith('trusted.overlay.')) ||
      name === 'security.capability';
    if (allowed) xattrs.push([name, Buffer.from(value, binaryPax ? 'latin1' : 'utf8')]);
  }
  return { uid, gid, mode: (h.mode ?? 0o644) & 0o7777, mtime, xattrs };
}

export function setXattrs(m: Meta, what: string, set: (name: string, value: Buffer) => void): void {
  for (const [name, value] of m.xattrs) {
    try {
      set(name, value);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EOPNOTSUPP' || code === 'EPERM') continue; // e.g. user.* on a symlink: not representable
      if (code === 'EINVAL' || code === 'E2BIG' || code === 'ERANGE') throw invalid(`${what} has an invalid xattr ${name}`);
      throw err;
    }
  }
}

/**
 * Reads an entry's data to its end, writing each chunk to `fd` as it arrives (fd -1: discard). Synchronous writes:
 * one chunk at a time is backpressure enough, and small files cost no thread-pool round trip.
 */
export function pump(stream: EntryStream, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      if (err === undefined) resolve();
      else reject(err);
    };
    stream.on('data', (data) => {
      if (done || fd < 0) return;
      const chunk = data as Buffer;
      try {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      } catch (err) {
        finish(err as Error);
      }
    });
    stream.on('end', () => finish());
    stream.on('error', finish);
    stream.on('close', () => done || finish(new Error('layer entry data ended early'))); // 'end' usually came first
  });
}

/**
 * tar-stream decodes PAX values as UTF-8, corrupting binary xattrs (security.capability bytes ≥ 0x80). Re-reads
 * this stream's SCHILY.xattr records as latin1 (byte-preserving). Returns false if tar-stream's internals moved.
 */
export function keepBinaryPax(ex: tar.Extract): boolean {
  interface Internals {
    _header: { type?: string | null } | null;
    _pax: Record<string, string> | null;
    _decodeLongHeader?: (buf: Buffer) => void;
  }
  const inner = ex as unknown as Internals;
  const decode = inner._decodeLongHeader;
  if (typeof decode !== 'function') return false;
  inner._decodeLongHeader = function (this: unknown, buf: Buffer): void {
    decode.call(this, buf);
    if (inner._header?.type !== 'pax-header' || !inner._pax) return;
    // Records are "<len> <key>=<value>\n", len counting the whole record in bytes.
    for (let off = 0; off < buf.length; ) {
      const sp = buf.indexOf(0x20, off);
      const len = sp < 0 ? NaN : Number(buf.toString('latin1', off, sp));
      if (!(len > sp - off + 1) || off + len > buf.length) break;
      const record = buf.subarray(sp + 1, off + len - 1);
      const eq = record.indexOf(0x3d);
      const key = eq < 0 ? '' : record.toString('utf8', 0, eq);
      if (key.startsWith(XATTR_PAX)) inner._pax[key] = record.toString('latin1', eq + 1);
      off += len;
    }
  };
  return true;
}
