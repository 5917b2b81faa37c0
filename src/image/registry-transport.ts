// HTTP plumbing under the registry client (its agents are in registry-agents.ts): one request with a
// connect+headers deadline (the body is not bounded: the puller watches progress), redirects that never carry
// Authorization to another origin, bounded body reads, and retries with exponential backoff.
import * as http from 'node:http';
import * as https from 'node:https';
import { setTimeout as sleep } from 'node:timers/promises';
import { BerthError, ErrorCode, errnoCode, errorMessage } from '../common/errors';

/**
 * A failed request. `kind` drives the caller: 'connection' (no answer at all: the next scheme or endpoint may work),
 * 'certificate' (the server speaks TLS but is not trusted: never downgrade to http), 'status', 'body'.
 */
export class RequestError extends BerthError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly kind: 'connection' | 'certificate' | 'status' | 'body',
    readonly retryable: boolean,
    readonly retryAfterMs?: number,
  ) {
    super(code, message);
  }
}

/** A URL fit for logs and errors: no credentials, no query (pre-signed storage URLs carry signatures there). */
export function safeUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

const RETRYABLE_CODES = new Set(['ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ECONNABORTED', 'EAI_AGAIN']);
const CERT_CODE = /CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|ERR_TLS_CERT/;

/** err.message also for errors from another realm (jest's vm contexts), where instanceof Error is false. */
export function messageOf(err: unknown): string {
  if (err instanceof BerthError) return err.message;
  const m = typeof err === 'object' && err !== null && 'message' in err ? err.message : undefined;
  return (typeof m === 'string' ? m : errorMessage(err)).slice(0, 300);
}

function connectionError(url: URL, err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const code = errnoCode(err) ?? '';
  const message = `${safeUrl(url)}: ${messageOf(err)}`;
  if (CERT_CODE.test(code)) return new RequestError('UNAVAILABLE', `${message} (TLS certificate not trusted)`, 'certificate', false);
  // ECONNREFUSED is not retried: a closed port rarely opens within the backoff, and mirrors fall back faster.
  return new RequestError('UNAVAILABLE', message, 'connection', RETRYABLE_CODES.has(code));
}

/** The error for an aborted signal: its reason when that is a BerthError (a pull watchdog's DEADLINE_EXCEEDED). */
export function cancelled(what: string, signal?: AbortSignal): BerthError {
  const reason: unknown = signal?.reason;
  return reason instanceof BerthError ? reason : new BerthError('CANCELLED', `${what} cancelled`);
}

// ---- one request, redirects, bodies -------------------------------------------------------------------------------

export interface SendOptions {
  method?: 'GET' | 'POST';
  headers: Record<string, string>;
  body?: Buffer;
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Resolves at the response headers; connect and headers together must arrive within `timeoutMs`. */
export function send(url: URL, agent: http.Agent, o: SendOptions): Promise<http.IncomingMessage> {
  return new Promise((resolve, reject) => {
    if (o.signal?.aborted) return reject(cancelled(`${o.method ?? 'GET'} ${safeUrl(url)}`, o.signal));
    const lib = url.protocol === 'https:' ? https : http;
    const headers = { ...o.headers, ...(o.body ? { 'content-length': String(o.body.length) } : {}) };
    const req = lib.request(url, { method: o.method ?? 'GET', headers, agent });
    const timer = setTimeout(() => {
      const why = `${safeUrl(url)}: no response within ${o.timeoutMs / 1000} s`;
      req.destroy(new RequestError('UNAVAILABLE', why, 'connection', true));
    }, o.timeoutMs);
    const onAbort = (): void => void req.destroy(cancelled(`${o.method ?? 'GET'} ${safeUrl(url)}`, o.signal));
    o.signal?.addEventListener('abort', onAbort, { once: true });
    const done = (): void => {
      clearTimeout(timer);
      o.signal?.removeEventListener('abort', onAbort);
    };
    req.once('response', (res) => {
      done();
      resolve(res);
    });
    req.on('error', (err) => {
      done();
      reject(connectionError(url, err));
    });
    req.end(o.body);
  });
}

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const MAX_REDIRECTS = 5;

/** Follows redirects (blob storage backends); Authorization goes only to the origin it was meant for. */
export async function sendFollowing(
  url: URL,
  agentFor: (url: URL) => Promise<http.Agent>,
  o: SendOptions,
  onRedirect?: (from: URL, to: URL) => void,
): Promise<{ res: http.IncomingMessage; url: URL }> {
  let current = url;
  let headers = o.headers;
  for (let hop = 0; ; hop++) {
    const res = await send(current, await agentFor(current), { ...o, headers }).catch((err: unknown) => {
      // The registry did answer (with a redirect): a storage host that does not is no reason to try another scheme.
      if (hop > 0 && err instanceof RequestError && err.kind === 'connection') {
        throw new RequestError(err.code, err.message, 'status', err.retryable);
      }
      throw err;
    });
    if (!REDIRECTS.has(res.statusCode ?? 0)) return { res, url: current };
    res.resume();
    const location = res.headers.location;
    let next: URL | undefined;
    try {
      next = location ? new URL(location, current) : undefined;
    } catch {
      next = undefined;
    }
    if (!next || (next.protocol !== 'http:' && next.protocol !== 'https:')) {
      throw new RequestError('UNAVAILABLE', `${safeUrl(current)}: HTTP ${res.statusCode} with an unusable Location`, 'status', false);
    }
    if (hop >= MAX_REDIRECTS) throw new RequestError('UNAVAILABLE', `${safeUrl(url)}: more than ${MAX_REDIRECTS} redirects`, 'status', false);
    if (next.origin !== current.origin) {
      headers = { ...headers };
      delete headers.authorization;
    }
    onRedirect?.(current, next);
    current = next;
  }
}

export function contentLength(res: http.IncomingMessage): number | undefined {
  const raw = res.headers['content-length'];
  if (raw === undefined || !/^\d{1,16}$/.test(raw)) return undefined;
  return Number(raw);
}

/** Reads the whole body, refusing (with `tooBig()`) past `max` bytes, upfront when Content-Length already says so. */
export function readBody(res: http.IncomingMessage, max: number, tooBig: () => BerthError, url: URL): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const length = contentLength(res);
    if (length !== undefined && length > max) {
      res.destroy();
      return reject(tooBig());
    }
    const chunks: Buffer[] = [];
    let got = 0;
    res.on('data', (chunk: Buffer) => {
      got += chunk.length;
      if (got > max) {
        res.destroy();
        reject(tooBig());
      } else chunks.push(chunk);
    });
    res.once('end', () => resolve(Buffer.concat(chunks)));
    res.once('error', (err) => {
      const message = `${safeUrl(url)}: reading the body failed after ${got} bytes: ${messageOf(err)}`;
      reject(err instanceof BerthError ? err : new RequestError('UNAVAILABLE', message, 'body', true));
    });
  });
}

/** The registry's own explanation from an error body ({"errors":[{"code","message"}]}), short and printable. */
export async function errorDetail(res: http.IncomingMessage, url: URL): Promise<string> {
  let body: Buffer;
  try {
    body = await readBody(res, 16 * 1024, () => new BerthError('RESOURCE_EXHAUSTED', 'error body too large'), url);
  } catch {
    return '';
  }
  let text = body.toString('utf8');
  try {
    const doc = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    const first = Array.isArray(doc.errors) ? doc.errors[0] : undefined;
    if (first) text = [first.code, first.message].filter((s) => typeof s === 'string').join(': ');
  } catch {
    // not JSON: keep the text
  }
  return text.replace(/[^\x20-\x7e]+/g, ' ').trim().slice(0, 200);
}

// ---- retries ------------------------------------------------------------------------------------------------------

const BACKOFF_BASE_MS = 200;
const BACKOFF_MAX_MS = 5_000;
const RETRY_AFTER_MAX_MS = 10_000;

export function retryAfterMs(res: http.IncomingMessage): number | undefined {
  const raw = res.headers['retry-after'];
  if (raw === undefined || !/^\d{1,6}$/.test(raw)) return undefined;
  return Math.min(Number(raw) * 1000, RETRY_AFTER_MAX_MS);
}

/** Runs `op` up to 1 + `retries` times while it fails retryably: 200 ms, 400 ms, … (capped, with jitter). */
export async function withRetries<T>(
  op: () => Promise<T>,
  retries: number,
  signal: AbortSignal | undefined,
  onRetry: (err: RequestError, attempt: number, delayMs: number) => void,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await op();
    } catch (err) {
      if (!(err instanceof RequestError) || !err.retryable || attempt > retries || signal?.aborted) throw err;
      const backoff = Math.min(BACKOFF_BASE_MS * 2 ** (attempt - 1), BACKOFF_MAX_MS);
      const delayMs = Math.round(Math.max(backoff + Math.random() * backoff * 0.5, err.retryAfterMs ?? 0));
      onRetry(err, attempt, delayMs);
      try {
        await sleep(delayMs, undefined, signal ? { signal } : undefined);
      } catch {
        throw cancelled('registry request', signal);
      }
    }
  }
}
