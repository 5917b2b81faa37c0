// The OCI distribution API client: manifests and blobs by digest-verified GETs, over the configured mirrors then the
// registry itself. Per endpoint: https (http too for insecure or localhost hosts) → retries with backoff → auth
// challenge → redirects. Every byte returned is checked against the digest it was asked for.
import { createHash } from 'node:crypto';
import type { Agent, IncomingMessage } from 'node:http';
import type { Readable } from 'node:stream';
import { BerthError } from '../common/errors';
import type { ImageConfig } from '../server/config-schema';
import { MANIFEST_ACCEPT, bareMediaType } from './manifest';
import { formatName, formatReference, ImageReference, isDigest } from './reference';
import { AgentPool } from './registry-agents';
import { AuthContext, Credentials, parseChallenges, RegistryAuth, refused } from './registry-auth';
import { Endpoint, resolveEndpoints, Scheme } from './registry-endpoints';
import {
  cancelled, contentLength, errorDetail, messageOf, readBody, RequestError, retryAfterMs, safeUrl, sendFollowing, withRetries,
} from './registry-transport';
import { VerifyingStream } from './verifying-stream';

export type { Credentials } from './registry-auth';

/** The subset of pino's logger the client uses. */
export interface RegistryLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}
export interface RequestOptions {
  auth?: Credentials;
  signal?: AbortSignal;
}
export interface FetchedManifest {
  bytes: Buffer;
  /** The bare Content-Type the registry sent ("" if none); parseManifest weighs it against the body. */
  mediaType: string;
  digest: string;
}
export interface BlobStream {
  /** Unverified until it ends: it errors (DATA_LOSS) at the end instead of ending when the bytes do not match. */
  stream: Readable;
  size?: number;
}

const NO_LOG: RegistryLog = { debug: () => undefined, info: () => undefined, warn: () => undefined };
const TOKEN_BODY_MAX = 1024 * 1024;
const USER_AGENT = 'berth';

type Target = { kind: 'manifest' | 'blob'; ref: ImageReference; digest?: string };
/** Reads a 2xx response from `ep` (at `url`, after any redirects) into the result. */
type Handle<T> = (res: IncomingMessage, ep: Endpoint, url: URL) => Promise<T>;

const sha256 = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function describe(t: Target): string {
  return t.kind === 'manifest' ? `manifest ${formatReference(t.ref)}` : `blob ${t.digest ?? ''} of ${formatName(t.ref)}`;
}

export class RegistryClient {
  private readonly agents = new AgentPool();
  private readonly auth = new RegistryAuth();
  /** The scheme that last worked for an endpoint that allows two: later requests skip the failing one. */
  private readonly schemeWorked = new Map<string, Scheme>();

  constructor(
    private readonly getConfig: () => ImageConfig,
    private readonly log: RegistryLog = NO_LOG,
  ) {}

  /** GET /v2/<repo>/manifests/<digest or tag>; bounded by image.max_manifest_bytes and verified. */
  async getManifest(ref: ImageReference, opts: RequestOptions & { accept?: readonly string[] } = {}): Promise<FetchedManifest> {
    const reference = ref.digest ?? ref.tag ?? 'latest';
    const target: Target = { kind: 'manifest', ref };
    const headers = { accept: (opts.accept ?? MANIFEST_ACCEPT).join(', ') };
    return this.fetch(target, `/${ref.repository}/manifests/${reference}`, headers, opts, async (res, ep, url) => {
      const max = this.getConfig().max_manifest_bytes;
      const tooBig = (): BerthError =>
        new BerthError('RESOURCE_EXHAUSTED', `${describe(target)} from ${ep.label} exceeds ${max} bytes (image.max_manifest_bytes)`);
      const bytes = await readBody(res, max, tooBig, url);
      const digest = sha256(bytes);
      if (ref.digest !== undefined && digest !== ref.digest) {
        throw new BerthError('DATA_LOSS', `${describe(target)} from ${ep.label}: digest mismatch, the bytes hash to ${digest}`);
      }
      const claimed = res.headers['docker-content-digest'];
      if (ref.digest === undefined && typeof claimed === 'string' && claimed.startsWith('sha256:') && claimed !== digest) {
        throw new BerthError('DATA_LOSS', `${describe(target)} from ${ep.label}: Docker-Content-Digest ${claimed} but the bytes hash to ${digest}`);
      }
      return { bytes, mediaType: bareMediaType(res.headers['content-type']), digest };
    });
  }

  /** A small blob (an image config) read whole, at most `maxBytes`, verified. */
  async getBlobBuffer(ref: ImageReference, digest: string, maxBytes: number, opts: RequestOptions = {}): Promise<Buffer> {
    const target = blobTarget(ref, digest);
    return this.fetch(target, `/${ref.repository}/blobs/${digest}`, {}, opts, async (res, ep, url) => {
      const tooBig = (): BerthError => new BerthError('RESOURCE_EXHAUSTED', `${describe(target)} from ${ep.label} exceeds ${maxBytes} bytes`);
      const bytes = await readBody(res, maxBytes, tooBig, url);
      const got = sha256(bytes);
      if (got !== digest) throw new BerthError('DATA_LOSS', `blob ${digest} digest mismatch: got ${got} from ${ep.label}`);
      return bytes;
    });
  }

  /** The raw (still compressed) blob as a stream that hashes as it flows and fails at the end on any mismatch. */
  async openBlob(ref: ImageReference, digest: string, expectedSize?: number, opts: RequestOptions = {}): Promise<BlobStream> {
    const target = blobTarget(ref, digest);
    const { res, label } = await this.fetch(target, `/${ref.repository}/blobs/${digest}`, {}, opts, async (r, ep) => {
      const length = contentLength(r);
      if (expectedSize !== undefined && length !== undefined && length !== expectedSize) {
        r.destroy();
        throw new BerthError('DATA_LOSS', `blob ${digest} from ${ep.label} is ${length} bytes, the manifest says ${expectedSize}`);
      }
      return { res: r, label: ep.label };
    });
    const size = expectedSize ?? contentLength(res);
    const verifier = new VerifyingStream(digest, size);
    const onAbort = (): void => void verifier.destroy(cancelled(`download of ${describe(target)}`, opts.signal));
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    res.on('error', (err) => verifier.destroy(verifier.streamFailed(label, err)));
    verifier.once('close', () => {
      opts.signal?.removeEventListener('abort', onAbort);
      if (!res.complete) res.destroy();
    });
    res.pipe(verifier);
    return { stream: verifier, ...(size !== undefined ? { size } : {}) };
  }

  /** Closes idle keep-alive connections. */
  close(): void {
    this.agents.destroy();
  }

  // ---- endpoints, schemes, retries ----------------------------------------------------------------------------------

  private async fetch<T>(
    target: Target,
    path: string,
    headers: Record<string, string>,
    opts: RequestOptions,
    handle: Handle<T>,
  ): Promise<T> {
    const cfg = this.getConfig();
    const endpoints = resolveEndpoints(target.ref.registry, cfg);
    const failures: { ep: Endpoint; err: unknown }[] = [];
    for (const [i, ep] of endpoints.entries()) {
      try {
        return await this.fetchFrom(ep, target, path, headers, opts, cfg, handle);
      } catch (err) {
        if (opts.signal?.aborted || (err instanceof BerthError && err.code === 'CANCELLED')) throw cancelled(describe(target), opts.signal);
        failures.push({ ep, err });
        if (i < endpoints.length - 1) {
          this.log.warn({ what: describe(target), endpoint: ep.label, err: messageOf(err) }, 'registry endpoint failed; trying the next');
        }
      }
    }
    const last = failures[failures.length - 1];
    if (failures.length === 1 && last?.err instanceof BerthError) throw last.err;
    const code = last?.err instanceof BerthError ? last.err.code : 'UNAVAILABLE';
    const why = failures.map((f) => `${f.ep.label}: ${messageOf(f.err)}`).join('; ');
    throw new BerthError(code, `${describe(target)}: every endpoint failed (${failures.length} tried): ${why}`);
  }

  private async fetchFrom<T>(
    ep: Endpoint,
    target: Target,
    path: string,
    headers: Record<string, string>,
    opts: RequestOptions,
    cfg: ImageConfig,
    handle: Handle<T>,
  ): Promise<T> {
    const worked = this.schemeWorked.get(ep.host);
    const schemes = worked && ep.schemes.includes(worked) ? [worked, ...ep.schemes.filter((s) => s !== worked)] : ep.schemes;
    let earlier: BerthError | undefined;
    for (const [i, scheme] of schemes.entries()) {
      const url = new URL(`${scheme}://${ep.host}${ep.apiRoot}${path}`);
      try {
        const out = await withRetries(() => this.attempt(ep, url, target, headers, opts, cfg, handle), cfg.retries, opts.signal, (err, n, ms) =>
          this.log.debug({ url: safeUrl(url), attempt: n, delayMs: ms, err: err.message }, 'registry request failed; retrying'),
        );
        if (schemes.length > 1) this.schemeWorked.set(ep.host, scheme);
        return out;
      } catch (err) {
        // Only a server that did not answer at all may be tried with the other scheme; a TLS one with a bad
        // certificate is never downgraded to plain http. Any answer settles the scheme for this endpoint.
        const noAnswer = err instanceof RequestError && err.kind === 'connection';
        if (!noAnswer && schemes.length > 1) this.schemeWorked.set(ep.host, scheme);
        if (noAnswer && i < schemes.length - 1) {
          earlier = err;
          this.log.debug({ url: safeUrl(url), err: err.message }, 'registry endpoint did not answer; trying the other scheme');
          continue;
        }
        throw noAnswer && earlier ? new BerthError(err.code, `${err.message} (after ${earlier.message})`) : err;
      }
    }
    throw earlier ?? new BerthError('INTERNAL', `no scheme for ${ep.label}`);
  }

  /** One try: the request with what auth we have, a challenge answered once, status mapped to errors. */
  private async attempt<T>(
    ep: Endpoint,
    url: URL,
    target: Target,
    base: Record<string, string>,
    opts: RequestOptions,
    cfg: ImageConfig,
    handle: Handle<T>,
  ): Promise<T> {
    const ctx: AuthContext = {
      origin: url.origin,
      registry: ep.label,
      name: formatName(target.ref),
      scope: `repository:${target.ref.repository}:pull`,
      // The pull's credentials belong to the registry; a mirror is another party and gets none.
      ...(ep.mirror ? {} : opts.auth ? { creds: opts.auth } : {}),
    };
    const go = (authorization: string | undefined): Promise<{ res: IncomingMessage; url: URL }> =>
      sendFollowing(
        url,
        (u) => this.agentFor(u, ep, cfg),
        {
          headers: { 'user-agent': USER_AGENT, ...base, ...(authorization ? { authorization } : {}) },
          timeoutMs: cfg.request_timeout_seconds * 1000,
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        (from, to) => this.log.debug({ from: safeUrl(from), to: safeUrl(to) }, 'registry redirect'),
      );
    let authorization = this.auth.cached(ctx);
    let { res, url: final } = await go(authorization);
    if (res.statusCode === 401) {
      const challenges = parseChallenges(res.headersDistinct['www-authenticate'] ?? []);
      res.resume();
      if (authorization) this.auth.forget(ctx);
      authorization = await this.auth.authorize(ctx, challenges, (u, init) => this.tokenFetch(u, init, ep, cfg, opts.signal));
      ({ res, url: final } = await go(authorization));
      if (res.statusCode === 401) {
        res.resume();
        this.auth.forget(ctx);
        throw refused(ctx);
      }
    }
    const status = res.statusCode ?? 0;
    if (status >= 200 && status < 300) return handle(res, ep, final);
    throw await this.statusError(res, final, ep, target, ctx);
  }

  private async statusError(res: IncomingMessage, url: URL, ep: Endpoint, target: Target, ctx: AuthContext): Promise<BerthError> {
    const status = res.statusCode ?? 0;
    const retryAfter = retryAfterMs(res);
    const detail = await errorDetail(res, url);
    const suffix = detail ? `: ${detail}` : '';
    if (status === 404) {
      const what = target.kind === 'manifest' ? `image ${formatReference(target.ref)}` : describe(target);
      return new RequestError('NOT_FOUND', `${what} not found in registry ${ep.label}${suffix}`, 'status', false);
    }
    if (status === 403) return new RequestError('PERMISSION_DENIED', `registry ${ep.label} denied access to ${ctx.name}${suffix}`, 'status', false);
    const retryable = status === 429 || status >= 500;
    const message = `registry ${ep.label} answered HTTP ${status} for ${describe(target)} (${safeUrl(url)})${suffix}`;
    return new RequestError('UNAVAILABLE', message, 'status', retryable, retryAfter);
  }

  private async agentFor(url: URL, ep: Endpoint, cfg: ImageConfig): Promise<Agent> {
    const own = url.host === ep.host;
    const material = await this.agents.tlsFor(cfg.registries_config_dir, url.host);
    return this.agents.get(url.protocol, material, own && ep.skipVerify);
  }

  private async tokenFetch(
    url: URL,
    init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: Buffer },
    ep: Endpoint,
    cfg: ImageConfig,
    signal: AbortSignal | undefined,
  ): Promise<{ status: number; body: Buffer }> {
    const { res, url: final } = await sendFollowing(url, (u) => this.agentFor(u, ep, cfg), {
      method: init.method,
      headers: { 'user-agent': USER_AGENT, accept: 'application/json', ...init.headers },
      ...(init.body ? { body: init.body } : {}),
      timeoutMs: cfg.request_timeout_seconds * 1000,
      ...(signal ? { signal } : {}),
    });
    const status = res.statusCode ?? 0;
    if (status === 429 || status >= 500) {
      res.resume();
      throw new RequestError('UNAVAILABLE', `token server ${safeUrl(final)} answered HTTP ${status}`, 'status', true, retryAfterMs(res));
    }
    const tooBig = (): BerthError => new BerthError('UNAVAILABLE', `token server ${safeUrl(final)} sent more than ${TOKEN_BODY_MAX} bytes`);
    return { status, body: await readBody(res, TOKEN_BODY_MAX, tooBig, final) };
  }
}

function blobTarget(ref: ImageReference, digest: string): Target {
  if (!isDigest(digest)) throw new BerthError('INVALID_ARGUMENT', `blob digest ${JSON.stringify(digest.slice(0, 100))} is not a sha256 digest`);
  return { kind: 'blob', ref, digest };
}
