// The image config blob (OCI, or Docker's superset), parsed from hostile registry JSON: the platform, the layers'
// diff ids and the container defaults (user, env, entrypoint, cmd, ...) that later end up in a container's spec.
import { bad, isObject, join, Json, optString, parseJsonObject, show } from './json-fields';
import { MAX_LAYERS, Platform } from './manifest';
import { isDigest } from './reference';

export interface ContainerDefaults {
  User?: string;
  Env?: string[];
  Entrypoint?: string[];
  Cmd?: string[];
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Volumes?: Record<string, Record<string, never>>;
}
export interface HistoryItem {
  created?: string;
  created_by?: string;
  author?: string;
  comment?: string;
  empty_layer?: boolean;
}
/** The OCI image config (Docker's is a superset with the same fields). */
export interface ImageConfigDoc extends Platform {
  created?: string;
  author?: string;
  config: ContainerDefaults;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history: HistoryItem[];
}

const CFG = 'image config';

// Values end up in execve argv/env and file paths: a NUL byte could only truncate them, so it is refused outright.
function str(obj: Json, key: string, path: string): string | undefined {
  const v = optString(obj, key, path, CFG);
  if (v !== undefined && v.includes('\0')) throw bad(CFG, join(path, key), 'contains a NUL byte');
  return v;
}

function strList(obj: Json, key: string, path: string): string[] | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined; // Docker writes "Cmd": null
  if (!Array.isArray(v)) throw bad(CFG, `${path}.${key}`, 'must be an array of strings');
  return v.map((item: unknown, i) => {
    if (typeof item !== 'string') throw bad(CFG, `${path}.${key}[${i}]`, 'must be a string');
    if (item.includes('\0')) throw bad(CFG, `${path}.${key}[${i}]`, 'contains a NUL byte');
    return item;
  });
}

function strMap(obj: Json, key: string, path: string): Record<string, string> | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad(CFG, `${path}.${key}`, 'must be an object of strings');
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw bad(CFG, `${path}.${key}[${JSON.stringify(k)}]`, 'must be a string');
    Object.defineProperty(out, k, { value: val, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function keySet(obj: Json, key: string, path: string): Record<string, Record<string, never>> | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (!isObject(v)) throw bad(CFG, `${path}.${key}`, 'must be an object');
  const out: Record<string, Record<string, never>> = {};
  for (const k of Object.keys(v)) {
    if (k.includes('\0')) throw bad(CFG, `${path}.${key}`, 'a key contains a NUL byte');
    Object.defineProperty(out, k, { value: {}, enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function defined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

export function parseImageConfig(bytes: Buffer): ImageConfigDoc {
  const doc = parseJsonObject(bytes, CFG);
  const architecture = str(doc, 'architecture', '');
  const os = str(doc, 'os', '');
  if (!architecture) throw bad(CFG, 'architecture', 'must be a non-empty string');
  if (!os) throw bad(CFG, 'os', 'must be a non-empty string');

  const rootfs = doc.rootfs;
  if (!isObject(rootfs)) throw bad(CFG, 'rootfs', 'must be an object');
  if (rootfs.type !== 'layers') throw bad(CFG, 'rootfs.type', `${show(rootfs.type)} (want "layers")`);
  const ids = rootfs.diff_ids;
  if (!Array.isArray(ids)) throw bad(CFG, 'rootfs.diff_ids', 'must be an array');
  if (ids.length > MAX_LAYERS) throw bad(CFG, 'rootfs.diff_ids', `${ids.length} entries (limit ${MAX_LAYERS})`);
  const diffIds = ids.map((d: unknown, i) => {
    if (typeof d !== 'string' || !isDigest(d)) throw bad(CFG, `rootfs.diff_ids[${i}]`, `${show(d)} is not a sha256 digest`);
    return d;
  });

  const c = doc.config ?? {};
  if (!isObject(c)) throw bad(CFG, 'config', 'must be an object');
  const config: ContainerDefaults = defined({
    User: str(c, 'User', 'config'),
    Env: strList(c, 'Env', 'config'),
    Entrypoint: strList(c, 'Entrypoint', 'config'),
    Cmd: strList(c, 'Cmd', 'config'),
    WorkingDir: str(c, 'WorkingDir', 'config'),
    Labels: strMap(c, 'Labels', 'config'),
    StopSignal: str(c, 'StopSignal', 'config'),
    ExposedPorts: keySet(c, 'ExposedPorts', 'config'),
    Volumes: keySet(c, 'Volumes', 'config'),
  });

  const rawHistory = doc.history ?? [];
  if (!Array.isArray(rawHistory)) throw bad(CFG, 'history', 'must be an array');
  const history = rawHistory.map((h: unknown, i): HistoryItem => {
    if (!isObject(h)) throw bad(CFG, `history[${i}]`, 'must be an object');
    const empty = h.empty_layer;
    if (empty !== undefined && empty !== null && typeof empty !== 'boolean') throw bad(CFG, `history[${i}].empty_layer`, 'must be a boolean');
    const p = `history[${i}]`;
    return defined({
      created: str(h, 'created', p),
      created_by: str(h, 'created_by', p),
      author: str(h, 'author', p),
      comment: str(h, 'comment', p),
      empty_layer: typeof empty === 'boolean' ? empty : undefined,
    });
  });

  const variant = str(doc, 'variant', '');
  return defined({
    architecture,
    os,
    variant: variant || undefined,
    created: str(doc, 'created', ''),
    author: str(doc, 'author', ''),
    config,
    rootfs: { type: 'layers' as const, diff_ids: diffIds },
    history,
  });
}
