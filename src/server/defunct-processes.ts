// Zombie processes on the host (berth_processes_defunct, as CRI-O's processes_defunct): a growing count points at a
// container init or a conmon that does not reap its children. Counted at scrape time from /proc/<pid>/stat, with a
// bound on reads in flight, on pids looked at and on time, so a scrape of a crowded host stays cheap.
import fs from 'node:fs/promises';

export interface DefunctScanLimits {
  concurrency: number;
  maxPids: number;
  deadlineMs: number;
}

const DEFAULT_LIMITS: DefunctScanLimits = { concurrency: 16, maxPids: 65_536, deadlineMs: 2000 };

const inFlight = new Map<string, Promise<number>>();

/** The number of processes in state Z; concurrent scrapes share one scan. */
export function countDefunct(procDir = '/proc', limits: DefunctScanLimits = DEFAULT_LIMITS): Promise<number> {
  let running = inFlight.get(procDir);
  if (!running) {
    running = scan(procDir, limits).finally(() => inFlight.delete(procDir));
    inFlight.set(procDir, running);
  }
  return running;
}

async function scan(procDir: string, limits: DefunctScanLimits): Promise<number> {
  const pids = (await fs.readdir(procDir)).filter((n) => /^\d+$/.test(n)).slice(0, limits.maxPids);
  const deadline = Date.now() + limits.deadlineMs;
  let next = 0;
  let zombies = 0;
  const worker = async (): Promise<void> => {
    while (next < pids.length && Date.now() < deadline) {
      const text = await fs.readFile(`${procDir}/${pids[next++] ?? ''}/stat`, 'utf8').catch(() => '');
      // "pid (comm) S ...": comm may hold spaces and parentheses, so the state follows the last ')'.
      if (text[text.lastIndexOf(')') + 2] === 'Z') zombies++;
    }
  };
  await Promise.all(Array.from({ length: Math.min(limits.concurrency, pids.length) }, worker));
  return zombies;
}
