// Strict parsers for the kernel's cgroup counter files, shared by the v1 and v2 readers. The kernel never writes
// anything but these formats, so text that does not match means berth read the wrong file: that is an INTERNAL
// error naming the file, never a guessed number (a wrong working set would mislead the kubelet's eviction).
import fs from 'node:fs/promises';
import { BerthError, errnoCode, errorMessage } from '../../common/errors';

const DIGITS = /^\d+$/;

/** The contents of the files a reader found, by file name; a file that is not there is simply absent. */
export type CgroupFiles<Name extends string> = Partial<Record<Name, string>>;

export function garbage(file: string, text: string): BerthError {
  return new BerthError('INTERNAL', `${file} is not in the kernel's format: ${JSON.stringify(text.slice(0, 80))}`);
}

/** A single-value file (`memory.current`, `cpuacct.usage`, `pids.current`, …). */
export function parseCounter(file: string, text: string): bigint {
  const value = text.trim();
  if (!DIGITS.test(value)) throw garbage(file, text);
  return BigInt(value);
}

/** A v2 limit file: `max` is no limit (undefined). */
export function parseMax(file: string, text: string): bigint | undefined {
  return text.trim() === 'max' ? undefined : parseCounter(file, text);
}

/** A flat-keyed file (`memory.stat`, `cpu.stat`): one `key value` per line. */
export function parseFlatKeyed(file: string, text: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const [key, value, extra] = line.trim().split(/\s+/);
    if (key === undefined || value === undefined || extra !== undefined || !DIGITS.test(value)) throw garbage(file, line);
    out.set(key, BigInt(value));
  }
  return out;
}

/** A file the parser cannot do without; its absence means the cgroup (or its controller) is not there. */
export function required(file: string, text: string | undefined): string {
  if (text === undefined) throw new BerthError('NOT_FOUND', `no ${file}`);
  return text;
}

export const floorZero = (n: bigint): bigint => (n < 0n ? 0n : n);

/** What the kubelet and cadvisor call the working set: usage less the inactive page cache it could drop at once. */
export function workingSet(usage: bigint, inactiveFile: bigint): bigint {
  return floorZero(usage - inactiveFile);
}

/** Reads `names` from `dir` in parallel; ENOENT (file or dir) is absence, anything else an error. */
export async function readFiles<Name extends string>(dir: string, names: readonly Name[]): Promise<CgroupFiles<Name>> {
  const out: CgroupFiles<Name> = {};
  await Promise.all(
    names.map(async (name) => {
      try {
        out[name] = await fs.readFile(`${dir}/${name}`, 'utf8');
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') return;
        throw new BerthError('INTERNAL', `reading ${dir}/${name}: ${errorMessage(err)}`, { cause: err });
      }
    }),
  );
  return out;
}
