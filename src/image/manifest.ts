// Registry JSON is hostile input: manifests and indexes are parsed into typed objects here (image configs in
// image-config.ts), and every field berth later relies on is checked (digests, sizes, counts, media types) so the
// puller can trust the result. Also containerd-style platform selection from an index.
import { BerthError } from '../common/errors';
import { bad, isObject, Json, optString, parseJsonObject, show } from './json-fields';
import { isDigest } from './reference';

export type { ContainerDefaults, HistoryItem, ImageConfigDoc } from './image-config';

export const MediaType = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  dockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What a manifest GET accepts; the distribution registry 404s an OCI manifest whose type the Accept header omits. */
export const MANIFEST_ACCEPT: readonly string[] = [
  MediaType.ociIndex,
  MediaType.ociManifest,
  MediaType.dockerManifestList,
  MediaType.dockerManifest,
];

export const MAX_LAYERS = 1000;
export const MAX_INDEX_ENTRIES = 1000;

export type Compression = 'none' | 'gzip' | 'zstd';

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
}
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}
export interface IndexEntry extends Descriptor {
  /** Absent on entries that are not runnable images (attestations, artifacts). */
  platform?: Platform;
}
export interface ImageIndex {
  kind: 'index';
  mediaType: string;
  manifests: IndexEntry[];
}
export interface LayerDescriptor extends Descriptor {
  compression: Compression;
}
export interface ImageManifest {
  kind: 'image';
  mediaType: string;
  config: Descriptor;
  layers: LayerDescriptor[];
}
export type Manifest = ImageIndex | ImageManifest;

const INDEX_TYPES = new Set<string>([MediaType.ociIndex, MediaType.dockerManifestList]);
const IMAGE_TYPES = new Set<string>([MediaType.ociManifest, MediaType.dockerManifest]);
const SCHEMA1_TYPES = new Set<string>([MediaType.dockerSchema1, MediaType.dockerSchema1Signed]);
const CONFIG_TYPES = new Set<string>([MediaType.ociConfig, MediaType.dockerConfig]);
const LAYER_TYPES = new Map<string, Compression>([
  [MediaType.ociLayer, 'none'],
  [MediaType.ociLayerGzip, 'gzip'],
  [MediaType.ociLayerZstd, 'zstd'],
  [MediaType.dockerLayer, 'none'],
  [MediaType.dockerLayerGzip, 'gzip'],
]);
const FOREIGN_LAYER = /^application\/vnd\.(?:oci\.image\.layer\.nondistributable\.|docker\.image\.rootfs\.foreign\.)/;

/** The bare media type of a Content-Type header ("application/json; charset=utf-8" → "application/json"). */
export function bareMediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
}

function schema1Error(type: string): BerthError {
  return new BerthError(
    'FAILED_PRECONDITION',
    `schema 1 manifests are not supported (${type}; docker.io deprecated them): re-push the image with a current client`,
  );
}

function descriptor(v: unknown, path: string, what: string): Descriptor {
  if (!isObject(v)) throw bad(what, path, 'must be an object');
  const { mediaType, digest, size } = v;
  if (typeof mediaType !== 'string' || mediaType === '') throw bad(what, `${path}.mediaType`, 'must be a non-empty string');
  if (typeof digest !== 'string' || !isDigest(digest)) throw bad(what, `${path}.digest`, `${show(digest)} is not a sha256 digest`);
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw bad(what, `${path}.size`, `${show(size)} is not a non-negative integer`);
  }
  return { mediaType, digest, size };
}

function platformOf(v: unknown, path: string): Platform | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad('index', path, 'must be an object');
  const os = optString(v, 'os', path, 'index');
  const architecture = optString(v, 'architecture', path, 'index');
  const variant = optString(v, 'variant', path, 'index');
  if (!os || !architecture) throw bad('index', path, 'needs os and architecture');
  return { os, architecture, ...(variant ? { variant } : {}) };
}

function parseIndex(doc: Json, mediaType: string): ImageIndex {
  const list = doc.manifests;
  if (!Array.isArray(list)) throw bad('index', 'manifests', 'must be an array');
  if (list.length > MAX_INDEX_ENTRIES) throw bad('index', 'manifests', `${list.length} entries (limit ${MAX_INDEX_ENTRIES})`);
  const manifests = list.map((e: unknown, i): IndexEntry => {
    const d = descriptor(e, `manifests[${i}]`, 'index');
    const platform = platformOf((e as Json).platform, `manifests[${i}].platform`);
    return platform ? { ...d, platform } : d;
  });
  return { kind: 'index', mediaType, manifests };
}

function parseImage(doc: Json, mediaType: string): ImageManifest {
  const config = descriptor(doc.config, 'config', 'manifest');
  if (!CONFIG_TYPES.has(config.mediaType)) {
    throw new BerthError('FAILED_PRECONDITION', `manifest is not a container image: config media type "${config.mediaType}"`);
  }
  const list = doc.layers;
  if (!Array.isArray(list)) throw bad('manifest', 'layers', 'must be an array');
  if (list.length > MAX_LAYERS) throw bad('manifest', 'layers', `${list.length} layers (limit ${MAX_LAYERS})`);
  const layers = list.map((l: unknown, i): LayerDescriptor => {
    const d = descriptor(l, `layers[${i}]`, 'manifest');
    const compression = LAYER_TYPES.get(d.mediaType);
    if (compression) return { ...d, compression };
    if (FOREIGN_LAYER.test(d.mediaType)) {
      throw new BerthError('FAILED_PRECONDITION', `layers[${i}] is a foreign (non-distributable) layer "${d.mediaType}": not supported`);
    }
    if (d.mediaType.includes('+encrypted')) {
      throw new BerthError('FAILED_PRECONDITION', `layers[${i}] is encrypted ("${d.mediaType}"): not supported`);
    }
    throw bad('manifest', `layers[${i}].mediaType`, `unsupported layer media type "${d.mediaType}"`);
  });
  return { kind: 'image', mediaType, config, layers };
}

/**
 * Detects the kind by the body's mediaType (the digest covers the body, not the header), then Content-Type, then
 * shape (OCI made mediaType optional); a body that is both an index and an image is refused as ambiguous.
 */
export function parseManifest(bytes: Buffer, contentType?: string): Manifest {
  const header = bareMediaType(contentType);
  if (SCHEMA1_TYPES.has(header)) throw schema1Error(header);
  const doc = parseJsonObject(bytes, 'manifest');
  if (doc.schemaVersion === 1) throw schema1Error('schemaVersion 1');
  if (doc.schemaVersion !== 2) throw bad('manifest', 'schemaVersion', `${show(doc.schemaVersion)} (want 2)`);
  const body = doc.mediaType;
  if (body !== undefined && typeof body !== 'string') throw bad('manifest', 'mediaType', 'must be a string');
  if (body !== undefined && SCHEMA1_TYPES.has(body)) throw schema1Error(body);
  const isIndex = 'manifests' in doc;
  if (isIndex && ('layers' in doc || 'config' in doc)) throw bad('manifest', 'manifests', 'present together with layers/config');
  let type = body;
  if (type === undefined) {
    if (INDEX_TYPES.has(header) || IMAGE_TYPES.has(header)) type = header;
    else type = isIndex ? MediaType.ociIndex : MediaType.ociManifest;
  }
  if (INDEX_TYPES.has(type)) return parseIndex(doc, type);
  if (IMAGE_TYPES.has(type)) return parseImage(doc, type);
  throw bad('manifest', 'mediaType', `unsupported manifest media type "${type}"`);
}

// ---- platforms ----------------------------------------------------------------------------------------------------

/** containerd's platforms.Normalize: aliases folded (aarch64 → arm64, armhf → arm/v7), arm64's v8 and amd64's v1 dropped. */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let arch = p.architecture.toLowerCase();
  let variant = (p.variant ?? '').toLowerCase();
  switch (arch) {
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      arch = 'amd64';
      if (variant === 'v1') variant = '';
      break;
    case 'aarch64':
    case 'arm64':
      arch = 'arm64';
      if (variant === '8' || variant === 'v8' || variant === 'v8.0') variant = '';
      break;
    case 'armhf':
      arch = 'arm';
      variant = 'v7';
      break;
    case 'armel':
      arch = 'arm';
      variant = 'v6';
      break;
    case 'arm':
      if (variant === '' || variant === '7') variant = 'v7';
      else if (/^[5-8]$/.test(variant)) variant = `v${variant}`;
      break;
    case 'i386':
      arch = '386';
      break;
  }
  return { os, architecture: arch, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

export function hostPlatform(): Platform {
  const arches: Record<string, string> = {
    x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64',
  };
  const architecture = arches[process.arch] ?? process.arch;
  if (architecture !== 'arm') return { os: 'linux', architecture };
  const armVersion = (process.config.variables as Record<string, unknown>).arm_version;
  return { os: 'linux', architecture, variant: `v${typeof armVersion === 'string' || typeof armVersion === 'number' ? armVersion : 7}` };
}

/** What can run on `want`, best first: the platform itself, then older arm variants (v7 runs v6 and v5). */
function compatible(want: Platform): Platform[] {
  const out = [want];
  const v = /^v(\d)$/.exec(want.variant ?? '');
  if (want.architecture === 'arm' && v) {
    for (let n = Number(v[1]) - 1; n >= 5; n--) out.push({ ...want, variant: `v${n}` });
  }
  return out;
}

/** containerd's platform matcher over an index: exact os/arch, arm64's variant defaulting to v8, arm falling back v7→v6→v5. */
export function selectPlatform(index: ImageIndex, want: Platform = hostPlatform(), name?: string): IndexEntry {
  const target = normalizePlatform(want);
  const ranked = compatible(target);
  let best: { entry: IndexEntry; rank: number } | undefined;
  const available: string[] = [];
  for (const entry of index.manifests) {
    if (!entry.platform || !IMAGE_TYPES.has(entry.mediaType)) continue;
    const p = normalizePlatform(entry.platform);
    available.push(formatPlatform(p));
    const rank = ranked.findIndex(
      (c) => c.os === p.os && c.architecture === p.architecture && (c.variant ?? '') === (p.variant ?? ''),
    );
    if (rank !== -1 && (best === undefined || rank < best.rank)) best = { entry, rank };
  }
  if (best) return best.entry;
  throw new BerthError(
    'NOT_FOUND',
    `no manifest for ${formatPlatform(target)} in index${name ? ` ${name}` : ''} (available: ${available.length ? [...new Set(available)].join(', ') : 'none'})`,
  );
}
