// Finding the pod network configuration in the CNI config dir, as libcni does: .conflist, .conf and .json files,
// the first by lexical name unless a network name is configured. A single-plugin .conf becomes a list of one.
// Validation is strict where berth relies on a value: the network name becomes part of a cache file name, the
// cniVersion decides which commands and fields a plugin gets, and a plugin type names a binary on the host.
import fs from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../common/errors';

/** The CNI spec versions berth speaks (the host's plugins 1.1.1 speak up to 1.0.0). */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ['0.3.0', '0.3.1', '0.4.0', '1.0.0'];

export interface NetworkConfigFile {
  file: string;
  name: string;
  cniVersion: string;
  /** The plugin list (a single-plugin .conf becomes a list of one), each object as written in the file. */
  plugins: Record<string, unknown>[];
  /** The list's `disableCheck`: the runtime must not call CHECK. */
  disableCheck: boolean;
}

export type NetworkLookup = { ok: true; network: NetworkConfigFile } | { ok: false; message: string };

const EXTENSIONS = new Set(['.conf', '.conflist', '.json']);
const MAX_CONFIG_BYTES = 1 << 20;
const MAX_PLUGINS = 32;
/** The spec's rule for network names; also keeps the name safe inside a cache file name. */
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;
/** A plugin type names a binary inside one of the plugin dirs: a plain file name, never a path. */
const PLUGIN_TYPE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$/;

export async function findNetworkConfig(dir: string, defaultNetwork: string): Promise<NetworkLookup> {
  let names: string[];
  try {
    names = (await fs.readdir(dir)).filter((n) => EXTENSIONS.has(path.extname(n))).sort();
  } catch (err) {
    return { ok: false, message: `no CNI network config in ${dir}: ${errorMessage(err)}` };
  }
  const problems: string[] = [];
  for (const name of names) {
    const file = path.join(dir, name);
    try {
      const network = await readNetworkConfig(file);
      if (!defaultNetwork || network.name === defaultNetwork) return { ok: true, network };
    } catch (err) {
      problems.push(`${name}: ${errorMessage(err)}`);
    }
  }
  const want = defaultNetwork ? `network "${defaultNetwork}"` : 'CNI network config';
  const tail = problems.length > 0 ? ` (skipped ${problems.join('; ')})` : '';
  return { ok: false, message: `no valid ${want} found in ${dir}${tail}` };
}

export async function readNetworkConfig(file: string): Promise<NetworkConfigFile> {
  const handle = await fs.open(file, 'r');
  let text: string;
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new Error('not a regular file');
    if (st.size > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`);
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  return parseNetworkConfig(raw, file);
}

/** Validates a parsed config file (or a cached copy of one) and normalises it to a plugin list. */
export function parseNetworkConfig(raw: unknown, file: string): NetworkConfigFile {
  const obj = asObject(raw, 'the config');
  const name = obj['name'];
  if (typeof name !== 'string' || name === '') throw new Error('missing "name"');
  if (!NETWORK_NAME.test(name)) throw new Error(`network name ${JSON.stringify(name)} is not [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 128)`);
  const cniVersion = obj['cniVersion'];
  if (typeof cniVersion !== 'string' || cniVersion === '') throw new Error('missing "cniVersion"');
  if (!SUPPORTED_CNI_VERSIONS.includes(cniVersion)) {
    throw new Error(`cniVersion ${JSON.stringify(cniVersion)} is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(', ')})`);
  }
  let plugins: Record<string, unknown>[];
  if (file.endsWith('.conflist') || 'plugins' in obj) {
    const list = obj['plugins'];
    if (!Array.isArray(list) || list.length === 0) throw new Error('"plugins" must be a non-empty list');
    if (list.length > MAX_PLUGINS) throw new Error(`more than ${MAX_PLUGINS} plugins`);
    plugins = list.map((p: unknown, i) => checkPlugin(p, `plugins[${i}]`));
  } else {
    plugins = [checkPlugin(obj, 'the config')];
  }
  const disableCheck = obj['disableCheck'];
  if (disableCheck !== undefined && typeof disableCheck !== 'boolean') throw new Error('"disableCheck" must be a boolean');
  return { file, name, cniVersion, plugins, disableCheck: disableCheck === true };
}

/** Throws unless `type` is a plain binary name (no '/', no '..'). */
export function checkPluginType(type: string): void {
  if (!PLUGIN_TYPE.test(type) || type.includes('..')) {
    throw new Error(`plugin type ${JSON.stringify(type)} is not a plain binary name ([a-zA-Z0-9][a-zA-Z0-9_.-]*, no "..")`);
  }
}

/** The capabilities a plugin declares (`"capabilities": {"portMappings": true}`). */
export function pluginCapabilities(plugin: Record<string, unknown>): Set<string> {
  const caps = plugin['capabilities'];
  const out = new Set<string>();
  if (typeof caps === 'object' && caps !== null && !Array.isArray(caps)) {
    for (const [key, on] of Object.entries(caps)) if (on === true) out.add(key);
  }
  return out;
}

/** Compares dotted CNI versions numerically: negative when a < b. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

function checkPlugin(p: unknown, where: string): Record<string, unknown> {
  const plugin = asObject(p, where);
  const type = plugin['type'];
  if (typeof type !== 'string' || type === '') throw new Error(`${where} has no "type"`);
  try {
    checkPluginType(type);
  } catch (err) {
    throw new Error(`${where}: ${errorMessage(err)}`, { cause: err });
  }
  const caps = plugin['capabilities'];
  if (caps !== undefined && (typeof caps !== 'object' || caps === null || Array.isArray(caps))) {
    throw new Error(`${where}: "capabilities" must be an object`);
  }
  return plugin;
}

function asObject(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${what} is not a JSON object`);
  return v as Record<string, unknown>;
}
