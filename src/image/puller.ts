// The pull pipeline. Manifest (through an index to this platform) → config → every missing layer streamed
// download → digest check → decompress → diff-id check → extract, several layers at once. A layer is never whole in
// memory, a layer another pull is making is awaited rather than made twice, and a pull that stops moving is
// cancelled.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { BerthError, errorMessage } from '../common/errors';
import { nowNs } from '../common/time';
import type { ImageConfig } from '../server/config-schema';
import type { BlobStore } from '../storage/blob-store';
import { sha256Digest } from '../storage/blob-store';
import { extractLayer } from '../storage/extract';
import type { ImageLayer, ImageRecord } from '../storage/image-store';
import type { LayerStore } from '../storage/layer-store';
import { decompressor } from './decompress';
import { parseImageConfig } from './image-config';
import { Compression, parseManifest, selectPlatform } from './manifest';
import { formatName, ImageReference } from './reference';
import type { Credentials, RegistryClient } from './registry-client';

export interface PullObserver {
  bytes(n: number): void;
  layerReused(): void;
  /** Once per successful pull (shared by the callers a single flight joins): layer bytes it downloaded, and its time. */
  pulled?(bytes: number, seconds: number): void;
}

export interface PullLog {
  info(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface PullDeps {
  registry: RegistryClient;
  blobs: BlobStore;
  layers: LayerStore;
  config: () => ImageConfig;
  log: PullLog;
  observer: PullObserver;
}

/** Pulls `ref` and returns the image record it makes (names: the reference it was pulled by). */
export async function pullImage(deps: PullDeps, ref: ImageReference, auth: Credentials | undefined, outer?: AbortSignal): Promise<ImageRecord> {
  const cfg = deps.config();
  const watchdog = progressWatchdog(formatName(ref), cfg.pull_progress_timeout_seconds * 1000, outer);
  const opts = { auth, signal: watchdog.signal };
  try {
    const top = await deps.registry.getManifest(ref, opts);
    let manifestBytes = top.bytes;
    let manifestDigest = top.digest;
    let manifest = parseManifest(top.bytes, top.mediaType);
    if (manifest.kind === 'index') {
      const entry = selectPlatform(manifest);
      const child = await deps.registry.getManifest({ ...ref, tag: undefined, digest: entry.digest }, opts);
      manifest = parseManifest(child.bytes, child.mediaType);
      if (manifest.kind !== 'image') throw new BerthError('INVALID_ARGUMENT', `index entry ${entry.digest} is not an image manifest`);
      manifestBytes = child.bytes;
      manifestDigest = child.digest;
    }
    watchdog.progress();
    const configBytes = await deps.registry.getBlobBuffer(ref, manifest.config.digest, cfg.max_config_bytes, opts);
    const imageConfig = parseImageConfig(configBytes);
    const diffIds = imageConfig.rootfs.diff_ids;
    if (diffIds.length !== manifest.layers.length) {
      throw new BerthError('INVALID_ARGUMENT', `image config lists ${diffIds.length} layers but the manifest has ${manifest.layers.length}`);
    }
    const chainIds = chainIdsOf(diffIds);
    const compressions = new Map<string, Compression>(manifest.layers.map((l) => [l.digest, l.compression]));
    const layers: ImageLayer[] = manifest.layers.map((l, i) => ({
      chainId: chainIds[i] as string,
      diffId: diffIds[i] as string,
      digest: l.digest,
      size: l.size,
      mediaType: l.mediaType,
    }));
    const unpacked = await inParallel(layers, cfg.pull_parallelism, async (layer, i) => {
      const { record, reused } = await deps.layers.create(
        { chainId: layer.chainId, diffId: layer.diffId, ...(i > 0 ? { parent: chainIds[i - 1] } : {}) },
        (dir) => fetchLayer(deps, ref, layer, compressions.get(layer.digest) ?? 'none', dir, { ...opts, watchdog }),
      );
      if (reused) deps.observer.layerReused();
      return record.size;
    });
    // Manifest and config are stored last: a crash before this leaves only layers, which start-up collects.
    await deps.blobs.put(manifestBytes, manifestDigest);
    if (top.digest !== manifestDigest) await deps.blobs.put(top.bytes, top.digest);
    await deps.blobs.put(configBytes, manifest.config.digest);
    const name = formatName(ref);
    return {
      id: manifest.config.digest,
      repoTags: ref.tag !== undefined ? [`${name}:${ref.tag}`] : [],
      repoDigests: [`${name}@${top.digest}`],
      manifestDigest,
      layers,
      size: unpacked.reduce((a, b) => a + b, 0) + manifestBytes.length + configBytes.length,
      user: imageConfig.config?.User ?? '',
      pulledAtNs: nowNs().toString(),
    };
  } catch (err) {
    // Streams aborted by the watchdog fail with a bare AbortError; the watchdog's reason says what happened.
    if (watchdog.signal.aborted && !(err instanceof BerthError) && watchdog.signal.reason instanceof BerthError) throw watchdog.signal.reason;
    throw err;
  } finally {
    watchdog.stop();
  }
}

/** Chain IDs identify a layer together with everything below it (OCI image spec). */
export function chainIdsOf(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const previous = out[out.length - 1];
    out.push(previous === undefined ? diffId : sha256Digest(Buffer.from(`${previous} ${diffId}`)));
  }
  return out;
}

async function fetchLayer(
  deps: PullDeps,
  ref: ImageReference,
  layer: ImageLayer,
  compression: Compression,
  dir: string,
  opts: { auth: Credentials | undefined; signal: AbortSignal; watchdog: Watchdog },
): Promise<{ bytes: number; entries: number }> {
  const started = Date.now();
  const cfg = deps.config();
  const { stream } = await deps.registry.openBlob(ref, layer.digest, layer.size, { auth: opts.auth, signal: opts.signal });
  let received = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      received += chunk.length;
      deps.observer.bytes(chunk.length);
      opts.watchdog.progress();
      cb(null, chunk);
    },
  });
  const diffHash = createHash('sha256');
  const hasher = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      diffHash.update(chunk);
      cb(null, chunk);
    },
  });
  const download = pipeline(stream, counter, decompressor(compression), hasher, { signal: opts.signal });
  const extracted = extractLayer(hasher, dir, { maxBytes: cfg.max_layer_bytes, maxEntries: cfg.max_layer_entries }, opts.signal);
  try {
    const [, result] = await Promise.all([download, extracted]);
    const diffId = `sha256:${diffHash.digest('hex')}`;
    if (diffId !== layer.diffId) {
      throw new BerthError('DATA_LOSS', `layer ${layer.digest} unpacks to ${diffId}, but the image config says ${layer.diffId}`);
    }
    const ms = Date.now() - started;
    deps.log.info({ layer: layer.digest, bytes: received, unpacked: result.bytes, entries: result.entries, ms, mibPerSec: +(received / 1048576 / (ms / 1000 || 0.001)).toFixed(1) }, 'layer pulled');
    return result;
  } catch (err) {
    stream.destroy();
    hasher.destroy();
    throw err;
  }
}

interface Watchdog {
  signal: AbortSignal;
  progress(): void;
  stop(): void;
}

/** Aborts when no byte has moved for `idleMs` (slow is fine, stuck is not), or when `outer` aborts. */
function progressWatchdog(what: string, idleMs: number, outer?: AbortSignal): Watchdog {
  const controller = new AbortController();
  let last = Date.now();
  const timer = setInterval(() => {
    if (Date.now() - last < idleMs) return;
    controller.abort(new BerthError('DEADLINE_EXCEEDED', `pull of ${what} made no progress for ${Math.round(idleMs / 1000)} s`));
  }, Math.min(1000, idleMs));
  timer.unref();
  const onOuter = (): void => controller.abort(outer?.reason ?? new BerthError('CANCELLED', `pull of ${what} cancelled`));
  outer?.addEventListener('abort', onOuter, { once: true });
  if (outer?.aborted) onOuter();
  return {
    signal: controller.signal,
    progress: () => (last = Date.now()),
    // Also ends whatever a failed pull still has running (other layers' downloads).
    stop: () => {
      clearInterval(timer);
      outer?.removeEventListener('abort', onOuter);
      controller.abort(new BerthError('CANCELLED', `pull of ${what} ended`));
    },
  };
}

/** Runs `fn` over `items` with at most `limit` at once; the first failure rejects (others finish or abort). */
async function inParallel<T, R>(items: T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export function describePullError(err: unknown): string {
  return err instanceof BerthError ? err.code.toLowerCase() : errorMessage(err);
}
