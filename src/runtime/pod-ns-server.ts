// Client of `berth-pod-ns --serve` (native/pod-ns.c): one long-lived helper that forks a child per pod, so a pod's
// namespaces cost a fork in a small C process rather than an exec, and Node's spawn (which blocks the event loop for
// milliseconds) happens once. Requests are NUL-separated fields ended by an empty one; replies are "id code message"
// lines (the wire format is described in native/pod-ns.c).
import { ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { Socket } from 'node:net';
import path from 'node:path';
import { BerthError, internal } from '../common/errors';

const STDERR_KEEP = 2048; // bytes of the server's own stderr kept for the error when it exits
const STOP_WAIT_MS = 2_000;
const REPLY = /^(\d+) (\d+)(?: (.*))?$/s;

export interface PodNsReply {
  /** As the one-shot berth-pod-ns exit status: 0 ok, 1 failure, 2 usage, 3 invalid hostname. */
  code: number;
  /** The child's stderr on one line; empty on success. */
  message: string;
}

interface Pending {
  resolve: (reply: PodNsReply) => void;
  reject: (err: BerthError) => void;
  timer: NodeJS.Timeout;
}

/** One spawned server: its pending requests die with it, while the next request may already go to a fresh one. */
interface Connection {
  child: ChildProcessWithoutNullStreams;
  pid: number;
  pending: Map<number, Pending>;
  closed: Promise<void>;
}

export class PodNsServer {
  private conn: Connection | undefined;
  private nextId = 1;
  private readonly name: string;

  constructor(
    private readonly file: string,
    private readonly env: NodeJS.ProcessEnv,
    private readonly timeoutMs: number,
  ) {
    this.name = `${path.basename(file)} --serve`;
  }

  /** Pid of the running server, if any. */
  get pid(): number | undefined {
    return this.conn?.pid;
  }

  /** Spawns the server unless one runs; false when it cannot be spawned at all (the caller falls back to exec). */
  start(): boolean {
    return this.connection() !== undefined;
  }

  /** Sends one request (the one-shot argv after argv[0]); rejects only when the server dies, hangs or cannot start. */
  request(args: readonly string[]): Promise<PodNsReply> {
    // An empty field would end the request early, a NUL would split one.
    const bad = args.find((a) => a === '' || a.includes('\0'));
    if (bad !== undefined) return Promise.reject(internal(`${this.name}: argument ${JSON.stringify(bad)} is empty or holds NUL`));
    const conn = this.connection();
    if (conn === undefined) return Promise.reject(internal(`${this.name} cannot be started`));
    const id = this.nextId++;
    return new Promise<PodNsReply>((resolve, reject) => {
      // Ref'd (unlike the pipes): a pending request keeps Node alive until its reply or timeout.
      const timer = setTimeout(() => this.timedOut(conn, id), this.timeoutMs);
      conn.pending.set(id, { resolve, reject, timer });
      conn.child.stdin.write(`${id}\0${args.join('\0')}\0\0`);
    });
  }

  /** Closes the server's stdin; resolves once it has exited (SIGKILL after a grace period). Pending requests still
   *  get their replies: the server serves what it read before the end of its input. */
  async stop(): Promise<void> {
    const conn = this.conn;
    if (conn === undefined) return;
    this.conn = undefined;
    conn.child.stdin.end();
    const timer = setTimeout(() => conn.child.kill('SIGKILL'), STOP_WAIT_MS);
    await conn.closed;
    clearTimeout(timer);
  }

  private connection(): Connection | undefined {
    if (this.conn !== undefined) return this.conn;
    let child: ChildProcessWithoutNullStreams;
    try {
      child = spawn(this.file, ['--serve'], { stdio: ['pipe', 'pipe', 'pipe'], env: this.env });
    } catch {
      return undefined;
    }
    // After a successful spawn, 'error' only reports a failed kill; before, it repeats what pid === undefined says.
    child.on('error', () => undefined);
    const pid = child.pid;
    if (pid === undefined) return undefined;
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    const conn: Connection = { child, pid, pending: new Map(), closed };
    this.conn = conn;
    // The server must never keep Node alive by itself: it exits at the end of its stdin, or dies with berth.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) if (s instanceof Socket) s.unref();
    child.stdin.on('error', () => undefined); // EPIPE when it died: its 'close' reports that

    let partial = Buffer.alloc(0);
    child.stdout.on('data', (chunk: Buffer) => {
      partial = Buffer.concat([partial, chunk]);
      for (let nl = partial.indexOf(0x0a); nl >= 0; nl = partial.indexOf(0x0a)) {
        const line = partial.subarray(0, nl).toString('utf8');
        partial = partial.subarray(nl + 1);
        this.onReply(conn, line);
      }
    });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (text: string) => {
      stderr = (stderr + text).slice(-STDERR_KEEP);
    });
    // 'close' rather than 'exit': by then the server's last stderr has been read.
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      const why = signal !== null ? `signal ${signal}` : `code ${code}`;
      const text = stderr.trim().replace(/\s*\n\s*/g, '; ');
      this.drop(conn, () => `${this.name} (pid ${pid}) exited (${why}) before replying${text ? `: ${text}` : ''}`);
    });
    return conn;
  }

  private onReply(conn: Connection, line: string): void {
    const m = REPLY.exec(line);
    const id = Number(m?.[1]);
    const pending = conn.pending.get(id);
    if (m === null || pending === undefined) {
      // A reply to nothing asked: the stream can no longer be trusted to pair replies with requests.
      conn.child.kill('SIGKILL');
      this.drop(conn, () => `${this.name} (pid ${conn.pid}) sent an unexpected reply ${JSON.stringify(line.slice(0, 200))}; killed it`);
      return;
    }
    conn.pending.delete(id);
    clearTimeout(pending.timer);
    pending.resolve({ code: Number(m[2]), message: (m[3] ?? '').trim() });
  }

  private timedOut(conn: Connection, id: number): void {
    // Requests are served one at a time: behind a hung one, none of the others will be answered either.
    conn.child.kill('SIGKILL');
    const late = `${this.name} (pid ${conn.pid}) gave no reply in ${this.timeoutMs} ms`;
    this.drop(conn, (other) => (other === id ? `${late}; killed it` : `${late} to another request; killed it`));
  }

  /** Fails every pending request of `conn`, and makes the next request start a fresh server. */
  private drop(conn: Connection, why: (id: number) => string): void {
    if (this.conn === conn) this.conn = undefined;
    const pending = [...conn.pending];
    conn.pending.clear();
    for (const [id, p] of pending) {
      clearTimeout(p.timer);
      p.reject(internal(why(id)));
    }
  }
}
