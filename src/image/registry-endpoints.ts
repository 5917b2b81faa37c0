// Where a registry is reached: its configured mirrors in order, then the registry itself, each with the schemes it
// may be spoken to over and whether its certificate is checked.
import { BerthError } from '../common/errors';
import type { ImageConfig } from '../server/config-schema';
import { registryEndpointHost } from './reference';

export type Scheme = 'https' | 'http';

export interface Endpoint {
  /** How errors and logs name it: "127.0.0.1:5000", "mirror http://m:5000/prefix". */
  label: string;
  /** host[:port]: the certs.d directory name and the connection target. */
  host: string;
  /** "/v2", or "<path>/v2" for a mirror URL with a path. */
  apiRoot: string;
  /** In order of preference. */
  schemes: Scheme[];
  skipVerify: boolean;
  mirror: boolean;
}

function isLocalhost(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.replace(/:\d+$/, '');
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/**
 * Mirrors in configured order, then the registry. A bare "host[:port]" is tried over https, and over http too when
 * its own registries entry says insecure (which also skips certificate checks, as docker's insecure-registries do)
 * or it is localhost (containerd's fallback); a mirror URL uses exactly its scheme. A blocked registry is refused;
 * a blocked mirror is skipped.
 */
export function resolveEndpoints(registry: string, cfg: ImageConfig): Endpoint[] {
  const own = cfg.registries[registry];
  if (own?.blocked) {
    throw new BerthError('PERMISSION_DENIED', `registry ${registry} is blocked by configuration (image.registries."${registry}".blocked)`);
  }
  const bare = (host: string, label: string, mirror: boolean, insecure = cfg.registries[host]?.insecure ?? false): Endpoint => {
    const schemes: Scheme[] = insecure || isLocalhost(host) ? ['https', 'http'] : ['https'];
    return { label, host, apiRoot: '/v2', schemes, skipVerify: insecure, mirror };
  };
  const out: Endpoint[] = [];
  for (const m of own?.mirrors ?? []) {
    let ep: Endpoint;
    if (m.includes('://')) {
      const u = new URL(m);
      const path = u.pathname.replace(/\/+$/, '');
      const apiRoot = path.endsWith('/v2') ? path : `${path}/v2`;
      const scheme: Scheme = u.protocol === 'http:' ? 'http' : 'https';
      ep = { label: `mirror ${m}`, host: u.host, apiRoot, schemes: [scheme], skipVerify: cfg.registries[u.host]?.insecure ?? false, mirror: true };
    } else ep = bare(m, `mirror ${m}`, true);
    if (cfg.registries[ep.host]?.blocked) continue;
    if (!out.some((o) => o.host === ep.host && o.apiRoot === ep.apiRoot)) out.push(ep);
  }
  out.push(bare(registryEndpointHost(registry), registry, false, own?.insecure ?? false));
  return out;
}
