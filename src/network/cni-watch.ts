// Keeps the current pod network config: loaded at start, reloaded (debounced) when the conf dir changes, and
// re-checked on demand while none is valid, so a config dropped in after start (the usual order on a new node: the
// network add-on's DaemonSet writes it) is used without a restart. The dir and default network come from a getter
// because both are live settings; a changed dir is re-watched on the next look.
import fs, { type FSWatcher } from 'node:fs';
import { errorMessage } from '../common/errors';
import { findNetworkConfig, type NetworkLookup } from './cni-config';

export interface ConfigSource {
  confDir: string;
  defaultNetwork: string;
}

export interface WatchLog {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface WatcherOptions {
  /** Quiet time after the last event before reloading (an editor or installer writes several times). */
  debounceMs?: number;
  /** How often to retry watching a conf dir that does not exist yet. */
  retryMs?: number;
  log?: WatchLog;
  /** Called after every reload whose outcome (file, network or error) differs from the previous one. */
  onChange?: (lookup: NetworkLookup) => void;
}

export class NetworkConfigWatcher {
  private lookup: NetworkLookup | undefined;
  private loadedFor: string | undefined;
  private watcher: FSWatcher | undefined;
  private watchedDir: string | undefined;
  private watchedIno: number | undefined;
  private debounce: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private inFlight: Promise<NetworkLookup> | undefined;
  private again = false;
  private closed = false;
  private readonly debounceMs: number;
  private readonly retryMs: number;

  constructor(
    private readonly source: () => ConfigSource,
    private readonly opts: WatcherOptions = {},
  ) {
    this.debounceMs = opts.debounceMs ?? 200;
    this.retryMs = opts.retryMs ?? 2000;
  }

  /** Loads the config and starts watching its dir. */
  async start(): Promise<NetworkLookup> {
    this.closed = false;
    return this.refresh();
  }

  /** The config as last loaded (undefined before the first load). */
  current(): NetworkLookup | undefined {
    return this.lookup;
  }

  /**
   * The config to use now: the loaded one when valid and the settings have not changed since, otherwise a fresh
   * look at the dir (a miss is re-checked on every call, so no event can be lost for good).
   */
  async get(): Promise<NetworkLookup> {
    if (this.lookup?.ok && this.loadedFor === key(this.source())) return this.lookup;
    return this.refresh();
  }

  /** Re-reads the conf dir now; concurrent calls share one read, and a call during a read causes one more. */
  refresh(): Promise<NetworkLookup> {
    if (this.inFlight) {
      this.again = true;
      return this.inFlight;
    }
    const run = async (): Promise<NetworkLookup> => {
      let result: NetworkLookup;
      do {
        this.again = false;
        const src = this.source();
        this.ensureWatch(src.confDir);
        result = await findNetworkConfig(src.confDir, src.defaultNetwork);
        const before = this.lookup;
        this.lookup = result;
        this.loadedFor = key(src);
        if (!sameOutcome(before, result)) {
          this.opts.log?.debug({ confDir: src.confDir, ok: result.ok, file: result.ok ? result.network.file : undefined }, 'CNI config reloaded');
          this.opts.onChange?.(result);
        }
      } while (this.again && !this.closed);
      return result;
    };
    this.inFlight = run().finally(() => (this.inFlight = undefined));
    return this.inFlight;
  }

  close(): void {
    this.closed = true;
    this.unwatch();
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = undefined;
  }

  private ensureWatch(dir: string): void {
    if (this.closed) return;
    let ino: number | undefined;
    try {
      ino = fs.statSync(dir).ino;
    } catch {
      // missing: fs.watch below fails and schedules a retry
    }
    // Same path and same inode: still watching the right dir (a dir removed and made again is a new inode).
    if (this.watcher && this.watchedDir === dir && this.watchedIno === ino) return;
    this.unwatch();
    try {
      const w = fs.watch(dir, { persistent: false }, () => this.schedule());
      w.on('error', (err) => {
        // The dir went away (or was replaced): drop the watch, look again, and re-watch when it is back.
        this.opts.log?.debug({ dir, err: errorMessage(err) }, 'CNI conf dir watch ended');
        if (this.watcher === w) this.unwatch();
        this.schedule();
      });
      this.watcher = w;
      this.watchedDir = dir;
      this.watchedIno = ino;
    } catch (err) {
      this.opts.log?.debug({ dir, err: errorMessage(err) }, 'cannot watch CNI conf dir yet; retrying');
      this.retry = setTimeout(() => {
        this.retry = undefined;
        void this.refresh();
      }, this.retryMs);
      this.retry.unref();
    }
  }

  private unwatch(): void {
    this.watcher?.close();
    this.watcher = undefined;
    this.watchedDir = undefined;
    this.watchedIno = undefined;
    if (this.retry) clearTimeout(this.retry);
    this.retry = undefined;
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = undefined;
      this.refresh().catch((err: unknown) => this.opts.log?.warn({ err: errorMessage(err) }, 'CNI config reload failed'));
    }, this.debounceMs);
    this.debounce.unref();
  }
}

function key(src: ConfigSource): string {
  return JSON.stringify([src.confDir, src.defaultNetwork]);
}

function sameOutcome(a: NetworkLookup | undefined, b: NetworkLookup): boolean {
  if (a === undefined) return false;
  if (a.ok && b.ok) return JSON.stringify(a.network) === JSON.stringify(b.network);
  return !a.ok && !b.ok && a.message === b.message;
}
