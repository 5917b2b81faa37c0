// ImageManager rules that need no daemon: images in use by containers, pinned images.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImageManager } from '../../src/image/image-manager';
import { defaultConfig } from '../../src/server/config';
import { buildImage, busyboxLayer } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';

const quiet = { info: () => undefined, debug: () => undefined, warn: () => undefined, error: () => undefined };

describe('image manager', () => {
  let reg: Registry;
  let dir: string;
  let images: ImageManager;
  const cfg = defaultConfig().image;
  let ref: string;
  let id: string;

  beforeAll(async () => {
    reg = await startRegistry();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-images-'));
    images = new ImageManager(path.join(dir, 'image-store'), () => cfg, quiet, { bytes: () => undefined, layerReused: () => undefined });
    await images.init();
    const image = buildImage({ layers: [await busyboxLayer()] });
    await reg.push('rules/img', 'v1', image);
    ref = `${reg.host}/rules/img:v1`;
    id = image.configDigest;
  });

  afterAll(async () => {
    await images?.close();
    fs.rmSync(dir, { recursive: true, force: true });
    await reg?.stop();
  });

  it('refuses to remove by id an image a container uses; by tag only the tag goes', async () => {
    await images.pull(ref, undefined);
    images.imageUser = (imageId) => (imageId === id ? 'ctr-1' : undefined);
    await expect(images.remove(id)).rejects.toThrow(/in use by container ctr-1/);
    await images.remove(ref);
    expect(images.resolve(ref)).toBeUndefined();
    expect(images.resolve(id)?.repoTags).toEqual([]);
    expect(images.layers.list()).toHaveLength(1);
    images.imageUser = () => undefined;
    await images.remove(id);
    expect(images.resolve(id)).toBeUndefined();
    expect(images.layers.list()).toHaveLength(0);
  });

  it('reports pinned images and refuses to remove them', async () => {
    await images.pull(ref, undefined);
    cfg.pinned_images = [ref];
    try {
      const record = images.resolve(ref);
      expect(record && images.isPinned(record)).toBe(true);
      await expect(images.remove(ref)).rejects.toThrow(/pinned/);
      await expect(images.remove(id)).rejects.toThrow(/pinned/);
    } finally {
      cfg.pinned_images = [];
    }
    await images.remove(id);
  });

  it('keeps the store locked against a second manager on the same root', async () => {
    const second = new ImageManager(path.join(dir, 'image-store'), () => cfg, quiet, { bytes: () => undefined, layerReused: () => undefined });
    await expect(second.init()).rejects.toThrow(/locked by another berth/);
  });
});
