// Single-use, expiring tokens for the streaming URLs that Exec/Attach/PortForward return (the kubelet's
// streaming.Server does the same): the URL is the only credential, so it is random, used once and short-lived.
import { randomBytes } from 'node:crypto';

export interface ExecRequest {
  kind: 'exec';
  containerId: string;
  cmd: string[];
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface AttachRequest {
  kind: 'attach';
  containerId: string;
  tty: boolean;
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
}

export interface PortForwardRequest {
  kind: 'portforward';
  podId: string;
  /** Ports named in the request; empty = any port the client asks for. */
  ports: number[];
}

export type StreamRequest = ExecRequest | AttachRequest | PortForwardRequest;

const MAX_PENDING = 10_000;

export class TokenStore {
  private readonly pending = new Map<string, { request: StreamRequest; expires: number }>();

  constructor(private readonly ttlMs: () => number, private readonly now: () => number = Date.now) {}

  issue(request: StreamRequest): string {
    this.sweep();
    // A flood of unused URLs must not grow memory without bound: the oldest go first.
    if (this.pending.size >= MAX_PENDING) this.pending.delete(this.pending.keys().next().value as string);
    const token = randomBytes(18).toString('base64url');
    this.pending.set(token, { request, expires: this.now() + this.ttlMs() });
    return token;
  }

  /** The request behind a token, once: a second use, an expired or an unknown token gives undefined. */
  consume(token: string): StreamRequest | undefined {
    const entry = this.pending.get(token);
    if (!entry) return undefined;
    this.pending.delete(token);
    return entry.expires > this.now() ? entry.request : undefined;
  }

  get size(): number {
    return this.pending.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, e] of this.pending) if (e.expires <= now) this.pending.delete(token);
  }
}
