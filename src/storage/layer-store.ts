// Unpacked layers, one directory per chain ID, shared by every image that has the layer. A layer becomes visible
// only by the rename of a complete directory, so a crash never leaves a half layer in place; start-up removes the
// temp directories a crash left behind.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errnoCode } from '../common/errors';
import { SingleFlight } from '../common/single-flight';
import { TEMP_PREFIX, writeFileAtomic } from './atomic-file';

export interface LayerRecord {
  chainId: string;
  diffId: string;
  /** Chain ID of the layer below, absent for a base layer. */
  parent?: string;
  /** Bytes of file content unpacked, and tar entries. */
  size: number;
  entries: number;
}

const META = 'layer.json';
const DIFF = 'diff';

export class LayerStore {
  private readonly layers = new Map<string, LayerRecord>();
  private readonly creating = new SingleFlight<LayerRecord>();

  constructor(private readonly dir: string) {}

  /** Loads complete layers; removes temp dirs and any layer dir without its record. */
  async init(): Promise<{ removed: string[] }> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const removed: string[] = [];
    for (const name of await fs.readdir(this.dir)) {
      const full = path.join(this.dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await fs.rm(full, { recursive: true, force: true });
        removed.push(name);
        continue;
      }
      try {
        const record = JSON.parse(await fs.readFile(path.join(full, META), 'utf8')) as LayerRecord;
        if (record.chainId !== `sha256:${name}`) throw new Error('record does not match its directory');
        this.layers.set(record.chainId, record);
      } catch {
        await fs.rm(full, { recursive: true, force: true });
        removed.push(name);
      }
    }
    return { removed };
  }

  get(chainId: string): LayerRecord | undefined {
    return this.layers.get(chainId);
  }

  list(): LayerRecord[] {
    return [...this.layers.values()];
  }

  /** The unpacked content of a layer: an overlay lower dir. */
  diffPath(chainId: string): string {
    return path.join(this.dir, hex(chainId), DIFF);
  }

  /**
   * Creates the layer once, however many callers ask at the same time: `fill` unpacks into an empty directory.
   * `reused` is true when the layer already existed or another caller made it.
   */
  async create(
    layer: { chainId: string; diffId: string; parent?: string },
    fill: (diffDir: string) => Promise<{ bytes: number; entries: number }>,
  ): Promise<{ record: LayerRecord; reused: boolean }> {
    const existing = this.layers.get(layer.chainId);
    if (existing) return { record: existing, reused: true };
    const { promise, shared } = this.creating.run(layer.chainId, async () => {
      const temp = path.join(this.dir, `${TEMP_PREFIX}${hex(layer.chainId).slice(0, 16)}-${randomBytes(6).toString('hex')}`);
      await fs.mkdir(path.join(temp, DIFF), { recursive: true, mode: 0o755 });
      try {
        const { bytes, entries } = await fill(path.join(temp, DIFF));
        const record: LayerRecord = { ...layer, size: bytes, entries };
        await writeFileAtomic(path.join(temp, META), JSON.stringify(record));
        await fs.rename(temp, path.join(this.dir, hex(layer.chainId)));
        this.layers.set(record.chainId, record);
        return record;
      } catch (err) {
        await fs.rm(temp, { recursive: true, force: true });
        throw err;
      }
    });
    return { record: await promise, reused: shared };
  }

  /** Removes a layer: first renamed out of sight, then deleted, so a crash mid-way leaves only a temp dir. */
  async remove(chainId: string): Promise<void> {
    if (this.creating.has(chainId)) throw new BerthError('FAILED_PRECONDITION', `layer ${chainId} is being created`);
    this.layers.delete(chainId);
    const trash = path.join(this.dir, `${TEMP_PREFIX}rm-${randomBytes(6).toString('hex')}`);
    try {
      await fs.rename(path.join(this.dir, hex(chainId)), trash);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    await fs.rm(trash, { recursive: true, force: true });
  }
}

function hex(digest: string): string {
  const m = /^sha256:([a-f0-9]{64})$/.exec(digest);
  if (!m) throw new BerthError('INVALID_ARGUMENT', `not a sha256 digest: "${digest}"`);
  return m[1] as string;
}
