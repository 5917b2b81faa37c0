// The image side of berth: pulling (one pull per reference at a time), resolving what a user names, removing,
// and collecting layers and blobs no image uses. The storage root is locked for the daemon's lifetime.
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError } from '../common/errors';
import { SingleFlight } from '../common/single-flight';
import type { ImageConfig } from '../server/config-schema';
import { BlobStore } from '../storage/blob-store';
import { ImageRecord, ImageStore } from '../storage/image-store';
import { LayerStore } from '../storage/layer-store';
import { lockStore, StoreLock } from '../storage/store-lock';
import { PullLog, PullObserver, pullImage } from './puller';
import { formatName, formatReference, ImageReference, parseReference } from './reference';
import { Credentials, RegistryClient } from './registry-client';

export interface ImageManagerLog extends PullLog {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export class ImageManager {
  readonly blobs: BlobStore;
  readonly layers: LayerStore;
  readonly images: ImageStore;
  private readonly registry: RegistryClient;
  private readonly pulls = new SingleFlight<ImageRecord>();
  private lock: StoreLock | undefined;
  // Layers of a pull in flight have no image record yet: collection waits until no pull runs.
  private activePulls = 0;
  private gcPending = false;
  /** Set by the runtime: the id of a container using the image, if any. */
  imageUser: (imageId: string) => string | undefined = () => undefined;

  constructor(
    private readonly dir: string,
    private readonly config: () => ImageConfig,
    private readonly log: ImageManagerLog,
    private readonly observer: PullObserver,
  ) {
    this.blobs = new BlobStore(path.join(dir, 'blobs'));
    this.layers = new LayerStore(path.join(dir, 'layers'));
    this.images = new ImageStore(path.join(dir, 'images'));
    this.registry = new RegistryClient(config, log);
  }

  async init(): Promise<void> {
    await fs.mkdir(this.dir, { recursive: true, mode: 0o700 });
    this.lock = await lockStore(this.dir, (err) => this.log.error({ err }, 'storage lock compromised'));
    await this.blobs.init();
    const { removed } = await this.layers.init();
    await this.images.init();
    if (removed.length > 0) this.log.warn({ removed }, 'removed incomplete layers left by a crash');
    await this.collectGarbage();
  }

  async close(): Promise<void> {
    await this.lock?.release();
    this.lock = undefined;
  }

  async pull(text: string, auth: Credentials | undefined, signal?: AbortSignal): Promise<ImageRecord> {
    const ref = parseReference(text);
    const key = formatReference(ref);
    const { promise } = this.pulls.run(key, async () => {
      this.activePulls++;
      const started = process.hrtime.bigint();
      let bytes = 0;
      // This pull's own byte count, for its throughput; the shared observer still sees every chunk.
      const observer: PullObserver = {
        bytes: (n) => {
          bytes += n;
          this.observer.bytes(n);
        },
        layerReused: () => this.observer.layerReused(),
      };
      try {
        const deps = { registry: this.registry, blobs: this.blobs, layers: this.layers, config: this.config, log: this.log, observer };
        const record = await this.images.save(await pullImage(deps, ref, auth, signal));
        this.observer.pulled?.(bytes, Number(process.hrtime.bigint() - started) / 1e9);
        return record;
      } finally {
        this.activePulls--;
        if (this.activePulls === 0 && this.gcPending) await this.collectGarbage();
      }
    });
    return promise;
  }

  /** The image a user names: an id (or unique id prefix), a tag, or name@digest; undefined when there is none. */
  resolve(text: string): ImageRecord | undefined {
    return this.lookup(text)?.record;
  }

  private lookup(text: string): { record: ImageRecord; by: 'id' | 'tag' | 'digest'; name: string } | undefined {
    if (/^(sha256:)?[a-f0-9]{64}$/.test(text)) {
      const record = this.images.get(text.startsWith('sha256:') ? text : `sha256:${text}`);
      return record && { record, by: 'id', name: record.id };
    }
    let ref: ImageReference | undefined;
    try {
      ref = parseReference(text);
    } catch {
      ref = undefined;
    }
    if (ref) {
      if (ref.digest !== undefined) {
        const name = `${formatName(ref)}@${ref.digest}`;
        const record = this.images.byDigestRef(name);
        if (record) return { record, by: 'digest', name };
      } else if (ref.tag !== undefined) {
        const name = `${formatName(ref)}:${ref.tag}`;
        const record = this.images.byTag(name);
        if (record) return { record, by: 'tag', name };
      }
    }
    const record = this.images.byIdPrefix(text);
    return record && { record, by: 'id', name: record.id };
  }

  isPinned(record: ImageRecord): boolean {
    const pinned = this.pinnedNames();
    return [...record.repoTags, ...record.repoDigests].some((n) => pinned.has(n));
  }

  private pinnedNames(): Set<string> {
    return new Set(
      this.config().pinned_images.flatMap((p) => {
        try {
          return [formatReference(parseReference(p))];
        } catch {
          return [];
        }
      }),
    );
  }

  /**
   * Removes what `text` names. By tag or digest only that name goes, and the image with it once it has no name
   * left; by id the image goes with all its names. An image a container uses keeps existing (by id: refused).
   * Removing what does not exist is not an error.
   */
  async remove(text: string): Promise<void> {
    const found = this.lookup(text);
    if (!found) return;
    const { record, by, name } = found;
    // A pinned name may not go, and neither may a pinned image as a whole.
    if (by === 'id' ? this.isPinned(record) : this.pinnedNames().has(name)) {
      throw new BerthError('FAILED_PRECONDITION', `image ${name} is pinned (image.pinned_images) and cannot be removed`);
    }
    const user = this.imageUser(record.id);
    if (by === 'id' && user) throw new BerthError('FAILED_PRECONDITION', `image ${record.id} is in use by container ${user}`);
    let left: ImageRecord | undefined = record;
    if (by === 'tag') left = await this.images.untag(record.id, { tags: [name] });
    if (by === 'digest') left = await this.images.untag(record.id, { digests: [name] });
    const named = by !== 'id' && left !== undefined && (left.repoTags.length > 0 || (by === 'digest' && left.repoDigests.length > 0));
    if (named || user) return;
    await this.images.delete(record.id);
    await this.collectGarbage();
  }

  /** Removes layers and blobs that no image references (after a removal, and at start-up after a crash). */
  async collectGarbage(): Promise<void> {
    if (this.activePulls > 0) {
      this.gcPending = true;
      return;
    }
    this.gcPending = false;
    const usedLayers = new Set<string>();
    const usedBlobs = new Set<string>();
    for (const image of this.images.list()) {
      usedBlobs.add(image.id);
      usedBlobs.add(image.manifestDigest);
      for (const ref of image.repoDigests) usedBlobs.add(ref.slice(ref.indexOf('@') + 1));
      for (const layer of image.layers) usedLayers.add(layer.chainId);
    }
    for (const layer of this.layers.list()) {
      if (!usedLayers.has(layer.chainId)) await this.layers.remove(layer.chainId).catch((err: unknown) => this.log.warn({ err, layer: layer.chainId }, 'layer not removed'));
    }
    for (const digest of await this.blobs.list()) {
      if (!usedBlobs.has(digest)) await this.blobs.delete(digest);
    }
  }
}
