// Cold-pull benchmark: berth against Debian's containerd 1.6, both pulling the same ~200 MiB, 5-layer gzip image from
// a docker-registry on 127.0.0.1 through their CRI sockets. Every iteration starts a fresh daemon on a fresh root
// (a new temp dir: on this ext4 a dir just purged of many files is slow to refill for minutes); the runtimes take
// turns in ABBA order; all roots are removed at the very end. Prints a report; exits non-zero only if something
// failed to run.
//
//   node dist/bench/pull.js [--iterations=5] [--runtimes=berth,containerd] [--keep]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon, TestDaemon } from '../test/helpers/daemon';
import { startRegistry, Registry } from '../test/fixtures/registry';
import type { CriClient } from '../test/helpers/cri-client';
import { packageVersion } from '../src/common/package-root';
import { pushBigImage, PushedImage } from './big-image';
import { Containerd, startContainerd } from './containerd';
import { cleanUpOnInterrupt, diskUsageBytes, ensureContainerd, MiB, procCpuSeconds, procStatusBytes, removeTree, resetPeakRss, syncDisks } from './sys';

type Runtime = 'berth' | 'containerd';
const RUNTIMES: readonly Runtime[] = ['berth', 'containerd'];

const TARGET_RATIO = 0.8;
const TARGET_BERTH_RSS_GROWTH = 100 * MiB;
const PULL_DEADLINE_MS = 180_000;

interface Options {
  iterations: number;
  runtimes: Runtime[];
  keep: boolean;
}

interface Sample {
  seconds: number;
  readySeconds: number;
  rssBefore: number;
  rssPeak: number;
  /** VmHWM − VmRSS before, with VmHWM reset to VmRSS just before the pull (if the kernel allowed it). */
  rssGrowth: number;
  /** False if clear_refs was refused: the peak then includes the daemon's start-up. */
  peakReset: boolean;
  cpuSeconds: number;
  diskBytes: number | undefined;
}

interface Daemon {
  pid: number;
  root: string;
  dir: string;
  readySeconds: number;
  client(): CriClient;
  logs(): string;
  stop(): Promise<unknown>;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = { iterations: 5, runtimes: [...RUNTIMES], keep: false };
  for (const arg of argv) {
    const [key, value = ''] = arg.split('=', 2) as [string, string?];
    if (key === '--iterations' && /^\d+$/.test(value) && Number(value) > 0) opts.iterations = Number(value);
    else if (key === '--runtimes' && value.split(',').every((r) => (RUNTIMES as readonly string[]).includes(r))) {
      opts.runtimes = value.split(',') as Runtime[];
    } else if (key === '--keep') opts.keep = true;
    else throw new Error(`usage: pull.js [--iterations=N] [--runtimes=berth,containerd] [--keep]  (bad argument ${arg})`);
  }
  return opts;
}

const fmt = (n: number, digits = 2): string => n.toFixed(digits);
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);
const say = (s: string): void => void process.stdout.write(`${s}\n`);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    const c = typeof code === 'number' || typeof code === 'string' ? String(code) : undefined;
    return c !== undefined && !err.message.startsWith(c) ? `[code ${c}] ${err.message}` : err.message;
  }
  return String(err);
}

/** A new temp dir for one daemon, recorded before the daemon starts so a failed start leaks nothing. */
function freshDir(prefix: string, dirs: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

async function startBerth(registryHost: string, dir: string): Promise<Daemon> {
  const started = process.hrtime.bigint();
  const d: TestDaemon = await startDaemon({
    dir,
    metrics: false,
    toml: `[image.registries."${registryHost}"]\ninsecure = true\n`,
    // The test config logs at debug; a benchmark should not pay for that.
    args: ['--log-level', 'info'],
  });
  const pid = d.process.pid;
  if (pid === undefined) throw new Error('berth has no pid');
  return {
    pid,
    root: d.root,
    dir: d.dir,
    readySeconds: Number(process.hrtime.bigint() - started) / 1e9,
    client: () => d.client(),
    logs: () => d.logs(),
    stop: () => d.stop(),
  };
}

async function startPeer(registryHost: string, dir: string): Promise<Daemon> {
  const c: Containerd = await startContainerd({ registryHost, dir });
  return { pid: c.pid, root: c.root, dir: c.dir, readySeconds: c.readySeconds, client: () => c.client(), logs: () => c.logs(), stop: () => c.stop() };
}

/** One cold pull on a running daemon: RSS before, wall time, peak RSS and CPU during the pull, disk use after. */
async function timePull(d: Daemon, ref: string): Promise<Sample> {
  const client = d.client();
  syncDisks(); // the previous daemon's and the registry's dirty pages are written back before, not during, the pull
  const peakReset = resetPeakRss(d.pid);
  const rssBefore = procStatusBytes(d.pid, 'VmRSS');
  const cpuBefore = procCpuSeconds(d.pid);
  const t0 = process.hrtime.bigint();
  const res = await client.image.PullImage({ image: { image: ref } }, { deadline: Date.now() + PULL_DEADLINE_MS });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const rssPeak = procStatusBytes(d.pid, 'VmHWM');
  const cpuSeconds = procCpuSeconds(d.pid) - cpuBefore;
  if (!res.image_ref) throw new Error(`PullImage(${ref}) answered an empty image_ref`);
  return {
    seconds,
    readySeconds: d.readySeconds,
    rssBefore,
    rssPeak,
    rssGrowth: Math.max(0, rssPeak - rssBefore),
    peakReset,
    cpuSeconds,
    diskBytes: diskUsageBytes(d.root),
  };
}

function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

function report(image: PushedImage, samples: Map<Runtime, Sample[]>, errors: Map<Runtime, string>, opts: Options): void {
  say('');
  say(`cold pull of ${image.ref} (${image.layers} gzip layers, ${image.entries} tar entries):`);
  say(`  ${mib(image.compressedBytes)} MiB compressed, ${mib(image.tarBytes)} MiB of tar, ${mib(image.fileBytes)} MiB of file data`);
  say('  MiB/s below = compressed MiB / s (what crosses the wire); "unpacked" = tar MiB / s.');
  say('');
  const header = ['runtime', 'n', 'median s', 'min s', 'max s', 'MiB/s', 'unpacked', 'RSS before', 'RSS growth med', 'max', 'CPU s', 'disk MiB'];
  const rows: string[][] = [header];
  for (const rt of opts.runtimes) {
    const s = samples.get(rt) ?? [];
    if (s.length === 0) {
      rows.push([rt, '0', 'failed', '', '', '', '', '', '', '', '', '']);
      continue;
    }
    const secs = s.map((x) => x.seconds);
    const med = median(secs);
    const disk = s.map((x) => x.diskBytes).filter((x): x is number => x !== undefined);
    rows.push([
      rt,
      String(s.length),
      fmt(med),
      fmt(Math.min(...secs)),
      fmt(Math.max(...secs)),
      fmt(image.compressedBytes / MiB / med, 1),
      fmt(image.tarBytes / MiB / med, 1),
      `${mib(median(s.map((x) => x.rssBefore)))} MiB`,
      `${mib(median(s.map((x) => x.rssGrowth)))} MiB`,
      `${mib(Math.max(...s.map((x) => x.rssGrowth)))} MiB`,
      fmt(median(s.map((x) => x.cpuSeconds))),
      disk.length ? mib(median(disk)) : '?',
    ]);
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) say('  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '));
  say('');

  const b = samples.get('berth') ?? [];
  const c = samples.get('containerd') ?? [];
  if (b.length > 0 && c.length > 0) {
    const ratio = median(b.map((x) => x.seconds)) / median(c.map((x) => x.seconds));
    say(`  median pull time berth/containerd: ${fmt(ratio)}  (target ≤ ${TARGET_RATIO})  ${ratio <= TARGET_RATIO ? 'PASS' : 'FAIL'}`);
  } else if (opts.runtimes.length === RUNTIMES.length) {
    say('  median pull time berth/containerd: n/a (a runtime has no samples)  FAIL');
  } else {
    say(`  median pull time berth/containerd: n/a (only ${opts.runtimes.join(',')} was run)`);
  }
  if (b.length > 0) {
    const growth = Math.max(...b.map((x) => x.rssGrowth));
    const ok = growth <= TARGET_BERTH_RSS_GROWTH;
    say(`  berth RSS growth during a pull (max of ${b.length}): ${mib(growth)} MiB  (target ≤ ${mib(TARGET_BERTH_RSS_GROWTH)} MiB)  ${ok ? 'PASS' : 'FAIL'}`);
  } else if (opts.runtimes.includes('berth')) {
    say('  berth RSS growth: n/a (no berth samples)  FAIL');
  }
  if ([...samples.values()].some((s) => s.some((x) => !x.peakReset))) {
    say('  note: the kernel refused to reset VmHWM for some pulls; their RSS growth includes the daemon start-up.');
  }
  for (const [rt, err] of errors) say(`\n  ${rt} FAILED: ${err}`);
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const containerdVersion = opts.runtimes.includes('containerd') ? ensureContainerd((m) => say(m)) : 'not run';
  say(`berth ${packageVersion()}, node ${process.version}; ${containerdVersion}`);
  say(`${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), kernel ${os.release()}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);

  const samples = new Map<Runtime, Sample[]>(opts.runtimes.map((r) => [r, []]));
  const errors = new Map<Runtime, string>();
  const dirs: string[] = [];
  let registry: Registry | undefined;
  let current: Daemon | undefined;

  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await current?.stop().catch(() => undefined);
      await registry?.stop().catch(() => undefined);
      if (opts.keep) {
        if (dirs.length) say(`kept: ${dirs.join(' ')}`);
        return;
      }
      const t = process.hrtime.bigint();
      for (const d of dirs) removeTree(d);
      if (dirs.length) say(`removed ${dirs.length} daemon dirs in ${fmt(Number(process.hrtime.bigint() - t) / 1e9, 1)} s`);
    })());
  const interrupted = cleanUpOnInterrupt(cleanup);

  try {
    registry = await startRegistry();
    say(`registry ${registry.host}; building and pushing the image…`);
    const image = await pushBigImage(registry);
    say(`pushed ${image.ref} (${mib(image.compressedBytes)} MiB compressed, ${mib(image.tarBytes)} MiB tar) in ${fmt(image.buildSeconds, 1)} s`);

    for (let i = 1; i <= opts.iterations; i++) {
      // ABBA order (berth, containerd, containerd, berth, …): the first pulls of a run are the likeliest to be slowed
      // by an earlier rm -rf (ext4), and neither runtime should always take that slot.
      const order = i % 2 === 1 ? opts.runtimes : [...opts.runtimes].reverse();
      for (const rt of order) {
        if (interrupted()) return 130;
        if (errors.has(rt)) continue;
        let daemon: Daemon | undefined;
        try {
          const dir = freshDir(`berth-bench-pull-${rt}-`, dirs);
          daemon = current = rt === 'berth' ? await startBerth(registry.host, dir) : await startPeer(registry.host, dir);
          const s = await timePull(daemon, image.ref);
          (samples.get(rt) as Sample[]).push(s);
          say(
            `${rt.padEnd(10)} #${i}: pull ${fmt(s.seconds)} s, ready ${fmt(s.readySeconds)} s, RSS ${mib(s.rssBefore)} → peak ${mib(s.rssPeak)} MiB ` +
              `(+${mib(s.rssGrowth)}), CPU ${fmt(s.cpuSeconds)} s, disk ${s.diskBytes === undefined ? '?' : mib(s.diskBytes)} MiB`,
          );
        } catch (err) {
          if (interrupted()) return 130;
          const logs = daemon ? `\n  --- ${rt} log (tail) ---\n${tail(daemon.logs(), 15)}` : '';
          errors.set(rt, `iteration ${i}: ${errorText(err)}${logs}`);
          say(`${rt.padEnd(10)} #${i}: FAILED: ${errorText(err)}`);
        } finally {
          await daemon?.stop();
          current = undefined;
        }
      }
    }
    report(image, samples, errors, opts);
  } finally {
    await cleanup();
  }
  return errors.size > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench:pull failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(2);
  },
);
