import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Trash } from '../../src/storage/trash';

describe('trash', () => {
  let root: string;
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-trash-'));
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  function tree(dir: string): void {
    fs.mkdirSync(path.join(dir, 'a', 'b'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'a', 'b', 'f'), 'x');
  }

  it('takes a directory away at once and deletes it in the background', async () => {
    const trash = new Trash([path.join(root, 'trash')]);
    await trash.init();
    tree(path.join(root, 'victim'));
    await trash.discard(path.join(root, 'victim'));
    expect(fs.existsSync(path.join(root, 'victim'))).toBe(false);
    await trash.drained();
    expect(fs.readdirSync(path.join(root, 'trash'))).toEqual([]);
    await trash.discard(path.join(root, 'never-was')); // missing is fine
  });

  it('empties what an earlier run left, and deletes in place what lies outside its filesystems', async () => {
    tree(path.join(root, 'trash', 'left-1234'));
    const trash = new Trash([path.join(root, 'trash')]);
    await trash.init();
    await trash.drained();
    expect(fs.readdirSync(path.join(root, 'trash'))).toEqual([]);
    const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-elsewhere-'));
    tree(elsewhere);
    await new Trash([path.join(root, 'trash')]).discard(elsewhere);
    expect(fs.existsSync(elsewhere)).toBe(false);
  });
});
