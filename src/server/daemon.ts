// Starting and stopping the daemon: directories, the gRPC server on its unix socket, the metrics endpoint.
import fs from 'node:fs/promises';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { CleanupStack } from '../common/cleanup-stack';
import { BerthError, errnoCode, errorMessage } from '../common/errors';
import { packageVersion } from '../common/package-root';
import { ImageManager } from '../image/image-manager';
import { CniNetwork } from '../network/pod-network';
import { ContainerManager, DEFAULT_CAPABILITIES } from '../runtime/container-manager';
import { runtimeFor, selectHandler } from '../runtime/oci-runtime';
import { recover } from '../runtime/recovery';
import { SandboxManager } from '../runtime/sandbox-manager';
import { storageLayout } from '../storage/layout';
import { applyLive, BerthConfig, diffConfig } from './config';
import type { ServerContext } from './context';
import { containerEvent, ContainerEvents } from './container-events';
import { warmContainerReplies } from './container';
import { imageService } from './image-service';
import type { Logger } from './log';
import { Trash } from '../storage/trash';
import { startPodNsServer, stopPodNsServer } from '../runtime/namespaces';
import { StreamingServer } from './streaming/server';
import { streamingBackend } from './streaming-backend';
import { introspection } from './introspection';
import { Metrics, serveMetrics } from './metrics';
import { loadCri } from './proto';
import { bindService } from './rpc';
import { GrpcServer } from './h2/grpc-server';
import { runtimeService } from './runtime-service';
import { prepareSocketPath, secureSocket } from './socket';
import { POD_CIDR_FILE } from './update-runtime-config';

export class Daemon {
  private constructor(
    /** Shared with the handlers' context, so a reload reaches them. */
    private readonly current: { cfg: BerthConfig },
    private readonly log: Logger,
    private readonly server: GrpcServer,
    private readonly images: ImageManager,
    private readonly network: CniNetwork,
    private readonly metricsServer: http.Server | undefined,
    readonly metricsPort: number | undefined,
    /** Run first on stop: what would hold the shutdown up (endless event streams) or outlive it (watches). */
    private readonly closeOnStop: (() => void)[] = [],
  ) {}

  static async start(cfg: BerthConfig, log: Logger): Promise<Daemon> {
    if (cfg.runtime.cgroup_driver === 'systemd' && !existsSync('/run/systemd/system')) {
      throw new BerthError('FAILED_PRECONDITION', 'runtime.cgroup_driver is "systemd" but systemd is not running on this host; use "cgroupfs"');
    }
    const layout = storageLayout(cfg.root);
    await fs.mkdir(cfg.root, { recursive: true, mode: 0o711 });
    await fs.mkdir(cfg.state_dir, { recursive: true, mode: 0o750 });
    await fs.mkdir(layout.imageStore, { recursive: true, mode: 0o700 });
    await fs.mkdir(layout.containers, { recursive: true, mode: 0o711 });

    const metrics = new Metrics();
    // Removed rootfs, bundle and pod dirs are deleted in the background (one trash dir per filesystem).
    const trash = new Trash([path.join(cfg.root, 'trash'), path.join(cfg.state_dir, 'trash')], log);
    await trash.init();
    const current = { cfg };
    const events = new ContainerEvents({
      queueSize: () => current.cfg.api.container_events_queue_size,
      onDropped: (lost) => metrics.containerEventsDropped.inc(lost),
    });
    const cleanup = new CleanupStack();
    try {
      await prepareSocketPath(cfg.api.listen);
      const images = new ImageManager(layout.imageStore, () => current.cfg.image, log, {
        bytes: (n) => metrics.imagePullBytes.inc(n),
        layerReused: () => metrics.imageLayerReuse.inc(),
        // A pull whose layers were all in the store downloaded nothing: it has no throughput to tell.
        pulled: (bytes, seconds) => {
          if (bytes > 0 && seconds > 0) metrics.imagePullThroughput.observe(bytes / seconds);
        },
      });
      await images.init();
      cleanup.push('release the storage lock', () => images.close());
      const runtimeState = { podCidr: await readPodCidr(cfg.state_dir) };
      const network = new CniNetwork({
        settings: () => {
          const n = current.cfg.network;
          return { confDir: n.cni_conf_dir, pluginDirs: n.cni_plugin_dirs, defaultNetwork: n.default_network, pluginTimeoutSeconds: n.plugin_timeout_seconds };
        },
        // On disk, as libcni keeps /var/lib/cni/results: IPAM reservations outlive a reboot, so must what DELs them.
        cacheDir: path.join(cfg.root, 'cni-cache'),
        podCidr: () => runtimeState.podCidr,
        observer: {
          pluginDone: (op, plugin, seconds, ok) => {
            metrics.cniDuration.observe({ op, plugin }, seconds);
            if (!ok) metrics.cniErrors.inc({ op, plugin });
          },
        },
        log,
      });
      await network.start();
      cleanup.push('stop watching the CNI config', () => network.close());
      const sandboxes = new SandboxManager({
        network,
        discard: (dir) => trash.discard(dir),
        stateDir: cfg.state_dir,
        checkpointDir: layout.podCheckpoints,
        cgroupParent: () => current.cfg.runtime.cgroup_parent,
        handlerFor: (requested) => selectHandler(current.cfg.runtime, requested, cfg.state_dir),
      });
      const containers = new ContainerManager({
        discard: (dir) => trash.discard(dir),
        stateDir: cfg.state_dir,
        containersDir: layout.containers,
        checkpointDir: layout.containerCheckpoints,
        images,
        pod: (id) => sandboxes.get(id),
        runtime: (handler) => runtimeFor(handler, current.cfg.runtime.conmon_path),
        defaultCapabilities: () => DEFAULT_CAPABILITIES,
        pidsLimit: () => current.cfg.runtime.pids_limit,
        onOomKilled: (c) => {
          metrics.containersOom.inc();
          metrics.containersOomByName.inc({ name: c.config.metadata?.name ?? c.name });
        },
        onEvent: (type, c) => {
          // After the current RPC's reply has gone out: the reads that follow a change then find it encoded.
          if (type !== 'CONTAINER_DELETED_EVENT') setImmediate(() => warmContainerReplies(c));
          try {
            events.publish(() => containerEvent({ sandboxes, containers }, type, c));
          } catch (err) {
            log.error({ err, id: c.id, type }, 'cannot publish a container event');
          }
        },
      });
      sandboxes.containers = containers;
      images.imageUser = (imageId) => containers.userOf(imageId);
      const unreadable = { pods: [] as string[], containers: [] as string[] };
      for (const [kind, store, ids] of [['pod', sandboxes, unreadable.pods], ['container', containers, unreadable.containers]] as const) {
        for (const u of (await store.init()).unreadable) {
          log.error({ id: u.id, error: u.error }, `${kind} checkpoint unreadable; its objects are kept, not cleaned up`);
          ids.push(u.id);
        }
      }
      // Reconcile checkpoints with what runs and remove what no checkpoint owns, before the first call is served.
      await recover({
        stateDir: cfg.state_dir,
        containersDir: layout.containers,
        cgroupParent: cfg.runtime.cgroup_parent,
        conmonPath: cfg.runtime.conmon_path,
        handlers: Object.keys(cfg.runtime.handlers).map((name) => selectHandler(cfg.runtime, name, cfg.state_dir)),
        runtime: (handler) => runtimeFor(handler, cfg.runtime.conmon_path),
        sandboxes,
        containers,
        unreadable,
        releaseOrphanNetworks: (isKnown) => network.releaseOrphans(isKnown),
        log,
      });
      // After recovery (which ends a dead daemon's namespace helpers): the first pod should not pay for the spawn.
      startPodNsServer();
      cleanup.push('stop the pod namespace helper', () => stopPodNsServer());
      // Exits are noticed as conmon records them, not only when the kubelet asks (STOPPED events stay timely).
      const exitWatch = containers.watchExits(log);
      cleanup.push('stop watching container exits', () => exitWatch.close());
      metrics.observe({
        containersRunning: async () => (await containers.list()).filter((c) => c.state === 'CONTAINER_RUNNING').length,
        podsRunning: () => sandboxes.list().filter((p) => p.state === 'SANDBOX_READY').length,
      });
      const ctx: ServerContext = {
        version: packageVersion(),
        config: () => current.cfg,
        log,
        metrics,
        layout,
        runtimeState,
        images,
        sandboxes,
        containers,
        events,
        streaming: () => {
          if (!streaming) throw new BerthError('UNAVAILABLE', 'the streaming server is not running yet');
          return streaming;
        },
      };
      const streaming: StreamingServer = await StreamingServer.start({
        address: cfg.streaming.address,
        port: cfg.streaming.port,
        ...(cfg.streaming.tls_cert_file ? { tls: { certFile: cfg.streaming.tls_cert_file, keyFile: cfg.streaming.tls_key_file } } : {}),
        tokenTtlMs: () => current.cfg.streaming.token_ttl_seconds * 1000,
        idleTimeoutMs: () => current.cfg.streaming.idle_timeout_seconds * 1000,
        backend: streamingBackend(ctx),
        log,
        onSession: (delta) => metrics.streamsActive.inc(delta),
        onError: () => metrics.streamErrors.inc(),
      }).catch((err: unknown) => {
        throw new BerthError('UNAVAILABLE', `cannot serve streaming on ${cfg.streaming.address}:${cfg.streaming.port}: ${errorMessage(err)}`);
      });
      cleanup.push('close the streaming server', () => streaming.close());
      const server = await serveCri(ctx, cfg);
      cleanup.push('close the CRI socket', async () => {
        server.destroy();
        await fs.rm(cfg.api.listen, { force: true });
      });
      let metricsServer: http.Server | undefined;
      let metricsPort: number | undefined;
      if (cfg.metrics.enabled) {
        try {
          ({ server: metricsServer, port: metricsPort } = await serveMetrics(metrics, cfg.metrics.address, introspection(ctx)));
        } catch (err) {
          throw new BerthError('UNAVAILABLE', `cannot serve metrics on ${cfg.metrics.address}: ${errnoCode(err) ?? String(err)}`);
        }
      }
      log.info({ socket: cfg.api.listen, metricsPort: metricsPort ?? null, streamingPort: streaming.port, version: ctx.version }, 'berth is serving');
      return new Daemon(current, log, server, images, network, metricsServer, metricsPort, [() => events.shutdown(), () => exitWatch.close(), () => void streaming.close()]);
    } catch (err) {
      for (const failure of await cleanup.unwind()) log.warn({ err: failure.err }, `start-up cleanup failed: ${failure.what}`);
      throw err;
    }
  }

  get config(): BerthConfig {
    return this.current.cfg;
  }

  /** Applies what can change live; names the rest as needing a restart. */
  reload(next: BerthConfig): void {
    const { live, restart } = diffConfig(this.current.cfg, next);
    this.current.cfg = applyLive(this.current.cfg, next);
    // Logged before a new level applies, so raising the level does not hide what the reload did.
    this.log.info({ applied: live }, live.length > 0 ? 'configuration reloaded' : 'configuration reloaded: nothing changed live');
    if (restart.length > 0) this.log.warn({ options: restart }, 'changed options need a restart of berth to take effect');
    this.log.level = this.current.cfg.log_level;
  }

  /** Stops accepting calls, lets in-flight ones finish for up to the shutdown timeout, then closes. Containers stay. */
  async stop(): Promise<void> {
    for (const close of this.closeOnStop) close();
    const timeoutMs = this.current.cfg.api.shutdown_timeout_seconds * 1000;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.server.shutdown(),
      new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.log.warn({ timeoutMs }, 'in-flight calls did not finish in time; closing them');
          this.server.destroy();
          resolve();
        }, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (this.metricsServer) {
      this.metricsServer.closeAllConnections();
      await new Promise<void>((resolve) => this.metricsServer?.close(() => resolve()));
    }
    await fs.rm(this.current.cfg.api.listen, { force: true });
    await this.images.close();
    this.network.close();
    await stopPodNsServer();
    this.log.info('berth stopped');
  }
}

async function serveCri(ctx: ServerContext, cfg: BerthConfig): Promise<GrpcServer> {
  const cri = loadCri().runtime.v1;
  const deps = { log: ctx.log, metrics: ctx.metrics };
  const server = new GrpcServer(new Map([
    ...bindService(cri.RuntimeService.service, runtimeService(ctx), deps),
    ...bindService(cri.ImageService.service, imageService(ctx), deps),
  ]), { maxMessageBytes: cfg.api.max_message_bytes, onError: (message) => ctx.log.warn(message) });
  // The socket file is created by listen; a tight umask means it is never reachable by others, even briefly.
  const oldMask = process.umask(0o177);
  try {
    await server.listen(cfg.api.listen);
  } finally {
    process.umask(oldMask);
  }
  await secureSocket(cfg.api.listen, cfg.api.socket_group);
  return server;
}

async function readPodCidr(stateDir: string): Promise<string> {
  try {
    return (await fs.readFile(path.join(stateDir, POD_CIDR_FILE), 'utf8')).trim();
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return '';
    throw err;
  }
}
