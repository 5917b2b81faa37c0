// containerd-style state for pods and containers: objects in a Map, each checkpointed to its own JSON file
// (temp → fsync → rename) before memory changes, looked up by full id or a unique id prefix (crictl passes
// short ids). Names are reserved until their object is removed.
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errnoCode } from '../common/errors';
import { TEMP_PREFIX, writeFileAtomic } from './atomic-file';

export interface Stored {
  id: string;
}

export class ObjectStore<T extends Stored> {
  private readonly objects = new Map<string, T>();

  constructor(
    private readonly dir: string,
    /** "pod sandbox", "container": used in error messages. */
    private readonly kind: string,
  ) {}

  /** Loads every checkpoint; a file that cannot be read is reported (the caller decides), never silently dropped. */
  async init(): Promise<{ unreadable: { id: string; error: string }[] }> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const unreadable: { id: string; error: string }[] = [];
    for (const name of await fs.readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await fs.rm(file, { force: true });
        continue;
      }
      if (!name.endsWith('.json')) continue;
      const id = name.slice(0, -5);
      try {
        const obj = JSON.parse(await fs.readFile(file, 'utf8')) as T;
        if (obj.id !== id) throw new Error(`checkpoint names id ${String(obj.id)}`);
        this.objects.set(id, Object.freeze(obj));
      } catch (err) {
        unreadable.push({ id, error: err instanceof Error ? err.message : String(err) });
      }
    }
    return { unreadable };
  }

  get(id: string): T | undefined {
    return this.objects.get(id);
  }

  /** By full id or unique prefix; NOT_FOUND when none, INVALID_ARGUMENT when the prefix is ambiguous. */
  resolve(idOrPrefix: string): T {
    const exact = this.objects.get(idOrPrefix);
    if (exact) return exact;
    const found = this.find(idOrPrefix);
    if (found.length === 1) return found[0] as T;
    if (found.length > 1) throw new BerthError('INVALID_ARGUMENT', `${this.kind} id prefix "${idOrPrefix}" is ambiguous (${found.length} match)`);
    throw new BerthError('NOT_FOUND', `${this.kind} "${idOrPrefix}" not found`);
  }

  /** Like resolve, but undefined instead of NOT_FOUND. */
  lookup(idOrPrefix: string): T | undefined {
    const exact = this.objects.get(idOrPrefix);
    if (exact) return exact;
    const found = this.find(idOrPrefix);
    if (found.length > 1) throw new BerthError('INVALID_ARGUMENT', `${this.kind} id prefix "${idOrPrefix}" is ambiguous (${found.length} match)`);
    return found[0];
  }

  private find(prefix: string): T[] {
    if (prefix === '') return [];
    const out: T[] = [];
    for (const [id, obj] of this.objects) if (id.startsWith(prefix)) out.push(obj);
    return out;
  }

  list(): T[] {
    return [...this.objects.values()];
  }

  /** Writes the checkpoint, then updates memory: what is in memory is always on disk. */
  async put(obj: T): Promise<void> {
    await writeFileAtomic(path.join(this.dir, `${obj.id}.json`), JSON.stringify(obj));
    // Frozen: a record changes by a put of a new object, never in place (replies are cached per record object).
    this.objects.set(obj.id, Object.freeze(obj));
  }

  async delete(id: string): Promise<void> {
    try {
      fsSync.unlinkSync(path.join(this.dir, `${id}.json`)); // one syscall: cheaper here than in the thread pool
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw err;
    }
    this.objects.delete(id);
  }
}

/** Names unique within a scope (pod names on the node, container names in a pod) until released. */
export class NameRegistry {
  private readonly names = new Map<string, string>();

  constructor(private readonly kind: string) {}

  reserve(name: string, id: string): void {
    const holder = this.names.get(name);
    if (holder !== undefined && holder !== id) {
      throw new BerthError('ALREADY_EXISTS', `${this.kind} name "${name}" is reserved for ${holder}`);
    }
    this.names.set(name, id);
  }

  release(name: string, id: string): void {
    if (this.names.get(name) === id) this.names.delete(name);
  }

  holder(name: string): string | undefined {
    return this.names.get(name);
  }
}
