// GetContainerEvents and the node metrics through the real daemon: what the kubelet's Evented PLEG and Prometheus see.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { loadCri } from '../../src/server/proto';
import type { ContainerConfig } from '../../src/server/generated/runtime/v1/ContainerConfig';
import type { ContainerEventResponse__Output } from '../../src/server/generated/runtime/v1/ContainerEventResponse';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import type { CriClient } from '../helpers/cri-client';
import type { TestDaemon } from '../helpers/daemon';
import { startPodFixture, type PodFixture } from '../helpers/pod-fixture';

const cgroupParent = `/berth-ev-${randomBytes(4).toString('hex')}`;
const QUEUE_SIZE = 4;

type Event = ContainerEventResponse__Output;

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, ms = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} not met in ${ms} ms`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A subscriber that reads everything as it comes. */
interface Subscriber {
  events: Event[];
  error: grpc.ServiceError | undefined;
  of(id: string): Event[];
  close(): void;
}

function subscribe(c: CriClient): Subscriber {
  const stream = c.raw.runtime.GetContainerEvents({});
  const sub: Subscriber = {
    events: [],
    error: undefined,
    of: (id) => sub.events.filter((e) => e.container_id === id),
    close: () => stream.cancel(),
  };
  stream.on('data', (e: Event) => sub.events.push(e));
  stream.on('error', (err: grpc.ServiceError) => (sub.error = err));
  return sub;
}

/** Families (from # TYPE lines) and samples ("name{labels}" → value) of a Prometheus text page. */
async function scrape(d: TestDaemon): Promise<{ families: Map<string, string>; samples: Map<string, number> }> {
  const text = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
  const families = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) families.set(type[1] ?? '', type[2] ?? '');
    const sample = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (sample) samples.set(sample[1] ?? '', Number(sample[2]));
  }
  return { families, samples };
}

describe('container events and node metrics', () => {
  let f: PodFixture;
  let d: TestDaemon;
  let c: CriClient;
  let image: string;
  let podId: string;
  let podConfig: PodSandboxConfig;
  const subscribers: Subscriber[] = [];

  beforeAll(async () => {
    f = await startPodFixture({ name: 'ev', cgroupParent, daemon: { args: ['--api-container-events-queue-size', String(QUEUE_SIZE)] }, pod: { labels: { app: 'ev' } } });
    ({ d, c, image, podId, podConfig } = f);
  });

  afterEach(() => {
    for (const s of subscribers.splice(0)) s.close();
  });

  afterAll(() => f?.close());

  function ctr(name: string, extra: Partial<ContainerConfig> = {}): ContainerConfig {
    return { metadata: { name, attempt: 0 }, image: { image }, labels: { name }, command: ['sleep', '1000'], ...extra };
  }

  /**
   * Subscribers that the server has registered: the stream gives no sign of that, so a probe container's CREATED
   * event, seen by every one of them, is the proof (a probe some missed is followed by another).
   */
  async function subscribed(n: number, pod = podId, config = podConfig): Promise<Subscriber[]> {
    const subs = Array.from({ length: n }, () => subscribe(c));
    subscribers.push(...subs);
    for (let attempt = 0; ; attempt++) {
      const { container_id: probe } = await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr(`probe-${attempt}`), sandbox_config: config });
      const seen = await waitFor(() => (subs.every((s) => s.of(probe).length > 0) ? true : undefined), 2000).catch(() => false);
      await c.runtime.RemoveContainer({ container_id: probe });
      if (seen) {
        await waitFor(() => (subs.every((s) => s.of(probe).length === 2) ? true : undefined), 5000, 'probe DELETED');
        for (const s of subs) s.events.length = 0;
        return subs;
      }
      if (attempt >= 5) throw new Error('subscribers never saw an event');
    }
  }

  it('two subscribers get CREATED, STARTED, STOPPED and DELETED in order, with the pod and container statuses', async () => {
    const subs = await subscribed(2);
    const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: podId, config: ctr('life'), sandbox_config: podConfig });
    await c.runtime.StartContainer({ container_id: id });
    await c.runtime.StopContainer({ container_id: id, timeout: 0 });
    await c.runtime.RemoveContainer({ container_id: id });
    for (const s of subs) await waitFor(() => (s.of(id).length >= 4 ? true : undefined), 5000, 'four events');
    await new Promise((r) => setTimeout(r, 200)); // nothing more (a second STOPPED) may follow
    const [first, second] = subs.map((s) => s.of(id)) as [Event[], Event[]];
    expect(first.map((e) => e.container_event_type)).toEqual(['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT', 'CONTAINER_DELETED_EVENT']);
    expect(second).toEqual(first);
    const state = (e: Event): string | undefined => e.containers_statuses.find((s) => s.id === id)?.state;
    expect(first.map(state)).toEqual(['CONTAINER_CREATED', 'CONTAINER_RUNNING', 'CONTAINER_EXITED', undefined]);
    const now = BigInt(Date.now()) * 1_000_000n;
    for (const e of first) {
      expect(BigInt(e.created_at)).toBeGreaterThan(now - 60_000_000_000n);
      expect(BigInt(e.created_at)).toBeLessThanOrEqual(now + 1_000_000_000n);
      expect(e.pod_sandbox_status).toMatchObject({ id: podId, state: 'SANDBOX_READY', metadata: { name: 'ev-pod', uid: 'ev-pod-uid' }, labels: { app: 'ev' } });
      expect(e.pod_sandbox_status?.linux?.namespaces?.options).toMatchObject({ network: 'POD' });
    }
    // The statuses are what ContainerStatus answers.
    const stopped = first[2]?.containers_statuses.find((s) => s.id === id);
    expect(stopped).toMatchObject({ metadata: { name: 'life' }, exit_code: 137, reason: 'Error', image: { image }, labels: { name: 'life' } });
    expect(BigInt(stopped?.finished_at ?? '0')).toBeGreaterThanOrEqual(BigInt(stopped?.started_at ?? '0'));
  });

  it('reports a container that exits by itself without anyone calling ContainerStatus or ListContainers', async () => {
    const [sub] = (await subscribed(1)) as [Subscriber];
    const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: podId, config: ctr('quits', { command: ['sh', '-c', 'exit 3'] }), sandbox_config: podConfig });
    await c.runtime.StartContainer({ container_id: id });
    const stopped = await waitFor(() => sub.of(id).find((e) => e.container_event_type === 'CONTAINER_STOPPED_EVENT'), 5000, 'STOPPED event');
    expect(sub.of(id).map((e) => e.container_event_type)).toEqual(['CONTAINER_CREATED_EVENT', 'CONTAINER_STARTED_EVENT', 'CONTAINER_STOPPED_EVENT']);
    expect(stopped.containers_statuses.find((s) => s.id === id)).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 3, reason: 'Error' });
    await c.runtime.RemoveContainer({ container_id: id });
    await waitFor(() => (sub.of(id).length === 4 ? true : undefined), 5000, 'DELETED event');
  });

  it('drops a subscriber that stops reading, without holding back the others, and counts what it lost', async () => {
    // Big events (the pod's annotations travel in each) fill the stalled stream's HTTP/2 window quickly.
    const bigConfig: PodSandboxConfig = { ...podConfig, metadata: { name: 'ev-big', namespace: 'default', uid: 'ev-big-uid', attempt: 0 }, annotations: { filler: 'x'.repeat(32 * 1024) } };
    const bigPod = (await c.runtime.RunPodSandbox({ config: bigConfig })).pod_sandbox_id;
    try {
      const [reader] = (await subscribed(1, bigPod, bigConfig)) as [Subscriber];
      // Its own connection: a stalled stream must not eat the flow-control window of the calls below.
      const cri = loadCri().runtime.v1;
      const stalledClient = new cri.RuntimeService(`unix:${d.socket}`, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 });
      const stalled = stalledClient.GetContainerEvents({});
      const ended = new Promise<grpc.ServiceError | undefined>((resolve) => {
        stalled.on('error', (err: grpc.ServiceError) => resolve(err));
        stalled.on('end', () => resolve(undefined));
      });
      // One read: grpc-js then takes messages until its reader buffer is full and only then stops reading the
      // HTTP/2 stream (a call never read from at all would buffer without bound on the client instead).
      stalled.pause();
      stalled.read();
      await new Promise((r) => setTimeout(r, 300)); // let the stalled call reach the server
      const before = (await scrape(d)).samples.get('berth_container_events_dropped_total') ?? 0;
      const ids: string[] = [];
      let dropped = before;
      for (let i = 0; i < 60 && dropped === before; i++) {
        const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: bigPod, config: ctr(`churn-${i}`), sandbox_config: bigConfig });
        await c.runtime.RemoveContainer({ container_id: id });
        ids.push(id);
        dropped = (await scrape(d)).samples.get('berth_container_events_dropped_total') ?? 0;
      }
      expect(dropped).toBeGreaterThan(before);
      // At least the overflowing event and the full queue it could not join.
      expect(dropped - before).toBeGreaterThanOrEqual(QUEUE_SIZE + 1);
      // The reading subscriber lost nothing, in order.
      await waitFor(() => (reader.events.length === ids.length * 2 ? true : undefined), 5000, 'all events at the reader');
      expect(reader.events.map((e) => `${e.container_id}:${e.container_event_type}`)).toEqual(ids.flatMap((id) => [`${id}:CONTAINER_CREATED_EVENT`, `${id}:CONTAINER_DELETED_EVENT`]));
      expect(reader.error).toBeUndefined();
      // Reading again, the stalled one gets what was already on its way, then the status that says it was dropped.
      stalled.on('data', () => undefined);
      stalled.resume();
      const err = await ended;
      stalledClient.close();
      expect(err).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: expect.stringContaining('dropped') });
    } finally {
      await c.runtime.RemovePodSandbox({ pod_sandbox_id: bigPod });
    }
  });

  it('exports the node gauges and counters, which follow the lifecycle', async () => {
    const families = [
      ['berth_containers_running', 'gauge'],
      ['berth_pods_running', 'gauge'],
      ['berth_container_events_dropped_total', 'counter'],
      ['berth_processes_defunct', 'gauge'],
      ['berth_image_pull_throughput_bytes_per_second', 'histogram'],
      ['berth_streams_active', 'gauge'],
      ['berth_containers_oom_count_total', 'counter'],
      ['berth_containers_oom_total', 'counter'],
    ];
    const first = await scrape(d);
    for (const [name, type] of families) expect([name, first.families.get(name ?? '')]).toEqual([name, type]);
    // The beforeAll pull downloaded the busybox layer: one throughput observation, in bytes per second.
    expect(first.samples.get('berth_image_pull_throughput_bytes_per_second_count')).toBeGreaterThanOrEqual(1);
    expect(first.samples.get('berth_image_pull_throughput_bytes_per_second_sum')).toBeGreaterThan(0);
    expect(first.samples.get('berth_streams_active')).toBe(0);
    const running = first.samples.get('berth_containers_running') ?? -1;
    const pods = first.samples.get('berth_pods_running') ?? -1;
    expect(pods).toBeGreaterThanOrEqual(1);

    const podB = (await c.runtime.RunPodSandbox({ config: { ...podConfig, metadata: { name: 'ev-b', namespace: 'default', uid: 'ev-b-uid', attempt: 0 } } })).pod_sandbox_id;
    const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: podB, config: ctr('counted') });
    await c.runtime.StartContainer({ container_id: id });
    const up = await scrape(d);
    expect([up.samples.get('berth_pods_running'), up.samples.get('berth_containers_running')]).toEqual([pods + 1, running + 1]);
    expect(up.samples.get('berth_operations_total{operation="StartContainer"}')).toBeGreaterThan(first.samples.get('berth_operations_total{operation="StartContainer"}') ?? 0);

    // A container that ends by itself leaves the running count without a Status call in between.
    await c.runtime.StopContainer({ container_id: id, timeout: 0 });
    const { container_id: quits } = await c.runtime.CreateContainer({ pod_sandbox_id: podB, config: ctr('quits-b', { command: ['sh', '-c', 'sleep 0.3'] }) });
    await c.runtime.StartContainer({ container_id: quits });
    await waitFor(async () => ((await scrape(d)).samples.get('berth_containers_running') === running ? true : undefined), 5000, 'running count back');

    await c.runtime.StopPodSandbox({ pod_sandbox_id: podB });
    expect((await scrape(d)).samples.get('berth_pods_running')).toBe(pods);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: podB });

    // A zombie: sh execs into sleep, which never reaps the child the shell left behind.
    const zombieMaker = spawn('sh', ['-c', 'sleep 0 & exec sleep 5'], { stdio: 'ignore' });
    try {
      await waitFor(async () => (((await scrape(d)).samples.get('berth_processes_defunct') ?? 0) >= 1 ? true : undefined), 5000, 'a defunct process counted');
    } finally {
      zombieMaker.kill('SIGKILL');
    }
  });

  // Last: it stops the daemon.
  it('ends open subscriptions with UNAVAILABLE at shutdown instead of waiting out the shutdown timeout', async () => {
    const [sub] = (await subscribed(1)) as [Subscriber];
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: podId });
    podId = '';
    const started = Date.now();
    expect(await d.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(5000); // api.shutdown_timeout_seconds is 10
    expect(sub.error).toMatchObject({ code: grpc.status.UNAVAILABLE, details: expect.stringContaining('shutting down') });
  });
});
