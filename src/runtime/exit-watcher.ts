// conmon writes a container's exit code into <exit dir>/<id> (g_file_set_contents: a temp file renamed into place).
// Watching that dir with inotify tells berth of an exit as it happens, as containerd learns it from its shim and
// CRI-O from its own inotify watch: a STOPPED event goes out at once, and while the watch is up Status and List
// answer from memory. While it is down (failed, re-arming) they look at the exit dir themselves, so a lost watch
// costs a syscall per read, never a missed exit.
import fs from 'node:fs';

export interface ExitWatcherLog {
  warn(obj: object, msg: string): void;
}

export interface ExitWatcher {
  close(): void;
}

const ID = /^[0-9a-f]{64}$/;
const RETRY_MS = [1000, 5000, 30_000];

/**
 * Calls `onExitFile(id)` for each exit file that appears, `onArmed()` each time the watch (re)starts, so exits that
 * landed while nothing watched are looked for once, and `onLost()` when it stops (failed, or closed). A failing
 * watch is logged and re-armed with backoff.
 */
export function watchExitDir(
  dir: string, onExitFile: (id: string) => void, onArmed: () => void, onLost: () => void, log: ExitWatcherLog,
): ExitWatcher {
  let watcher: fs.FSWatcher | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;
  let closed = false;

  const retry = (err: unknown): void => {
    onLost();
    watcher?.close();
    watcher = undefined;
    if (closed) return;
    const delay = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)] ?? 30_000;
    log.warn({ dir, err: String(err), retryMs: delay }, 'cannot watch the exit dir; exits are noticed by Status and List until the watch is back');
    timer = setTimeout(arm, delay);
    timer.unref();
  };

  function arm(): void {
    timer = undefined;
    if (closed) return;
    try {
      // Not persistent: the watch never keeps the process alive on its own.
      watcher = fs.watch(dir, { persistent: false }, (_type, name) => {
        if (typeof name === 'string' && ID.test(name)) onExitFile(name);
      });
      watcher.on('error', retry);
      failures = 0;
      onArmed();
    } catch (err) {
      retry(err);
    }
  }

  arm();
  return {
    close: () => {
      onLost();
      closed = true;
      if (timer) clearTimeout(timer);
      watcher?.close();
      watcher = undefined;
    },
  };
}
