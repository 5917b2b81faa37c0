// Prometheus metrics: one registry per daemon (tests start several in one process), default Node process metrics
// included, and the /metrics HTTP endpoint.
import http from 'node:http';
import { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { IntrospectionRoutes } from './introspection';
import { countDefunct } from './defunct-processes';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Where the gauges computed at scrape time read the node's state (set once the managers exist). */
export interface MetricSources {
  containersRunning(): Promise<number>;
  podsRunning(): number;
}

export class Metrics {
  readonly registry = new Registry();
  readonly operations: Counter<'operation'>;
  readonly operationErrors: Counter<'operation' | 'code'>;
  readonly operationLatency: Histogram<'operation'>;
  readonly imagePullBytes: Counter;
  readonly imagePullDuration: Histogram;
  readonly imagePullFailures: Counter<'reason'>;
  readonly imageLayerReuse: Counter;
  readonly containersOom: Counter;
  readonly cniDuration: Histogram<'op' | 'plugin'>;
  readonly cniErrors: Counter<'op' | 'plugin'>;
  readonly containersOomByName: Counter<'name'>;
  readonly containersRunning: Gauge;
  readonly podsRunning: Gauge;
  readonly containerEventsDropped: Counter;
  readonly processesDefunct: Gauge;
  readonly imagePullThroughput: Histogram;
  /** Exec, attach and port-forward sessions open on the streaming server (it moves this). */
  readonly streamsActive: Gauge;
  readonly streamErrors: Counter;
  private sources: MetricSources | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.operations = new Counter({
      name: 'berth_operations_total',
      help: 'CRI operations handled, by RPC name.',
      labelNames: ['operation'],
      registers: [this.registry],
    });
    this.operationErrors = new Counter({
      name: 'berth_operations_errors_total',
      help: 'CRI operations that returned an error, by RPC name and gRPC status code.',
      labelNames: ['operation', 'code'],
      registers: [this.registry],
    });
    this.operationLatency = new Histogram({
      name: 'berth_operations_latency_seconds',
      help: 'Latency of CRI operations, by RPC name.',
      labelNames: ['operation'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [this.registry],
    });
    this.imagePullBytes = new Counter({
      name: 'berth_image_pulls_bytes_total',
      help: 'Bytes of image layers downloaded from registries.',
      registers: [this.registry],
    });
    this.imagePullDuration = new Histogram({
      name: 'berth_image_pull_duration_seconds',
      help: 'Duration of successful image pulls.',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600],
      registers: [this.registry],
    });
    this.imagePullFailures = new Counter({
      name: 'berth_image_pulls_failures_total',
      help: 'Failed image pulls, by reason (the error code).',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.imageLayerReuse = new Counter({
      name: 'berth_image_layer_reuse_total',
      help: 'Layers a pull did not download because the store already had them (or another pull was making them).',
      registers: [this.registry],
    });
    this.cniDuration = new Histogram({
      name: 'berth_cni_operation_duration_seconds',
      help: 'Time of each CNI plugin call, by operation (ADD, DEL, CHECK, STATUS) and plugin type.',
      labelNames: ['op', 'plugin'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers: [this.registry],
    });
    this.cniErrors = new Counter({
      name: 'berth_cni_operation_errors_total',
      help: 'CNI plugin calls that failed, by operation and plugin type.',
      labelNames: ['op', 'plugin'],
      registers: [this.registry],
    });
    this.containersOom = new Counter({
      name: 'berth_containers_oom_total',
      help: 'Containers killed by the kernel for exceeding their memory limit.',
      registers: [this.registry],
    });
    this.containersOomByName = new Counter({
      name: 'berth_containers_oom_count_total',
      help: 'Containers killed for memory, by container name.',
      labelNames: ['name'],
      registers: [this.registry],
    });
    this.containersRunning = new Gauge({
      name: 'berth_containers_running',
      help: 'Containers in state running.',
      registers: [this.registry],
      collect: async () => this.containersRunning.set((await this.sources?.containersRunning()) ?? 0),
    });
    this.podsRunning = new Gauge({
      name: 'berth_pods_running',
      help: 'Pod sandboxes in state ready.',
      registers: [this.registry],
      collect: () => this.podsRunning.set(this.sources?.podsRunning() ?? 0),
    });
    this.containerEventsDropped = new Counter({
      name: 'berth_container_events_dropped_total',
      help: 'Container events a GetContainerEvents subscriber lost when it fell a whole queue behind and was dropped.',
      registers: [this.registry],
    });
    this.processesDefunct = new Gauge({
      name: 'berth_processes_defunct',
      help: 'Zombie (defunct) processes on the host.',
      registers: [this.registry],
      collect: async () => this.processesDefunct.set(await countDefunct()),
    });
    this.imagePullThroughput = new Histogram({
      name: 'berth_image_pull_throughput_bytes_per_second',
      help: 'Download throughput of each successful image pull that fetched layers: its bytes over its duration.',
      buckets: [64 * KiB, 256 * KiB, MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, 1024 * MiB],
      registers: [this.registry],
    });
    this.streamsActive = new Gauge({
      name: 'berth_streams_active',
      help: 'Exec, attach and port-forward sessions open on the streaming server.',
      registers: [this.registry],
    });
    this.streamErrors = new Counter({
      name: 'berth_stream_errors_total',
      help: 'Streaming sessions (exec, attach, port-forward) that ended with an error.',
      registers: [this.registry],
    });
  }

  /** Lets the scrape-time gauges read the managers. */
  observe(sources: MetricSources): void {
    this.sources = sources;
  }
}

/** Parses "host:port" or "[v6]:port". */
export function parseHostPort(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  if (!m) throw new Error(`bad address "${address}": want host:port`);
  return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
}

export async function serveMetrics(metrics: Metrics, address: string, routes?: IntrospectionRoutes): Promise<{ server: http.Server; port: number }> {
  const { host, port } = parseHostPort(address);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const notFound = (): void => void res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try GET /metrics, /info, /config, /containers/<id> or /pods/<id>\n');
    if (req.method !== 'GET') return notFound();
    if (path !== '/metrics') {
      if (!routes) return notFound();
      routes(path).then(
        (reply) => (reply ? void res.writeHead(reply.status, { 'content-type': reply.contentType }).end(reply.body) : notFound()),
        (err: unknown) => void res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
      );
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return { server, port: (server.address() as AddressInfo).port };
}
