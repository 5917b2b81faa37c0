// Container root filesystems: an image pulled into the store, mounted as overlay with a writable upper dir.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImageManager } from '../../src/image/image-manager';
import { defaultConfig } from '../../src/server/config';
import { mountRootfs, removeRootfs, rootfsPaths, unmountRootfs } from '../../src/storage/rootfs';
import { buildImage, buildLayer, busyboxLayer } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';

const quiet = { info: () => undefined, debug: () => undefined, warn: () => undefined, error: () => undefined };

describe('container root filesystems', () => {
  let reg: Registry;
  let dir: string;
  let images: ImageManager;

  beforeAll(async () => {
    reg = await startRegistry();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-rootfs-'));
    const cfg = defaultConfig().image;
    images = new ImageManager(path.join(dir, 'image-store'), () => cfg, quiet, { bytes: () => undefined, layerReused: () => undefined });
    await images.init();
  });

  afterAll(async () => {
    await images?.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await reg?.stop();
  });

  it('mounts the layers top-down with whiteouts applied, and writes go to the upper dir', async () => {
    const base = await busyboxLayer({ extra: [{ path: 'etc/old.conf', type: 'file', content: 'old' }, { path: 'data/a', type: 'file', content: 'a' }] });
    const top = await buildLayer([
      { path: 'etc/.wh.old.conf', type: 'file', content: '' },
      { path: 'data/.wh..wh..opq', type: 'file', content: '' },
      { path: 'data/b', type: 'file', content: 'b' },
      { path: 'etc/motd', type: 'file', content: 'hi\n' },
    ]);
    const image = buildImage({ layers: [base, top] });
    await reg.push('rootfs/img', 'v1', image);
    const record = await images.pull(`${reg.host}/rootfs/img:v1`, undefined);
    const paths = rootfsPaths(path.join(dir, 'containers'), 'c1');
    const merged = await mountRootfs(images.layers, record.layers.map((l) => l.chainId), paths);
    try {
      expect(fs.readFileSync(path.join(merged, 'etc/motd'), 'utf8')).toBe('hi\n');
      expect(fs.existsSync(path.join(merged, 'bin/busybox'))).toBe(true);
      expect(fs.existsSync(path.join(merged, 'etc/old.conf'))).toBe(false);
      expect(fs.readdirSync(path.join(merged, 'data'))).toEqual(['b']);
      fs.writeFileSync(path.join(merged, 'new.txt'), 'written');
      expect(fs.readFileSync(path.join(paths.upper, 'new.txt'), 'utf8')).toBe('written');
      // the shared layer is untouched
      expect(fs.existsSync(path.join(images.layers.diffPath(record.layers[1]?.chainId ?? ''), 'new.txt'))).toBe(false);
    } finally {
      unmountRootfs(paths);
    }
    expect(fs.existsSync(path.join(merged, 'etc/motd'))).toBe(false);
    unmountRootfs(paths); // again: not mounted is fine
    await removeRootfs(paths);
    expect(fs.existsSync(paths.dir)).toBe(false);
  });

  it('refuses to mount a layer the store does not have', async () => {
    const paths = rootfsPaths(path.join(dir, 'containers'), 'c2');
    await expect(mountRootfs(images.layers, [`sha256:${'0'.repeat(64)}`], paths)).rejects.toThrow(/not in the store/);
  });
});
