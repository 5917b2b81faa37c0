// Stats readers against this host: a v1 cgroup of the test's own with a CPU burner and a /dev/shm writer in it, and
// a throwaway netns joined to the host by a veth pair on a /30 of its own.
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { joinCgroup, removeCgroup } from '../../src/runtime/cgroups';
import { readCgroupStats } from '../../src/runtime/stats/cgroup-stats';
import { CpuRate } from '../../src/runtime/stats/cpu-rate';
import { NetInterfaceStats, parseNetDev, readPodNetStats } from '../../src/runtime/stats/net-stats';

const tag = randomBytes(3).toString('hex');
const MiB = 1024n * 1024n;
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// stdin not a socket: bash would take itself for an rsh child and read ~/.bashrc.
const sh = (file: string, args: string[]): string =>
  execFileSync(file, args, { encoding: 'utf8', env: ENV, stdio: ['ignore', 'pipe', 'pipe'] }).trim();
const quiet = (file: string, args: string[]): void => {
  try {
    execFileSync(file, args, { stdio: 'ignore', env: ENV });
  } catch {
    // cleanup of something a failed step never made
  }
};

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

async function killAll(children: ChildProcess[]): Promise<void> {
  for (const child of children.splice(0)) {
    child.kill('SIGKILL');
    await exited(child);
  }
}

describe('cgroup v1 stats on this host', () => {
  const cg = `/berth-stats-test-${tag}`;
  const shm = `/dev/shm/berth-stats-${tag}`;
  const children: ChildProcess[] = [];

  afterAll(async () => {
    await killAll(children);
    fs.rmSync(shm, { force: true });
    // A killed task leaves the cgroup as it is reaped; rmdir says EBUSY until then.
    for (let i = 0; ; i++) {
      try {
        await removeCgroup(cg);
        break;
      } catch (err) {
        if (i >= 50) throw err;
        await sleep(20);
      }
    }
    expect(fs.existsSync(`/sys/fs/cgroup/memory${cg}`)).toBe(false);
  });

  it('shows cpu usage and memory growing between two reads', async () => {
    // Held at `read` until it is in the cgroup, so the 50 MiB of shm pages are charged there.
    const writer = spawn('/bin/sh', ['-c', `read go && exec /usr/bin/dd if=/dev/zero of=${shm} bs=1M count=50`], {
      stdio: ['pipe', 'ignore', 'pipe'],
      env: ENV,
    });
    children.push(writer);
    await joinCgroup(cg, writer.pid as number);
    fs.writeFileSync(`/sys/fs/cgroup/memory${cg}/memory.limit_in_bytes`, String(512n * MiB));

    const rate = new CpuRate();
    const before = await readCgroupStats(cg);
    expect(rate.sample('c', before.cpu.usageCoreNs, before.timestampNs)).toBeUndefined();
    expect(before.pids?.current).toBe(1n);
    expect(before.memory.limitBytes).toBe(512n * MiB);

    const burner = spawn('/bin/sh', ['-c', 'while :; do :; done'], { stdio: 'ignore', env: ENV });
    children.push(burner);
    await joinCgroup(cg, burner.pid as number);
    writer.stdin?.end('go\n');
    expect(await exited(writer)).toBe(0);
    await sleep(600);
    const after = await readCgroupStats(cg);

    // Two shared cores: the burner gets at least a fair share of 0.6 s.
    const burnt = after.cpu.usageCoreNs - before.cpu.usageCoreNs;
    expect(burnt).toBeGreaterThan(100_000_000n);
    const nanoCores = rate.sample('c', after.cpu.usageCoreNs, after.timestampNs) ?? 0n;
    expect(nanoCores).toBeGreaterThan(100_000_000n);
    expect(nanoCores).toBeLessThanOrEqual(BigInt(2 * 1e9) + 100_000_000n);

    // shm pages are swap-backed (anon LRU): in usage and the working set, not rss, not inactive_file.
    expect(after.memory.usageBytes - before.memory.usageBytes).toBeGreaterThanOrEqual(48n * MiB);
    expect(after.memory.workingSetBytes - before.memory.workingSetBytes).toBeGreaterThanOrEqual(48n * MiB);
    expect(after.memory.workingSetBytes).toBeLessThanOrEqual(after.memory.usageBytes);
    expect(after.memory.pageFaults).toBeGreaterThan(before.memory.pageFaults);
    expect(after.memory.availableBytes).toBe(512n * MiB - after.memory.workingSetBytes);
    expect(after.pids?.current).toBe(1n); // the writer is gone, the burner stays
    // This host has swap accounting (memory.memsw.*) but no swap device.
    expect(after.swap).toEqual({ usageBytes: 0n });
    expect(after.timestampNs).toBeGreaterThan(before.timestampNs);

    // The mapping from controller to hierarchy is right: the same numbers as the files themselves.
    const file = (f: string): bigint => BigInt(fs.readFileSync(`/sys/fs/cgroup/${f}`, 'utf8').trim());
    expect(file(`pids${cg}/pids.current`)).toBe(after.pids?.current);
    expect(file(`cpuacct${cg}/cpuacct.usage`)).toBeGreaterThanOrEqual(after.cpu.usageCoreNs);

    fs.rmSync(shm);
    const freed = await readCgroupStats(cg);
    expect(after.memory.usageBytes - freed.memory.usageBytes).toBeGreaterThanOrEqual(48n * MiB);
  });
});

describe('pod net stats on this host', () => {
  const netns = `berth-stats-${tag}`;
  const netnsPath = `/run/netns/${netns}`;
  const hostEnd = `bsh${tag}`;
  const podEnd = `bsp${tag}`;
  const net = `10.250.${parseInt(tag.slice(0, 2), 16)}`;
  const children: ChildProcess[] = [];
  const IP = '/usr/sbin/ip';

  beforeAll(() => {
    sh(IP, ['netns', 'add', netns]);
    sh(IP, ['-n', netns, 'link', 'set', 'lo', 'up']);
    sh(IP, ['link', 'add', hostEnd, 'type', 'veth', 'peer', 'name', podEnd, 'netns', netns]);
    sh(IP, ['addr', 'add', `${net}.1/30`, 'dev', hostEnd]);
    sh(IP, ['link', 'set', hostEnd, 'up']);
    sh(IP, ['-n', netns, 'addr', 'add', `${net}.2/30`, 'dev', podEnd]);
    sh(IP, ['-n', netns, 'link', 'set', podEnd, 'up']);
  });

  afterAll(async () => {
    await killAll(children);
    quiet(IP, ['link', 'del', hostEnd]);
    quiet(IP, ['netns', 'del', netns]);
    expect(fs.existsSync(netnsPath)).toBe(false);
    expect(sh(IP, ['-o', 'link'])).not.toContain(hostEnd);
  });

  /** Datagrams from inside the pod to the host end (port 9: the host answers port-unreachable). */
  const traffic = (count: number, to = `${net}.1`): void => {
    sh(IP, ['netns', 'exec', netns, '/bin/bash', '-c', `for i in $(seq ${count}); do echo berth-stats-test > /dev/udp/${to}/9; done`]);
  };
  const podIf = (list: NetInterfaceStats[]): NetInterfaceStats => {
    const found = list.find((i) => i.name === podEnd);
    if (!found) throw new Error(`${podEnd} not in ${JSON.stringify(list.map((i) => i.name))}`);
    return found;
  };

  it('reads the pinned netns through nsenter, without lo, and sees the veth counters grow', async () => {
    const before = await readPodNetStats({ netnsPath });
    expect(before.source).toBe('nsenter');
    expect(before.interfaces.map((i) => i.name)).toEqual([podEnd]);
    traffic(5);
    traffic(3, '127.0.0.1'); // lo traffic: counted by the kernel, left out here
    const after = await readPodNetStats({ netnsPath });
    // 5 × (14 Ethernet + 20 IP + 8 UDP + 17 payload) out, ARP and ICMP replies in.
    expect(podIf(after.interfaces).txBytes - podIf(before.interfaces).txBytes).toBeGreaterThanOrEqual(5n * 59n);
    expect(podIf(after.interfaces).rxBytes).toBeGreaterThan(podIf(before.interfaces).rxBytes);
    expect(podIf(after.interfaces).txErrors).toBe(0n);
    const raw = parseNetDev(sh('/usr/bin/nsenter', [`--net=${netnsPath}`, '--', '/usr/bin/cat', '/proc/net/dev']));
    expect(raw.find((i) => i.name === 'lo')?.txBytes).toBeGreaterThan(0n);
    // The host end mirrors the pod end.
    const host = parseNetDev(fs.readFileSync('/proc/net/dev', 'utf8')).find((i) => i.name === hostEnd);
    expect(host?.rxBytes).toBeGreaterThanOrEqual(podIf(after.interfaces).txBytes);
  });

  it("reads a pod process's /proc/<pid>/net/dev, checked against the pin, else falls back to nsenter", async () => {
    const inside = spawn(IP, ['netns', 'exec', netns, '/usr/bin/sleep', '30'], { stdio: 'ignore', env: ENV });
    children.push(inside);
    const pid = inside.pid as number;
    const want = `net:[${fs.statSync(netnsPath).ino}]`;
    for (let i = 0; fs.readlinkSync(`/proc/${pid}/ns/net`) !== want; i++) {
      if (i > 200) throw new Error('ip netns exec never entered the netns');
      await sleep(10);
    }

    const first = await readPodNetStats({ pid, netnsPath });
    expect(first.source).toBe('pid');
    expect(first.interfaces.map((i) => i.name)).toEqual([podEnd]);
    traffic(4);
    const second = await readPodNetStats({ pid, netnsPath });
    expect(second.source).toBe('pid');
    expect(podIf(second.interfaces).txBytes - podIf(first.interfaces).txBytes).toBeGreaterThanOrEqual(4n * 59n);
    expect(podIf((await readPodNetStats({ pid })).interfaces)).toEqual(podIf(second.interfaces)); // no pin: trusted

    // The same counters through nsenter.
    const viaNsenter = await readPodNetStats({ netnsPath });
    expect(viaNsenter.interfaces.map((i) => i.name)).toEqual([podEnd]);
    expect(podIf(viaNsenter.interfaces).txBytes).toBeGreaterThanOrEqual(podIf(second.interfaces).txBytes);

    // A pid in another netns (this test's own, the host's) is not believed.
    const wrong = await readPodNetStats({ pid: process.pid, netnsPath });
    expect(wrong.source).toBe('nsenter');
    expect(wrong.interfaces.map((i) => i.name)).toEqual([podEnd]);

    // Once the process is gone, the pin still answers.
    await killAll(children);
    const gone = await readPodNetStats({ pid, netnsPath });
    expect(gone.source).toBe('nsenter');
    expect(podIf(gone.interfaces).txBytes).toBeGreaterThanOrEqual(podIf(second.interfaces).txBytes);
  });

  it('a netns path that is not a namespace is an error, not a crash', async () => {
    const file = `/run/berth-stats-${tag}-not-a-netns`;
    fs.writeFileSync(file, '');
    try {
      await expect(readPodNetStats({ netnsPath: file, timeoutMs: 5_000 })).rejects.toMatchObject({
        code: 'INTERNAL',
        message: expect.stringContaining('nsenter failed (exit 1)'),
      });
    } finally {
      fs.rmSync(file, { force: true });
    }
  });
});
