// Image records: one JSON file per image (by config digest), written atomically, with in-memory indexes by id,
// tag and digest reference. A tag names one image at a time: pulling a tag again moves it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { KeyedMutex } from '../common/keyed-mutex';
import { TEMP_PREFIX, writeFileAtomic } from './atomic-file';

export interface ImageLayer {
  chainId: string;
  diffId: string;
  /** Digest and size of the layer blob as the registry served it. */
  digest: string;
  size: number;
  mediaType: string;
}

export interface ImageRecord {
  /** The config digest, "sha256:<hex>": the image id the CRI reports. */
  id: string;
  repoTags: string[];
  repoDigests: string[];
  manifestDigest: string;
  layers: ImageLayer[];
  /** Bytes on disk: unpacked layers plus manifest and config. */
  size: number;
  /** USER from the image config, as written there. */
  user: string;
  pulledAtNs: string;
}

export class ImageStore {
  private readonly images = new Map<string, ImageRecord>();
  private readonly tags = new Map<string, string>();
  private readonly digestRefs = new Map<string, string>();
  private readonly writes = new KeyedMutex();

  constructor(private readonly dir: string) {}

  async init(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const name of await fs.readdir(this.dir)) {
      const file = path.join(this.dir, name);
      if (name.startsWith(TEMP_PREFIX)) {
        await fs.rm(file, { force: true });
        continue;
      }
      const record = JSON.parse(await fs.readFile(file, 'utf8')) as ImageRecord;
      this.index(record);
    }
  }

  get(id: string): ImageRecord | undefined {
    return this.images.get(id);
  }

  byTag(tag: string): ImageRecord | undefined {
    const id = this.tags.get(tag);
    return id === undefined ? undefined : this.images.get(id);
  }

  byDigestRef(ref: string): ImageRecord | undefined {
    const id = this.digestRefs.get(ref);
    return id === undefined ? undefined : this.images.get(id);
  }

  /** An image by a unique prefix of its id's hex (crictl passes short ids); undefined when none or ambiguous. */
  byIdPrefix(prefix: string): ImageRecord | undefined {
    const hex = prefix.startsWith('sha256:') ? prefix.slice(7) : prefix;
    if (!/^[a-f0-9]{3,64}$/.test(hex)) return undefined;
    let found: ImageRecord | undefined;
    for (const record of this.images.values()) {
      if (!record.id.slice(7).startsWith(hex)) continue;
      if (found) return undefined;
      found = record;
    }
    return found;
  }

  list(): ImageRecord[] {
    return [...this.images.values()];
  }

  /** Adds or updates an image, merging names with its existing record and taking its tags from other images. */
  async save(incoming: ImageRecord): Promise<ImageRecord> {
    return this.writes.with('images', async () => {
      const existing = this.images.get(incoming.id);
      const record: ImageRecord = existing
        ? { ...incoming, repoTags: union(existing.repoTags, incoming.repoTags), repoDigests: union(existing.repoDigests, incoming.repoDigests) }
        : incoming;
      for (const tag of incoming.repoTags) {
        const holder = this.byTag(tag);
        if (holder && holder.id !== record.id) await this.write({ ...holder, repoTags: holder.repoTags.filter((t) => t !== tag) });
      }
      await this.write(record);
      return record;
    });
  }

  /** Drops names from an image; returns the record as left (it stays, perhaps with no names, until deleted). */
  async untag(id: string, names: { tags?: string[]; digests?: string[] }): Promise<ImageRecord | undefined> {
    return this.writes.with('images', async () => {
      const record = this.images.get(id);
      if (!record) return undefined;
      const next = {
        ...record,
        repoTags: record.repoTags.filter((t) => !(names.tags ?? []).includes(t)),
        repoDigests: record.repoDigests.filter((d) => !(names.digests ?? []).includes(d)),
      };
      await this.write(next);
      return next;
    });
  }

  async delete(id: string): Promise<void> {
    await this.writes.with('images', async () => {
      const record = this.images.get(id);
      if (!record) return;
      await fs.rm(this.file(id), { force: true });
      this.unindex(record);
    });
  }

  private file(id: string): string {
    return path.join(this.dir, `${id.replace(/^sha256:/, '')}.json`);
  }

  private async write(record: ImageRecord): Promise<void> {
    await writeFileAtomic(this.file(record.id), JSON.stringify(record));
    const old = this.images.get(record.id);
    if (old) this.unindex(old);
    this.index(record);
  }

  private index(record: ImageRecord): void {
    this.images.set(record.id, record);
    for (const tag of record.repoTags) this.tags.set(tag, record.id);
    for (const ref of record.repoDigests) this.digestRefs.set(ref, record.id);
  }

  private unindex(record: ImageRecord): void {
    this.images.delete(record.id);
    for (const tag of record.repoTags) if (this.tags.get(tag) === record.id) this.tags.delete(tag);
    for (const ref of record.repoDigests) if (this.digestRefs.get(ref) === record.id) this.digestRefs.delete(ref);
  }
}

function union(a: string[], b: string[]): string[] {
  return [...new Set([...a, ...b])];
}
