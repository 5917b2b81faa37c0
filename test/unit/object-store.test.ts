import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { NameRegistry, ObjectStore } from '../../src/storage/object-store';

interface Thing {
  id: string;
  state: string;
}

describe('object store', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-objects-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('checkpoints every put and loads them back after a restart', async () => {
    const a = new ObjectStore<Thing>(dir, 'thing');
    await a.init();
    await a.put({ id: 'abc123', state: 'created' });
    await a.put({ id: 'abc123', state: 'running' });
    await a.put({ id: 'def456', state: 'created' });
    await a.delete('def456');
    const b = new ObjectStore<Thing>(dir, 'thing');
    expect(await b.init()).toEqual({ unreadable: [] });
    expect(b.list()).toEqual([{ id: 'abc123', state: 'running' }]);
  });

  it('holds records frozen, put or loaded: a change is a new record (replies are cached per record object)', async () => {
    const a = new ObjectStore<Thing>(dir, 'thing');
    await a.init();
    const put = { id: 'abc123', state: 'created' };
    await a.put(put);
    expect(() => {
      (a.lookup('abc123') as Thing).state = 'running';
    }).toThrow(TypeError);
    expect(a.lookup('abc123')).toBe(put);
    const b = new ObjectStore<Thing>(dir, 'thing');
    await b.init();
    expect(Object.isFrozen(b.lookup('abc123'))).toBe(true);
  });

  it('resolves unique prefixes and names ambiguous and missing ones', async () => {
    const s = new ObjectStore<Thing>(dir, 'container');
    await s.init();
    await s.put({ id: 'abc111', state: 'x' });
    await s.put({ id: 'abc222', state: 'y' });
    expect(s.resolve('abc1').state).toBe('x');
    expect(() => s.resolve('abc')).toThrow(/container id prefix "abc" is ambiguous/);
    expect(() => s.resolve('zzz')).toThrow(/container "zzz" not found/);
    expect(s.lookup('zzz')).toBeUndefined();
    expect(s.lookup('')).toBeUndefined();
  });

  it('reports an unreadable checkpoint instead of dropping it, and removes temp files', async () => {
    fs.writeFileSync(path.join(dir, 'bad.json'), '{not json');
    fs.writeFileSync(path.join(dir, '.tmp-good.json-123'), '{}');
    const s = new ObjectStore<Thing>(dir, 'thing');
    const { unreadable } = await s.init();
    expect(unreadable.map((u) => u.id)).toEqual(['bad']);
    expect(fs.existsSync(path.join(dir, '.tmp-good.json-123'))).toBe(false);
  });

  it('reserves names until released', () => {
    const names = new NameRegistry('pod');
    names.reserve('web_default_uid_0', 'p1');
    names.reserve('web_default_uid_0', 'p1');
    expect(() => names.reserve('web_default_uid_0', 'p2')).toThrow(/reserved for p1/);
    names.release('web_default_uid_0', 'p2');
    expect(names.holder('web_default_uid_0')).toBe('p1');
    names.release('web_default_uid_0', 'p1');
    names.reserve('web_default_uid_0', 'p2');
  });
});
