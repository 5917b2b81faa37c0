// Image references, normalised the way containerd and the kubelet do it (docker/distribution's reference grammar):
// "busybox" → docker.io/library/busybox:latest. Only sha256 digests are accepted: berth verifies every byte it pulls
// against the digest, and sha256 is the one algorithm registries and the CRI actually use.
import { BerthError } from '../common/errors';

export interface ImageReference {
  /** "docker.io", "127.0.0.1:5000", "localhost:5000", "[::1]:5000" */
  registry: string;
  /** "library/busybox" */
  repository: string;
  tag?: string;
  /** "sha256:<64 lowercase hex>" */
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_ENDPOINT = 'registry-1.docker.io';
// Legacy spellings of Docker Hub that normalise to docker.io.
const DOCKER_HUB_ALIASES = new Set(['index.docker.io', 'registry-1.docker.io']);
const NAME_MAX = 255;
// Bounds the regex work on hostile input long before any rule below could matter.
const INPUT_MAX = 1024;

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]{1,5})?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;
const ANY_DIGEST_RE = /^([a-z0-9]+(?:[.+_-][a-z0-9]+)*):(.*)$/;
const HEX64_RE = /^[a-f0-9]{64}$/;

function invalid(text: string, why: string): BerthError {
  const shown = text.length > 300 ? `${text.slice(0, 300)}…` : text;
  return new BerthError('INVALID_ARGUMENT', `invalid image reference ${JSON.stringify(shown)}: ${why}`);
}

/** True for a sha256 digest berth accepts ("sha256:" and 64 lowercase hex). */
export function isDigest(s: string): boolean {
  return DIGEST_RE.test(s);
}

function checkDigest(text: string, digest: string): void {
  if (DIGEST_RE.test(digest)) return;
  const m = ANY_DIGEST_RE.exec(digest);
  if (m && m[1] !== 'sha256') throw invalid(text, `unsupported digest algorithm "${m[1]}" (only sha256)`);
  throw invalid(text, 'digest must be "sha256:" followed by 64 lowercase hex digits');
}

/** The first path component names a registry only if it looks like a host: has a dot or a port, or is localhost. */
function splitRegistry(name: string): { registry: string; remainder: string; explicit: boolean } {
  const slash = name.indexOf('/');
  if (slash === -1) return { registry: DOCKER_HUB, remainder: name, explicit: false };
  const first = name.slice(0, slash);
  if (first.includes('.') || first.includes(':') || first === 'localhost' || first.startsWith('[')) {
    return { registry: first, remainder: name.slice(slash + 1), explicit: true };
  }
  return { registry: DOCKER_HUB, remainder: name, explicit: false };
}

export function parseReference(text: string): ImageReference {
  if (typeof text !== 'string' || text === '') throw invalid(String(text), 'empty reference');
  if (text.length > INPUT_MAX) throw invalid(text, `longer than ${INPUT_MAX} characters`);

  let rest = text;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    checkDigest(text, digest);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  // A colon after the last slash starts a tag; before it, it belongs to the registry's port.
  if (colon > rest.lastIndexOf('/') && !rest.endsWith(']')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw invalid(text, `tag ${JSON.stringify(tag)} must match ${TAG_RE.source}`);
  }
  if (rest === '') throw invalid(text, 'no repository name');

  const split = splitRegistry(rest);
  let { registry, remainder } = split;
  if (split.explicit && !DOMAIN_RE.test(registry)) throw invalid(text, `registry "${registry}" is not a host[:port]`);
  if (DOCKER_HUB_ALIASES.has(registry)) registry = DOCKER_HUB;
  if (remainder === '') throw invalid(text, 'no repository name');
  if (!split.explicit && HEX64_RE.test(remainder)) {
    throw invalid(text, 'a 64-character hex string is an image id, not a repository name');
  }
  for (const component of remainder.split('/')) {
    if (component === '') throw invalid(text, 'empty path component in the repository name');
    if (component !== component.toLowerCase()) throw invalid(text, 'repository name must be lowercase');
    if (!PATH_COMPONENT_RE.test(component)) {
      throw invalid(text, `repository path component "${component}" must match ${PATH_COMPONENT_RE.source}`);
    }
  }
  if (registry === DOCKER_HUB && !remainder.includes('/')) remainder = `library/${remainder}`;
  const name = `${registry}/${remainder}`;
  if (name.length > NAME_MAX) throw invalid(text, `name is longer than ${NAME_MAX} characters`);

  if (tag === undefined && digest === undefined) tag = 'latest';
  return { registry, repository: remainder, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) };
}

/** "docker.io/library/busybox" */
export function formatName(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}`;
}

/** "docker.io/library/busybox:latest", "host/repo@sha256:…", "host/repo:tag@sha256:…" */
export function formatReference(ref: ImageReference): string {
  return `${formatName(ref)}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The host that serves the distribution API for a registry name: Docker Hub's API is not at docker.io. */
export function registryEndpointHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_ENDPOINT : registry;
}
