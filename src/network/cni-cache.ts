// One file per attachment (network, pod, interface), as libcni keeps /var/lib/cni/results, but written BEFORE the
// first plugin runs and again after the last: whatever happens in between (a plugin failing half-way, berth killed
// mid-ADD, the config file edited or removed later), DEL finds the exact plugin list, CNI_ARGS and capability args
// ADD used, plus the result as far as it got. The entry is removed only after a DEL succeeded.
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, errorMessage } from '../common/errors';
import { writeFileAtomic } from '../storage/atomic-file';
import { parseNetworkConfig } from './cni-config';
import type { Attachment } from './cni-ops';
import type { CniResult } from './cni-result';

export const CACHE_KIND = 'berthCniCacheV1';
const MAX_ENTRY_BYTES = 4 << 20;

/**
 * What ADD ran with (the network list as it was — file path kept for messages only — and the netns pin at ADD;
 * DEL prefers the pod's current pin and passes "" once it is gone), plus how far ADD got.
 */
export interface CacheEntry extends Attachment {
  kind: typeof CACHE_KIND;
  /** 'adding' until every plugin's ADD succeeded; 'failed' once ADD gave up (DEL pending or itself failed). */
  state: 'adding' | 'added' | 'failed';
  /** How many plugins of the list completed ADD. */
  completed: number;
  /** The chained result so far (the final one once 'added'); null before any plugin returned. */
  result: CniResult | null;
  updatedAt: string;
}

export interface CachedAttachment {
  file: string;
  /** Undefined when the file could not be read or parsed; `error` says why. */
  entry?: CacheEntry;
  error?: string;
  containerId: string;
  network: string;
}

export class CniCache {
  constructor(readonly dir: string) {}

  fileFor(network: string, containerId: string, ifName: string): string {
    return path.join(this.dir, `${network}-${containerId}-${ifName}.json`);
  }

  /** durable: false skips the fsyncs, for an update whose loss is harmless (the earlier durable entry still leads a
   *  DEL to the attachment). */
  async write(entry: CacheEntry, durable = true): Promise<string> {
    fsSync.mkdirSync(this.dir, { recursive: true, mode: 0o700 }); // one syscall: cheaper here than in the thread pool
    const file = this.fileFor(entry.network.name, entry.containerId, entry.ifName);
    await writeFileAtomic(file, `${JSON.stringify({ ...entry, updatedAt: new Date().toISOString() })}\n`, 0o600, { durable });
    return file;
  }

  async remove(file: string): Promise<void> {
    await fs.rm(file, { force: true });
  }

  /** The attachments cached for one pod (any network, any interface). */
  async forContainer(containerId: string, ifName: string): Promise<CachedAttachment[]> {
    const suffix = `-${containerId}-${ifName}.json`;
    // Filtered by name before any file is read: a pod's lookup must not cost a read of every pod's entry.
    return this.list((name) => name.endsWith(suffix));
  }

  /** Every cached attachment (whose file name `accept`s); unreadable files are listed with their error. */
  async list(accept: (name: string) => boolean = () => true): Promise<CachedAttachment[]> {
    let names: string[];
    try {
      names = await fs.readdir(this.dir);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw err;
    }
    const out: CachedAttachment[] = [];
    for (const name of names.sort()) {
      const m = /^(.+)-([a-zA-Z0-9][a-zA-Z0-9_.-]*)-([^-]+)\.json$/.exec(name);
      if (!m || name.startsWith('.') || !accept(name)) continue;
      const file = path.join(this.dir, name);
      const base: CachedAttachment = { file, network: m[1] ?? '', containerId: m[2] ?? '' };
      try {
        out.push({ ...base, entry: await readEntry(file) });
      } catch (err) {
        out.push({ ...base, error: errorMessage(err) });
      }
    }
    return out;
  }
}

async function readEntry(file: string): Promise<CacheEntry> {
  const st = await fs.stat(file);
  if (st.size > MAX_ENTRY_BYTES) throw new Error(`larger than ${MAX_ENTRY_BYTES} bytes`);
  const raw = JSON.parse(await fs.readFile(file, 'utf8')) as Partial<CacheEntry> | null;
  if (!raw || raw.kind !== CACHE_KIND) throw new Error(`not a ${CACHE_KIND} entry`);
  if (typeof raw.containerId !== 'string' || typeof raw.ifName !== 'string' || typeof raw.netns !== 'string') {
    throw new Error('missing containerId, ifName or netns');
  }
  if (!Array.isArray(raw.cniArgs) || !raw.cniArgs.every((p) => Array.isArray(p) && p.length === 2 && p.every((s) => typeof s === 'string'))) {
    throw new Error('bad cniArgs');
  }
  // The network is validated as a config file would be: DEL must not run a plugin path a tampered file names.
  const network = parseNetworkConfig({ ...raw.network, plugins: raw.network?.plugins }, `${raw.network?.file ?? file}.conflist`);
  return {
    kind: CACHE_KIND,
    network: { ...network, file: raw.network?.file ?? '' },
    containerId: raw.containerId,
    ifName: raw.ifName,
    netns: raw.netns,
    cniArgs: raw.cniArgs,
    capabilityArgs: typeof raw.capabilityArgs === 'object' && raw.capabilityArgs !== null ? raw.capabilityArgs : {},
    state: raw.state === 'added' || raw.state === 'failed' ? raw.state : 'adding',
    completed: typeof raw.completed === 'number' ? raw.completed : 0,
    result: typeof raw.result === 'object' ? (raw.result ?? null) : null,
    updatedAt: typeof raw.updatedAt === 'string' ? raw.updatedAt : '',
  };
}
