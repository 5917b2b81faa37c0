// Removal off the critical path, as containerd leaves snapshot removal to its GC: a directory is renamed into a trash
// dir on the same filesystem (atomic: gone from its place at once) and deleted in the background, one at a time.
// What a crash leaves in the trash is deleted at the next start.
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, errorMessage } from '../common/errors';

export interface TrashLog {
  warn(obj: object, msg: string): void;
}

export class Trash {
  private queue: Promise<void> = Promise.resolve();

  /** dirs: one trash dir per filesystem berth removes from (e.g. <root>/trash and <state_dir>/trash). */
  constructor(private readonly dirs: string[], private readonly log?: TrashLog) {}

  /** Makes the trash dirs and schedules the removal of whatever an earlier run left in them. */
  async init(): Promise<void> {
    for (const dir of this.dirs) {
      await fs.mkdir(dir, { recursive: true, mode: 0o700 });
      for (const name of await fs.readdir(dir)) this.later(path.join(dir, name));
    }
  }

  /** Takes `target` away now and deletes it later; a missing target is fine. Falls back to deleting it now. */
  async discard(target: string): Promise<void> {
    const dir = this.dirs.find((d) => target.startsWith(`${path.dirname(d)}/`));
    if (dir) {
      const dest = path.join(dir, `${path.basename(target)}-${randomBytes(4).toString('hex')}`);
      try {
        fsSync.renameSync(target, dest); // one syscall: cheaper here than in the thread pool
        this.later(dest);
        return;
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return;
        // EXDEV (another filesystem mounted there) and the like: delete in place.
      }
    }
    await fs.rm(target, { recursive: true, force: true });
  }

  /** Resolves once everything discarded so far is deleted. */
  drained(): Promise<void> {
    return this.queue;
  }

  private later(p: string): void {
    this.queue = this.queue.then(() =>
      fs.rm(p, { recursive: true, force: true }).catch((err: unknown) => this.log?.warn({ path: p, err: errorMessage(err) }, 'cannot empty the trash')),
    );
  }
}
