// The Kubernetes remotecommand protocol, independent of its transport (SPDY or WebSocket): the subprotocol
// versions, what each needs, and the status written to the error channel when the command ends.
import type { EventEmitter } from 'node:events';
import type { Readable, Writable } from 'node:stream';

/** Preferred first; the client's own order decides among those it offers (as the kubelet negotiates). */
export const REMOTE_COMMAND_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io'] as const;
export const WEBSOCKET_PROTOCOLS = ['v5.channel.k8s.io', 'v4.channel.k8s.io'] as const;
export const PORT_FORWARD_PROTOCOL = 'portforward.k8s.io';

export interface TerminalSize {
  width: number;
  height: number;
}

/** One side of an exec or attach session: the client's channels as streams. */
export interface RemoteIo {
  stdin?: Readable;
  stdout?: Writable;
  stderr?: Writable;
  tty: boolean;
  /** Emits 'resize' with a TerminalSize (tty sessions only). */
  resizes: EventEmitter;
  /** The last size the client sent: a resize may arrive before the command has a terminal to apply it to. */
  size?: TerminalSize;
}

/** Runs the command (exec) or joins the container (attach) until it ends; exitCode for exec. */
export type RemoteCommand = (io: RemoteIo, signal: AbortSignal) => Promise<{ exitCode?: number }>;

/** The first of the client's offers that we speak; '' when the client named none (the oldest protocol). */
export function negotiate(offered: string[], supported: readonly string[]): string | undefined {
  if (offered.length === 0) return '';
  return offered.find((p) => supported.includes(p));
}

/** Header values as Node joins repeated headers: "a, b" → ["a", "b"]. */
export function headerList(value: string | string[] | undefined): string[] {
  const all = Array.isArray(value) ? value : value === undefined ? [] : [value];
  return all.flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
}

export function versionOf(protocol: string): number {
  const m = /^v(\d)\.channel\.k8s\.io$/.exec(protocol);
  return m ? Number(m[1]) : 1;
}

/**
 * What goes on the error channel at the end. v4 and later: a metav1.Status as JSON (the exit code in its causes, as
 * the kubelet writes it, so kubectl exits with the same code); before v4: just the error text, nothing on success.
 */
export function finalStatus(protocol: string, result: { exitCode?: number } | Error): string {
  const structured = versionOf(protocol) >= 4;
  if (!(result instanceof Error) && (result.exitCode ?? 0) === 0) return structured ? JSON.stringify({ metadata: {}, status: 'Success' }) : '';
  if (!(result instanceof Error)) {
    const code = result.exitCode ?? 0;
    const message = `command terminated with non-zero exit code: exit status ${code}`;
    if (!structured) return message;
    return JSON.stringify({ metadata: {}, status: 'Failure', message, reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: String(code) }] } });
  }
  if (!structured) return result.message;
  return JSON.stringify({ metadata: {}, status: 'Failure', message: `Internal error occurred: ${result.message}`, reason: 'InternalError', details: { causes: [{ message: result.message }] }, code: 500 });
}

/** Splits the resize channel's concatenated JSON objects ({"Width":80,"Height":24}) as they arrive. */
export class ResizeDecoder {
  private buf = '';

  push(chunk: Buffer, emit: (size: TerminalSize) => void): void {
    this.buf += chunk.toString('utf8');
    if (this.buf.length > 64 * 1024) this.buf = ''; // garbage: never grow without bound
    for (;;) {
      const end = this.buf.indexOf('}');
      if (end < 0) return;
      const text = this.buf.slice(0, end + 1);
      this.buf = this.buf.slice(end + 1);
      try {
        const v = JSON.parse(text.slice(text.indexOf('{'))) as { Width?: unknown; Height?: unknown };
        const width = Number(v.Width);
        const height = Number(v.Height);
        if (Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0 && width < 65536 && height < 65536) emit({ width, height });
      } catch {
        // not a size: skipped, as the kubelet's decoder gives up on the message
      }
    }
  }
}
