// How Status and List learn of exits: while the exit watch is up they answer from memory and the watch brings
// exits in; before it is armed and once it is lost, every read looks at the exit dir itself. The runtime is a fake
// that reads exit files as conmon writes them (what is tested is the manager's bookkeeping, not conmon).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ContainerManager, type ContainerRecord } from '../../src/runtime/container-manager';
import type { ExitStatus, OciRuntime } from '../../src/runtime/oci-runtime';
import type { ImageManager } from '../../src/image/image-manager';
import type { SandboxRecord } from '../../src/runtime/sandbox-manager';
import { until } from '../helpers/until';

const quiet = { warn: (): void => undefined };

/** Ids whose exit file the fake cannot read (as a corrupt one would be). */
const unreadable = new Set<string>();

function fakeRuntime(exitDir: () => string): OciRuntime {
  const exitStatus = async (id: string): Promise<ExitStatus | undefined> => {
    if (unreadable.has(id)) throw new Error(`exit file of ${id} unreadable`);
    const file = path.join(exitDir(), id);
    if (!fs.existsSync(file)) return undefined;
    return { exitCode: Number(fs.readFileSync(file, 'utf8')), finishedAtNs: fs.statSync(file, { bigint: true }).mtimeNs, oomKilled: false };
  };
  return { exitStatus } as unknown as OciRuntime;
}

function running(id: string): ContainerRecord {
  return {
    id, podId: 'p', name: `c-${id.slice(0, 4)}`, config: {} as ContainerRecord['config'], imageId: 'i', imageName: 'busybox', handler: {} as ContainerRecord['handler'],
    state: 'CONTAINER_RUNNING', createdAtNs: '1', startedAtNs: '2', finishedAtNs: '0', exitCode: 0, reason: '', message: '', pid: 4242,
    logPath: '/dev/null', bundle: '/nonexistent', stopSignal: 'SIGTERM', user: { uid: 0, gid: 0, additionalGids: [] }, resources: null,
  };
}

const id = (n: number): string => n.toString(16).padStart(64, '0');

describe('container exits: the watch, and reads without it', () => {
  let dir: string;
  let manager: ContainerManager;
  const exited = (n: number, code: number): void => {
    // As conmon does: a temp file renamed into place.
    const tmp = path.join(manager.exitDir, `.tmp-${n}`);
    fs.writeFileSync(tmp, String(code));
    fs.renameSync(tmp, path.join(manager.exitDir, id(n)));
  };

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-exits-'));
    manager = new ContainerManager({
      stateDir: path.join(dir, 'state'), containersDir: path.join(dir, 'containers'), checkpointDir: path.join(dir, 'checkpoints'),
      images: {} as ImageManager, pod: () => ({}) as SandboxRecord, runtime: () => fakeRuntime(() => manager.exitDir),
      defaultCapabilities: () => [], pidsLimit: () => 0,
    });
    await manager.init();
    for (const n of [1, 2, 3]) await manager.store.put(running(id(n)));
  });

  afterEach(() => {
    unreadable.clear();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('without a watch, Status finds an exit file written a moment before', async () => {
    expect((await manager.status(id(1))).state).toBe('CONTAINER_RUNNING');
    exited(1, 3);
    const c = await manager.status(id(1));
    expect([c.state, c.exitCode, c.reason]).toEqual(['CONTAINER_EXITED', 3, 'Error']);
  });

  it('with the watch up, Status answers from memory and the watch brings the exit in; once lost, reads look again', async () => {
    const events: string[] = [];
    const watch = manager.watchExits(quiet);
    try {
      // An exit from before the watch is found by the look-around when it arms.
      exited(2, 0);
      await until('the exit from before the watch', () => manager.store.get(id(2))?.state === 'CONTAINER_EXITED', 5000);
      // Then memory is trusted: without the watch this stays undefined (the dir just changed, nothing recorded).
      await until('memory to be trusted', () => manager.knownStatus(id(1))?.state === 'CONTAINER_RUNNING', 5000);
      // An exit while it is up: nobody calls Status, the watch records it.
      exited(1, 137);
      await until('the watch to record the exit', () => manager.store.get(id(1))?.state === 'CONTAINER_EXITED', 5000);
      expect((await manager.status(id(1))).exitCode).toBe(137);
      events.push('watched');
    } finally {
      watch.close();
    }
    // Lost: memory is no longer trusted, so an exit the watch never saw is found by the read itself.
    exited(3, 1);
    expect(manager.knownStatus(id(3))).toBeUndefined();
    const c = await manager.status(id(3));
    expect([c.state, c.exitCode, events]).toEqual(['CONTAINER_EXITED', 1, ['watched']]);
  });

  it('memory is not trusted when the look-around at arming cannot read an exit file', async () => {
    unreadable.add(id(3));
    const watch = manager.watchExits(quiet);
    try {
      // Long enough for the look-around to finish and for the exit dir's stamp to settle (100 ms).
      await new Promise((resolve) => setTimeout(resolve, 300));
      // Trusted, this would be the record; untrusted, the stamp path has nothing recorded for it yet.
      expect(manager.knownStatus(id(1))).toBeUndefined();
      // Reads still work, by looking at the exit dir.
      exited(1, 4);
      expect((await manager.status(id(1))).exitCode).toBe(4);
    } finally {
      watch.close();
    }
  });

  it('List with the watch lost reads the exit dir as well', async () => {
    const watch = manager.watchExits(quiet);
    await until('memory to be trusted', () => manager.knownStatus(id(1)) !== undefined, 5000);
    watch.close();
    exited(2, 2);
    const states = (await manager.list()).map((c) => [c.id, c.state]);
    expect(states).toEqual(expect.arrayContaining([[id(2), 'CONTAINER_EXITED'], [id(1), 'CONTAINER_RUNNING']]));
  });
});
