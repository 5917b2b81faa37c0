// CNI pod networking for the sandbox manager: ADD when a pod runs, DEL when it stops, CHECK on demand, STATUS for the
// Status RPC. One attachment per pod (the default network, interface eth0), cached on disk from before ADD starts
// until DEL succeeds, so teardown works across restarts, config edits and half-finished ADDs.
//
// Pod CIDR: the node's pod CIDR (UpdateRuntimeConfig) is handed to plugins only through the standard `ipRanges`
// capability (runtimeConfig.ipRanges = [[{subnet}], …], one range set per family), and only to a plugin whose config
// declares `"capabilities": {"ipRanges": true}`. berth never rewrites a config's IPAM `ranges`: a config that wants
// the node's CIDR opts in by declaring the capability and leaving `ranges` out (host-local 1.1.1 adds the runtime
// ranges to the file's and refuses overlapping sets); everything else gets exactly what its file says.
import fs from 'node:fs/promises';
import { BerthError, errorMessage, failedPrecondition, internal, invalidArgument, unavailable } from '../common/errors';
import { KeyedMutex } from '../common/keyed-mutex';
import { syncFile } from '../storage/atomic-file';
import type { PodNetwork } from '../runtime/sandbox-manager';
import { capabilityArgs, cniArgs, type PodNetConfig } from './cni-args';
import { CACHE_KIND, CniCache, type CacheEntry, type CachedAttachment } from './cni-cache';
import type { NetworkLookup } from './cni-config';
import { addList, checkList, delList, statusList, type AddProgress, type CniObserver, type OpsContext, type OpsLog } from './cni-ops';
import { podIps } from './cni-result';
import { NetworkConfigWatcher } from './cni-watch';

export const POD_IFNAME = 'eth0';
const NSFS_MAGIC = 0x6e736673;
/** The spec's container ID rule. */
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$/;

export interface CniSettings {
  confDir: string;
  pluginDirs: string[];
  /** "" = the first config file by name. */
  defaultNetwork: string;
  pluginTimeoutSeconds: number;
}

export interface CniLog extends OpsLog {
  info(obj: object, msg: string): void;
}

export interface CniNetworkOptions {
  /** Read on every operation: all four are live settings. */
  settings: () => CniSettings;
  /** Where attachments are cached, e.g. `<root>/cni-cache`. */
  cacheDir: string;
  /** The node's pod CIDR ("" = none; "v4,v6" for dual stack), passed as the ipRanges capability (see above). */
  podCidr?: () => string;
  observer?: CniObserver;
  log?: CniLog;
  watchDebounceMs?: number;
}

/** What pod networking reads of a sandbox (a SandboxRecord is one). */
export interface CniPod {
  id: string;
  namespaces: { net?: string };
  config: PodNetConfig;
}

export interface CniStatus {
  ready: boolean;
  message: string;
}

export class CniNetwork implements PodNetwork {
  readonly watcher: NetworkConfigWatcher;
  readonly cache: CniCache;
  private readonly locks = new KeyedMutex();

  constructor(private readonly opts: CniNetworkOptions) {
    this.cache = new CniCache(opts.cacheDir);
    this.watcher = new NetworkConfigWatcher(() => opts.settings(), {
      debounceMs: opts.watchDebounceMs,
      log: opts.log,
      onChange: (l) => opts.log?.info(l.ok ? { file: l.network.file, network: l.network.name } : { error: l.message }, 'CNI network config changed'),
    });
  }

  /** Loads the network config and starts watching the conf dir. */
  start(): Promise<NetworkLookup> {
    return this.watcher.start();
  }

  close(): void {
    this.watcher.close();
  }

  /** ADD: attaches the pod to the network and returns its IPs (IPv4 first). A failed ADD is undone by DEL. */
  /**
   * ADD of the pod to the network; its addresses. `persist`, if given, records them (the caller's checkpoint): run
   * alongside the cache's last write, under the pod's lock, and a failure of it undoes the ADD like a plugin's.
   */
  async setUp(pod: CniPod, persist?: (ips: string[]) => Promise<void>): Promise<string[]> {
    checkContainerId(pod.id);
    return this.locks.with(pod.id, async () => {
      const lookup = await this.watcher.get();
      if (!lookup.ok) throw unavailable(`pod network is not ready: ${lookup.message}`);
      const netns = pod.namespaces.net;
      if (!netns || !(await isNetns(netns))) throw failedPrecondition(`pod ${pod.id} has no pinned network namespace (${netns ?? 'none'})`);
      const att = {
        network: lookup.network,
        containerId: pod.id,
        ifName: POD_IFNAME,
        netns,
        cniArgs: cniArgs(pod.id, pod.config),
        capabilityArgs: capabilityArgs(pod.config, this.opts.podCidr?.() ?? ''),
      };
      // The spec forbids a second ADD without a DEL: an attachment left from an earlier try goes first.
      await this.delCached(pod);
      const entry: CacheEntry = { kind: CACHE_KIND, ...att, state: 'adding', completed: 0, result: null, updatedAt: '' };
      // Visible before the first plugin runs, so DEL finds the attachment whenever berth dies from here on; made
      // durable while the plugins run (an fsync is milliseconds), and surely before the pod is reported.
      const file = await this.cache.write(entry, false);
      const durable = syncFile(file).then(() => undefined, (err: unknown) => err);
      const progress: AddProgress = { completed: 0, result: null };
      const ctx = this.ctx();
      try {
        const result = await addList(ctx, att, progress);
        const syncFailed = await durable;
        if (syncFailed !== undefined) throw internal(`making CNI cache entry ${file} durable: ${errorMessage(syncFailed)}`, syncFailed);
        const ips = podIps(result);
        // Lost in a power cut, the durable 'adding' entry still leads DEL to this attachment. The caller's own
        // record of the pod is written at the same time (two files on the disk's clock, not one after the other).
        await Promise.all([this.cache.write({ ...entry, state: 'added', completed: progress.completed, result }, false), persist?.(ips)]);
        if (ips.length === 0) this.opts.log?.warn({ podId: pod.id, network: att.network.name }, 'CNI ADD result names no address inside the pod');
        return ips;
      } catch (err) {
        const failed: CacheEntry = { ...entry, state: 'failed', completed: progress.completed, result: progress.result };
        await this.cache.write(failed).catch((e: unknown) => this.opts.log?.warn({ podId: pod.id, err: errorMessage(e) }, 'caching the failed CNI ADD'));
        const addErr = err instanceof BerthError ? err : new BerthError('INTERNAL', errorMessage(err), { cause: err });
        const what = `CNI ADD of pod ${pod.id} to network ${att.network.name} failed`;
        try {
          await delList(ctx, att, progress.result);
          await this.cache.remove(file);
        } catch (delErr) {
          throw new BerthError(addErr.code, `${what}: ${addErr.message} (and the DEL to undo it failed, kept for a retry: ${errorMessage(delErr)})`, { cause: err });
        }
        throw new BerthError(addErr.code, `${what}: ${addErr.message}`, { cause: err });
      }
    });
  }

  /** DEL with the cached config and result; nothing cached = nothing to do. A gone netns still gets DEL (IPAM). */
  async tearDown(pod: CniPod): Promise<void> {
    checkContainerId(pod.id);
    await this.locks.with(pod.id, () => this.delCached(pod));
  }

  /** CHECK against the cached ADD result; false when the network cannot be checked (pre-0.4.0 or disableCheck). */
  async check(pod: CniPod): Promise<boolean> {
    checkContainerId(pod.id);
    return this.locks.with(pod.id, async () => {
      const cached = await this.cache.forContainer(pod.id, POD_IFNAME);
      if (cached.length === 0) throw failedPrecondition(`pod ${pod.id} has no CNI attachment`);
      let checked = false;
      for (const a of cached) {
        if (!a.entry || a.entry.state !== 'added' || !a.entry.result) throw failedPrecondition(`pod ${pod.id}: CNI attachment ${a.file} is not complete`);
        const netns = (await this.currentNetns(pod.namespaces.net, a.entry.netns)) || a.entry.netns;
        checked = (await checkList(this.ctx(), { ...a.entry, netns }, a.entry.result)) || checked;
      }
      return checked;
    });
  }

  /** Network readiness: a valid config and, for CNI 1.1+ networks, every plugin's STATUS. */
  async status(): Promise<CniStatus> {
    const lookup = await this.watcher.get();
    if (!lookup.ok) return { ready: false, message: lookup.message };
    try {
      await statusList(this.ctx(), lookup.network);
      return { ready: true, message: '' };
    } catch (err) {
      return { ready: false, message: errorMessage(err) };
    }
  }

  /** Start-up reconciliation: DELs every cached attachment whose pod `isKnown` does not recognise. */
  async releaseOrphans(isKnown: (podId: string) => boolean): Promise<{ podId: string; network: string; error?: string }[]> {
    const out: { podId: string; network: string; error?: string }[] = [];
    for (const a of await this.cache.list()) {
      if (isKnown(a.containerId) || !CONTAINER_ID.test(a.containerId)) continue;
      try {
        await this.locks.with(a.containerId, () => this.delOne(a, undefined));
        out.push({ podId: a.containerId, network: a.network });
      } catch (err) {
        out.push({ podId: a.containerId, network: a.network, error: errorMessage(err) });
      }
    }
    return out;
  }

  private async delCached(pod: CniPod): Promise<void> {
    const failures: string[] = [];
    let code: BerthError['code'] = 'INTERNAL';
    for (const a of await this.cache.forContainer(pod.id, POD_IFNAME)) {
      try {
        await this.delOne(a, pod);
      } catch (err) {
        if (err instanceof BerthError) code = err.code;
        failures.push(errorMessage(err));
      }
    }
    if (failures.length > 0) throw new BerthError(code, `tearing down the network of pod ${pod.id}: ${failures.join('; ')}`);
  }

  /** DEL for one cached attachment; an unreadable entry falls back to the current config without prevResult. */
  private async delOne(a: CachedAttachment, pod: CniPod | undefined): Promise<void> {
    let entry = a.entry;
    if (!entry) {
      const lookup = await this.watcher.get();
      if (!pod || !lookup.ok) throw new BerthError('INTERNAL', `CNI cache entry ${a.file} is unreadable (${a.error}) and no current config can replace it`);
      this.opts.log?.warn({ file: a.file, err: a.error }, 'CNI cache entry unreadable: DEL with the current config');
      entry = {
        kind: CACHE_KIND, network: lookup.network, containerId: pod.id, ifName: POD_IFNAME, netns: '', cniArgs: cniArgs(pod.id, pod.config),
        capabilityArgs: capabilityArgs(pod.config, this.opts.podCidr?.() ?? ''), state: 'failed', completed: 0, result: null, updatedAt: '',
      };
    }
    const netns = await this.currentNetns(pod?.namespaces.net, entry.netns);
    await delList(this.ctx(), { ...entry, netns }, entry.result);
    await this.cache.remove(a.file);
  }

  /** The pod's netns pin if it is still a namespace, else the cached one if it is, else "" (DEL without a netns). */
  private async currentNetns(...candidates: (string | undefined)[]): Promise<string> {
    for (const c of candidates) if (c && (await isNetns(c))) return c;
    return '';
  }

  private ctx(): OpsContext {
    const s = this.opts.settings();
    const seconds = s.pluginTimeoutSeconds;
    if (!Number.isFinite(seconds) || seconds <= 0) throw invalidArgument(`network.plugin_timeout_seconds ${seconds} must be positive`);
    return { pluginDirs: s.pluginDirs, timeoutMs: seconds * 1000, observer: this.opts.observer, log: this.opts.log };
  }
}

/** True when `file` is an nsfs file (a namespace pin or /proc/<pid>/ns/net), false when missing or anything else. */
export async function isNetns(file: string): Promise<boolean> {
  try {
    return Number((await fs.statfs(file)).type) === NSFS_MAGIC;
  } catch {
    return false;
  }
}

function checkContainerId(id: string): void {
  if (!CONTAINER_ID.test(id)) throw invalidArgument(`pod id ${JSON.stringify(id)} is not a valid CNI container ID`);
}
