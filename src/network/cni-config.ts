// Finding the pod network configuration in the CNI config dir, as libcni does: .conflist, .conf and .json files,
// the first by lexical name unless a network name is configured.
import fs from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../common/errors';

export interface NetworkConfigFile {
  file: string;
  name: string;
  cniVersion: string;
  /** The plugin list (a single-plugin .conf becomes a list of one). */
  plugins: Record<string, unknown>[];
}

export type NetworkLookup = { ok: true; network: NetworkConfigFile } | { ok: false; message: string };

const EXTENSIONS = new Set(['.conf', '.conflist', '.json']);
const MAX_CONFIG_BYTES = 1 << 20;

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
    if (st.size > MAX_CONFIG_BYTES) throw new Error(`larger than ${MAX_CONFIG_BYTES} bytes`);
    text = await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
  const raw: unknown = JSON.parse(text);
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('not a JSON object');
  const obj = raw as Record<string, unknown>;
  if (typeof obj['name'] !== 'string' || obj['name'] === '') throw new Error('missing "name"');
  const cniVersion = typeof obj['cniVersion'] === 'string' ? obj['cniVersion'] : '';
  let plugins: Record<string, unknown>[];
  if (file.endsWith('.conflist') || Array.isArray(obj['plugins'])) {
    const list = obj['plugins'];
    if (!Array.isArray(list) || list.length === 0) throw new Error('"plugins" must be a non-empty list');
    plugins = list.map((p, i) => {
      if (typeof p !== 'object' || p === null || typeof (p as Record<string, unknown>)['type'] !== 'string') {
        throw new Error(`plugins[${i}] has no "type"`);
      }
      return p as Record<string, unknown>;
    });
  } else {
    if (typeof obj['type'] !== 'string') throw new Error('missing "type"');
    plugins = [obj];
  }
  return { file, name: obj['name'], cniVersion, plugins };
}
