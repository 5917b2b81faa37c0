// The introspection endpoint on the metrics port, like CRI-O's `crio status`: GET /info (node-level facts), /config
// (the effective TOML), /containers/<id> and /pods/<id> (what an operator needs to find a container on the host).
// Read-only, and bound wherever the metrics are (127.0.0.1 by default).
import { rootfsPaths } from '../storage/rootfs';
import { BerthError } from '../common/errors';
import { renderConfig } from './config';
import type { ServerContext } from './context';

export interface IntrospectionReply {
  status: number;
  contentType: string;
  body: string;
}

export type IntrospectionRoutes = (path: string) => Promise<IntrospectionReply | undefined>;

const json = (status: number, v: unknown): IntrospectionReply => ({ status, contentType: 'application/json', body: `${JSON.stringify(v, null, 2)}\n` });

export function introspection(s: ServerContext): IntrospectionRoutes {
  return async (path) => {
    if (path === '/info') {
      const cfg = s.config();
      return json(200, {
        version: s.version,
        storage_root: cfg.root,
        state_dir: cfg.state_dir,
        cgroup_driver: 'cgroupfs',
        default_handler: cfg.runtime.default_handler,
        handlers: Object.keys(cfg.runtime.handlers).sort(),
        pods: s.sandboxes.list().length,
        containers: s.containers.store.list().length,
        pod_cidr: s.runtimeState.podCidr,
      });
    }
    if (path === '/config') return { status: 200, contentType: 'text/plain; charset=utf-8', body: renderConfig(s.config()) };
    const m = /^\/(containers|pods)\/([A-Za-z0-9]{1,64})$/.exec(path);
    if (!m) return undefined;
    try {
      return json(200, m[1] === 'containers' ? containerInfo(s, m[2] ?? '') : podInfo(s, m[2] ?? ''));
    } catch (err) {
      if (err instanceof BerthError && (err.code === 'NOT_FOUND' || err.code === 'INVALID_ARGUMENT')) return json(404, { error: err.message });
      throw err;
    }
  };
}

function containerInfo(s: ServerContext, idOrPrefix: string): unknown {
  const c = s.containers.store.resolve(idOrPrefix);
  const pod = s.sandboxes.list().find((p) => p.id === c.podId);
  return {
    id: c.id,
    name: c.config.metadata?.name ?? c.name,
    state: c.state,
    pid: c.pid,
    image: c.imageName,
    image_ref: c.imageId,
    sandbox: c.podId,
    labels: c.config.labels,
    annotations: c.config.annotations,
    log_path: c.logPath,
    root: rootfsPaths(s.layout.containers, c.id).merged,
    bundle: c.bundle,
    runtime: c.handler,
    ip_addresses: pod?.ips ?? [],
  };
}

function podInfo(s: ServerContext, idOrPrefix: string): unknown {
  const p = s.sandboxes.get(idOrPrefix);
  return {
    id: p.id,
    name: p.config.metadata?.name ?? '',
    full_name: p.name,
    state: p.state,
    namespace: p.config.metadata?.namespace ?? '',
    uid: p.config.metadata?.uid ?? '',
    ip_addresses: p.ips,
    cgroup_parent: p.cgroupParent,
    namespaces: p.namespaces,
    host_network: p.hostNetwork,
    containers: s.containers.inPod(p.id).map((c) => ({ id: c.id, name: c.config.metadata?.name ?? c.name, state: c.state })),
  };
}
