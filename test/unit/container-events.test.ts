// The event broadcaster on its own: order per subscriber, the bounded queue and what a drop reports, unsubscribe on
// abort, and the handler's behaviour when the client stalls or leaves. Also the zombie count over a fake /proc.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainerEvents, getContainerEvents } from '../../src/server/container-events';
import { countDefunct } from '../../src/server/defunct-processes';
import type { ServerContext } from '../../src/server/context';
import type { ContainerEventResponse } from '../../src/server/generated/runtime/v1/ContainerEventResponse';
import type { CallContext } from '../../src/server/rpc';

const ev = (n: number): ContainerEventResponse => ({ container_id: `c${n}`, container_event_type: 'CONTAINER_CREATED_EVENT' });

function broadcaster(queueSize: number): { events: ContainerEvents; dropped: number[] } {
  const dropped: number[] = [];
  return { events: new ContainerEvents({ queueSize: () => queueSize, onDropped: (n) => dropped.push(n) }), dropped };
}

describe('ContainerEvents', () => {
  test('every subscriber gets every event in order; nothing is built without one', async () => {
    const { events } = broadcaster(10);
    let built = 0;
    events.publish(() => {
      built++;
      return ev(0);
    });
    expect(built).toBe(0);
    const [a, b] = [events.subscribe(new AbortController().signal), events.subscribe(new AbortController().signal)];
    for (let i = 1; i <= 3; i++) events.publish(() => ev(i));
    for (const sub of [a, b]) {
      const got = [await sub.next(), await sub.next(), await sub.next()].map((e) => e?.container_id);
      expect(got).toEqual(['c1', 'c2', 'c3']);
    }
  });

  test('a subscriber a whole queue behind is dropped, with the count of what it lost; the others go on', async () => {
    const { events, dropped } = broadcaster(3);
    const slow = events.subscribe(new AbortController().signal);
    const fast = events.subscribe(new AbortController().signal);
    for (let i = 0; i < 5; i++) {
      events.publish(() => ev(i));
      await fast.next();
    }
    expect(dropped).toEqual([4]); // three queued and the one that did not fit
    expect(events.subscriberCount).toBe(1);
    await expect(slow.next()).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    events.publish(() => ev(9));
    expect((await fast.next())?.container_id).toBe('c9');
  });

  test('an aborted signal unsubscribes, and a waiting next() returns undefined', async () => {
    const { events } = broadcaster(3);
    const ac = new AbortController();
    const sub = events.subscribe(ac.signal);
    const waiting = sub.next();
    ac.abort();
    await expect(waiting).resolves.toBeUndefined();
    expect(events.subscriberCount).toBe(0);
  });

  test('shutdown ends every subscription with UNAVAILABLE, and refuses new ones', async () => {
    const { events } = broadcaster(3);
    const waiting = events.subscribe(new AbortController().signal).next();
    events.shutdown();
    await expect(waiting).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(events.subscribe(new AbortController().signal).next()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(events.subscriberCount).toBe(0);
  });

  test('the handler stops waiting on a stalled send once dropped, and ends quietly when the client leaves', async () => {
    const { events } = broadcaster(2);
    const s = { events } as unknown as ServerContext;
    const ac = new AbortController();
    const ctx = { signal: ac.signal } as CallContext;
    const sent: string[] = [];
    // The first send never drains, as with a client that stopped reading.
    const handler = getContainerEvents(s)({}, ctx, (msg) => {
      sent.push(msg.container_id ?? '');
      return new Promise(() => undefined);
    });
    await new Promise((r) => setImmediate(r));
    events.publish(() => ev(0));
    await new Promise((r) => setImmediate(r));
    for (let i = 1; i < 4; i++) events.publish(() => ev(i));
    await expect(handler).rejects.toMatchObject({ code: 'RESOURCE_EXHAUSTED' });
    expect(sent).toEqual(['c0']);

    const ac2 = new AbortController();
    const quiet = getContainerEvents(s)({}, { signal: ac2.signal } as CallContext, async () => undefined);
    await new Promise((r) => setImmediate(r));
    ac2.abort();
    await expect(quiet).resolves.toBeUndefined();
    expect(events.subscriberCount).toBe(0);
  });
});

describe('countDefunct', () => {
  test('counts state Z after the last ")" of the command, whatever the command holds', async () => {
    const proc = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-proc-'));
    try {
      const stat = { '1': '1 (init) S 0 1', '20': '20 (we ird) Z 1 20', '21': '21 (a) Z (b)) R 1 21', '22': '22 (x) Z 1 22' };
      for (const [pid, text] of Object.entries(stat)) {
        fs.mkdirSync(path.join(proc, pid));
        fs.writeFileSync(path.join(proc, pid, 'stat'), text);
      }
      fs.mkdirSync(path.join(proc, 'self'));
      expect(await countDefunct(proc)).toBe(2);
    } finally {
      fs.rmSync(proc, { recursive: true, force: true });
    }
  });
});
