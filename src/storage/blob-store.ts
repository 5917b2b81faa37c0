// Content-addressed store for manifests and configs: one file per sha256 digest, written temp → fsync → rename,
// verified on write and on read (a file changed on disk is reported, never served).
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errnoCode } from '../common/errors';
import { TEMP_PREFIX, writeFileAtomic } from './atomic-file';

const DIGEST = /^sha256:([a-f0-9]{64})$/;

export function sha256Digest(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export class BlobStore {
  constructor(private readonly dir: string) {}

  async init(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await fs.readdir(this.dir)) {
      if (name.startsWith(TEMP_PREFIX)) await fs.rm(path.join(this.dir, name), { force: true });
    }
  }

  private file(digest: string): string {
    const m = DIGEST.exec(digest);
    if (!m) throw new BerthError('INVALID_ARGUMENT', `not a sha256 digest: "${digest}"`);
    return path.join(this.dir, m[1] as string);
  }

  async put(bytes: Uint8Array, expected?: string): Promise<string> {
    const digest = sha256Digest(bytes);
    if (expected !== undefined && expected !== digest) {
      throw new BerthError('DATA_LOSS', `content digest mismatch: expected ${expected}, got ${digest}`);
    }
    const file = this.file(digest);
    if (!(await this.has(digest))) await writeFileAtomic(file, bytes, 0o600);
    return digest;
  }

  async get(digest: string): Promise<Buffer> {
    const bytes = await fs.readFile(this.file(digest));
    if (sha256Digest(bytes) !== digest) throw new BerthError('DATA_LOSS', `stored blob ${digest} is corrupt`);
    return bytes;
  }

  async has(digest: string): Promise<boolean> {
    try {
      await fs.access(this.file(digest));
      return true;
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw err;
    }
  }

  async delete(digest: string): Promise<void> {
    await fs.rm(this.file(digest), { force: true });
  }

  async list(): Promise<string[]> {
    return (await fs.readdir(this.dir)).filter((n) => /^[a-f0-9]{64}$/.test(n)).map((n) => `sha256:${n}`);
  }
}
