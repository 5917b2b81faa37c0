// GetContainerEvents: the container lifecycle as a stream, what the kubelet's Evented PLEG consumes. The container
// manager reports each transition; every subscriber gets every event, in order, through its own bounded queue. A
// subscriber that falls a whole queue behind is dropped (its stream ends with RESOURCE_EXHAUSTED) rather than
// allowed to hold memory or slow anyone else: the kubelet then relists and subscribes again.
import { BerthError } from '../common/errors';
import { nowNs } from '../common/time';
import type { ContainerRecord } from '../runtime/container-manager';
import type { ContainerEventResponse } from './generated/runtime/v1/ContainerEventResponse';
import type { ContainerEventType__Output } from './generated/runtime/v1/ContainerEventType';
import type { GetEventsRequest__Output } from './generated/runtime/v1/GetEventsRequest';
import type { ServerContext } from './context';
import { containerStatusOf } from './container';
import { podSandboxStatusOf } from './pod-sandbox';
import type { StreamHandler } from './rpc';

export interface ContainerEventsOptions {
  /** Events a subscriber may have waiting before it is dropped (read when it subscribes). */
  queueSize: () => number;
  /** Told how many events a dropped subscriber lost (berth_container_events_dropped_total). */
  onDropped: (events: number) => void;
}

export class ContainerEvents {
  private readonly subscribers = new Set<Subscription>();
  private shutDown = false;

  constructor(private readonly opts: ContainerEventsOptions) {}

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Hands the event to every subscriber; `build` runs only when someone listens, so an unwatched node pays nothing. */
  publish(build: () => ContainerEventResponse): void {
    if (this.subscribers.size === 0) return;
    const event = build();
    for (const sub of this.subscribers) {
      const lost = sub.offer(event);
      if (lost > 0) {
        this.subscribers.delete(sub);
        this.opts.onDropped(lost);
      }
    }
  }

  /** A new subscriber, closed when `signal` aborts (the client went away). */
  subscribe(signal: AbortSignal): Subscription {
    const sub = new Subscription(Math.max(1, this.opts.queueSize()), () => this.subscribers.delete(sub));
    this.subscribers.add(sub);
    if (this.shutDown) sub.fail(SHUTTING_DOWN());
    else if (signal.aborted) sub.close();
    else signal.addEventListener('abort', () => sub.close(), { once: true });
    return sub;
  }

  /** Ends every stream with UNAVAILABLE, as containerd does, so a shutdown need not wait for subscribers to leave. */
  shutdown(): void {
    this.shutDown = true;
    for (const sub of this.subscribers) sub.fail(SHUTTING_DOWN());
  }
}

const SHUTTING_DOWN = (): BerthError => new BerthError('UNAVAILABLE', 'container events subscription closed: berth is shutting down');

export class Subscription {
  private readonly queue: ContainerEventResponse[] = [];
  private wake: (() => void) | undefined;
  private failure: BerthError | undefined;
  private closed = false;
  private endNow: () => void = () => undefined;
  /** Settles when the subscription ends (dropped or closed): a pending send must not outlive it. */
  readonly ended = new Promise<void>((resolve) => (this.endNow = resolve));

  constructor(
    private readonly limit: number,
    private readonly detach: () => void,
  ) {}

  /** Queues the event; on overflow drops this subscriber and returns how many events it lost (0 = queued). */
  offer(event: ContainerEventResponse): number {
    if (this.closed) return 0;
    if (this.queue.length < this.limit) {
      this.queue.push(event);
      this.wake?.();
      return 0;
    }
    const lost = this.queue.length + 1;
    this.fail(new BerthError('RESOURCE_EXHAUSTED', `container event subscriber dropped: it fell ${this.limit} events behind (api.container_events_queue_size); subscribe again`));
    return lost;
  }

  /** Ends the subscription with an error that next() throws. */
  fail(err: BerthError): void {
    if (this.closed) return;
    this.failure = err;
    this.close();
  }

  /** The next event; undefined once closed; throws once dropped or shut down. */
  async next(): Promise<ContainerEventResponse | undefined> {
    for (;;) {
      if (this.failure) throw this.failure;
      const event = this.queue.shift();
      if (event || this.closed) return event;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.queue.length = 0;
    this.detach();
    this.wake?.();
    this.endNow();
  }
}

/** The event as containerd and CRI-O send it: the pod's status and all its containers' statuses at this moment. */
export function containerEvent(s: Pick<ServerContext, 'sandboxes' | 'containers'>, type: ContainerEventType__Output, c: ContainerRecord): ContainerEventResponse {
  // A pod already gone leaves the status out (containerd does the same); the kubelet then ignores the event.
  const pod = s.sandboxes.store.lookup(c.podId);
  return {
    container_id: c.id,
    container_event_type: type,
    created_at: nowNs().toString(),
    pod_sandbox_status: pod ? podSandboxStatusOf(pod) : null,
    containers_statuses: s.containers.inPod(c.podId).map(containerStatusOf),
  };
}

export function getContainerEvents(s: ServerContext): StreamHandler<GetEventsRequest__Output, ContainerEventResponse> {
  return async (_req, ctx, send) => {
    const sub = s.events.subscribe(ctx.signal);
    try {
      for (;;) {
        const event = await sub.next();
        if (!event) return; // the client went away
        // send waits for the client to drain (gRPC flow control); a drop meanwhile ends the wait, and the send left
        // behind then settles (or fails) with the call.
        const sending = send(event);
        sending.catch(() => undefined);
        await Promise.race([sending, sub.ended]);
      }
    } catch (err) {
      if (ctx.signal.aborted) return;
      throw err;
    } finally {
      sub.close();
    }
  };
}
