// Registry authentication: anonymous first; a 401's WWW-Authenticate decides between Basic credentials and a Bearer
// token from the realm the registry names (docker's token protocol). What a challenge earned is cached per
// (endpoint, scope, credentials) so later requests skip the round trip. Credentials and tokens are never logged and
// never appear in error messages.
import { createHash } from 'node:crypto';
import { BerthError } from '../common/errors';

/** The CRI AuthConfig fields that authenticate (server_address is the kubelet's business). */
export interface Credentials {
  username?: string;
  password?: string;
  /** base64 of "user:password" */
  auth?: string;
  /** An OAuth2 refresh token: exchanged at the realm with grant_type=refresh_token. */
  identity_token?: string;
  /** A bearer token sent as is. */
  registry_token?: string;
}

export interface Challenge {
  /** Lowercase: "basic", "bearer". */
  scheme: string;
  params: Map<string, string>;
}

export interface AuthContext {
  /** Endpoint origin ("https://127.0.0.1:5000"): the cache key, never shared between endpoints. */
  origin: string;
  /** How errors name the registry ("127.0.0.1:5000", "mirror …"). */
  registry: string;
  /** How errors name the image ("127.0.0.1:5000/test/img"). */
  name: string;
  /** "repository:<repo>:pull" */
  scope: string;
  creds?: Credentials;
}

export type TokenFetch = (
  url: URL,
  init: { method: 'GET' | 'POST'; headers: Record<string, string>; body?: Buffer },
) => Promise<{ status: number; body: Buffer }>;

const TOKEN_CHARS = /^[\x21-\x7e]+$/;
const DEFAULT_TOKEN_SECONDS = 60; // docker's minimum token lifetime, also used when expires_in is absent
const CACHE_MAX = 1000;
const HEADER_MAX = 8 * 1024;

/** RFC 7235 challenges: `Bearer realm="…",service="…", Basic realm="…"` (quoted strings with backslash escapes). */
export function parseChallenges(values: readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const header of values) {
    const h = header.slice(0, HEADER_MAX);
    let i = 0;
    let current: Challenge | undefined;
    const skip = (chars: RegExp): void => {
      while (i < h.length && chars.test(h[i] ?? '')) i++;
    };
    for (;;) {
      skip(/[\s,]/);
      const token = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/.exec(h.slice(i))?.[0];
      if (!token) break;
      i += token.length;
      skip(/[ \t]/);
      if (h[i] !== '=') {
        current = { scheme: token.toLowerCase(), params: new Map() };
        out.push(current);
        continue;
      }
      i++;
      skip(/[ \t]/);
      let value = '';
      if (h[i] === '"') {
        for (i++; i < h.length && h[i] !== '"'; i++) value += h[i] === '\\' ? (h[++i] ?? '') : h[i];
        i++;
      } else {
        const m = /^[^\s,]*/.exec(h.slice(i))?.[0] ?? '';
        value = m;
        i += m.length;
      }
      current?.params.set(token.toLowerCase(), value);
    }
  }
  return out;
}

/** Username and password from the plain fields or from `auth` (base64 "user:password"); undefined if neither. */
export function basicCredentials(creds: Credentials | undefined): { username: string; password: string } | undefined {
  if (!creds) return undefined;
  if (creds.username || creds.password) return { username: creds.username ?? '', password: creds.password ?? '' };
  if (!creds.auth) return undefined;
  const decoded = /^[A-Za-z0-9+/]*={0,2}$/.test(creds.auth) ? Buffer.from(creds.auth, 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  if (colon === -1) throw new BerthError('INVALID_ARGUMENT', 'auth credentials are not base64 of "user:password"');
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

function hasCredentials(c: Credentials | undefined): boolean {
  return !!(c && (c.username || c.password || c.auth || c.identity_token || c.registry_token));
}

/** The UNAUTHENTICATED error for a refusal: it names the registry and image, never the credentials. */
export function refused(ctx: AuthContext): BerthError {
  return new BerthError(
    'UNAUTHENTICATED',
    hasCredentials(ctx.creds)
      ? `registry ${ctx.registry} refused the credentials for ${ctx.name}`
      : `registry ${ctx.registry} requires authentication for ${ctx.name} and no credentials were given`,
  );
}

export class RegistryAuth {
  private readonly cache = new Map<string, { header: string; expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  private key(ctx: AuthContext): string {
    const c = ctx.creds;
    // Hashed so the key (which may show up in a heap dump or debugger) does not hold the secrets verbatim.
    const who = hasCredentials(c)
      ? createHash('sha256').update(JSON.stringify([c?.username, c?.password, c?.auth, c?.identity_token])).digest('hex')
      : 'anonymous';
    return `${ctx.origin}\n${ctx.scope}\n${who}`;
  }

  /** The Authorization value to send up front: a registry_token, or what an earlier challenge earned. */
  cached(ctx: AuthContext): string | undefined {
    if (ctx.creds?.registry_token) return `Bearer ${ctx.creds.registry_token}`;
    const key = this.key(ctx);
    const hit = this.cache.get(key);
    if (hit && hit.expiresAt > this.now()) return hit.header;
    if (hit) this.cache.delete(key);
    return undefined;
  }

  forget(ctx: AuthContext): void {
    this.cache.delete(this.key(ctx));
  }

  /** Answers a 401's challenges with an Authorization value (fetching a token if needed) and caches it. */
  async authorize(ctx: AuthContext, challenges: Challenge[], fetch: TokenFetch): Promise<string> {
    // A registry_token was already sent up front: a 401 means the registry does not accept it.
    if (ctx.creds?.registry_token) throw refused(ctx);
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    let header: string;
    let lifetimeMs = Number.POSITIVE_INFINITY;
    if (bearer) {
      const token = await this.fetchToken(ctx, bearer, fetch);
      header = `Bearer ${token.token}`;
      lifetimeMs = token.lifetimeMs;
    } else if (basic) {
      const b = basicCredentials(ctx.creds);
      if (!b) throw refused(ctx);
      header = `Basic ${Buffer.from(`${b.username}:${b.password}`).toString('base64')}`;
    } else {
      const schemes = challenges.map((c) => c.scheme).join(', ') || 'none';
      throw new BerthError('UNAUTHENTICATED', `registry ${ctx.registry} answered 401 for ${ctx.name} with no usable challenge (schemes: ${schemes})`);
    }
    if (this.cache.size >= CACHE_MAX) this.evict();
    this.cache.set(this.key(ctx), { header, expiresAt: this.now() + lifetimeMs });
    return header;
  }

  private evict(): void {
    const now = this.now();
    for (const [k, v] of this.cache) if (v.expiresAt <= now) this.cache.delete(k);
    while (this.cache.size >= CACHE_MAX) this.cache.delete(this.cache.keys().next().value as string);
  }

  private async fetchToken(ctx: AuthContext, challenge: Challenge, fetch: TokenFetch): Promise<{ token: string; lifetimeMs: number }> {
    let realm: URL;
    try {
      realm = new URL(challenge.params.get('realm') ?? '');
    } catch {
      throw new BerthError('UNAVAILABLE', `registry ${ctx.registry} sent a Bearer challenge without a valid realm`);
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') {
      throw new BerthError('UNAVAILABLE', `registry ${ctx.registry} sent a token realm that is not http(s)`);
    }
    const service = challenge.params.get('service');
    const scopes = [ctx.scope];
    const extra = challenge.params.get('scope');
    if (extra && extra !== ctx.scope) scopes.push(extra);
    const identity = ctx.creds?.identity_token;
    let res: { status: number; body: Buffer };
    if (identity) {
      const form = new URLSearchParams({ grant_type: 'refresh_token', refresh_token: identity, client_id: 'berth' });
      if (service) form.set('service', service);
      form.set('scope', scopes.join(' '));
      res = await fetch(realm, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: Buffer.from(form.toString()),
      });
    } else {
      const url = new URL(realm);
      if (service) url.searchParams.set('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      const b = basicCredentials(ctx.creds);
      const headers: Record<string, string> = b
        ? { authorization: `Basic ${Buffer.from(`${b.username}:${b.password}`).toString('base64')}` }
        : {};
      res = await fetch(url, { method: 'GET', headers });
    }
    if (res.status === 401 || res.status === 403) throw refused(ctx);
    const where = `token server ${realm.origin}${realm.pathname} for registry ${ctx.registry}`;
    if (res.status !== 200) throw new BerthError('UNAVAILABLE', `${where} answered HTTP ${res.status}`);
    let doc: unknown;
    try {
      doc = JSON.parse(res.body.toString('utf8'));
    } catch {
      throw new BerthError('UNAVAILABLE', `${where} answered with something that is not JSON`);
    }
    const { token, access_token: accessToken, expires_in: expiresIn } = (doc ?? {}) as Record<string, unknown>;
    const value = typeof token === 'string' && token !== '' ? token : accessToken;
    if (typeof value !== 'string' || !TOKEN_CHARS.test(value)) throw new BerthError('UNAVAILABLE', `${where} answered without a usable token`);
    const seconds = typeof expiresIn === 'number' && Number.isFinite(expiresIn) ? Math.max(expiresIn, DEFAULT_TOKEN_SECONDS) : DEFAULT_TOKEN_SECONDS;
    // Renew a little early so a token does not expire between the cache check and the registry's.
    return { token: value, lifetimeMs: seconds * 1000 * 0.9 };
  }
}
