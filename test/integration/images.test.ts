// The ImageService end to end: the real daemon pulling from a real docker-registry (and from a registry that
// misbehaves on purpose), storing layers on disk, and answering status, list and remove.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { startFakeRegistry, FakeRegistry } from '../fixtures/fake-registry';
import { buildImage, buildIndex, buildLayer, busyboxLayer, BuiltImage, BuiltLayer, DEFAULT_PLATFORMS, digestOf, hostPlatform, LayerEntry, packTar } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';

function layersDir(d: TestDaemon): string {
  return path.join(d.root, 'image-store', 'layers');
}

function layerDirs(d: TestDaemon): string[] {
  return fs.readdirSync(layersDir(d)).sort();
}

async function metric(d: TestDaemon, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

describe('image service against a real registry', () => {
  let reg: Registry;
  let d: TestDaemon;
  let c: CriClient;
  let base: BuiltLayer;
  let oci: BuiltImage;
  let docker: BuiltImage;

  beforeAll(async () => {
    reg = await startRegistry();
    base = await busyboxLayer();
    const extra = await buildLayer([{ path: 'app/hello.txt', type: 'file', content: 'hello\n' }]);
    oci = buildImage({ layers: [base, extra], config: { User: '1000', Env: ['A=1'], Cmd: ['/bin/sh'] } });
    docker = buildImage({ layers: [base], format: 'docker', config: { User: 'app' } });
    await reg.push('test/oci', 'v1', oci);
    await reg.push('test/docker', 'v2', docker);
    d = await startDaemon({ toml: `[image.registries."${reg.host}"]\ninsecure = true\n` });
    c = d.client();
  });

  afterAll(async () => {
    await d?.stop();
    d?.cleanup();
    await reg?.stop();
  });

  it('pulls an OCI image by tag and reports it in ImageStatus and ListImages', async () => {
    const pulled = await c.image.PullImage({ image: { image: `${reg.host}/test/oci:v1` } });
    expect(pulled.image_ref).toBe(oci.configDigest);
    const st = await c.image.ImageStatus({ image: { image: `${reg.host}/test/oci:v1` } });
    expect(st.image).toMatchObject({
      id: oci.configDigest,
      repo_tags: [`${reg.host}/test/oci:v1`],
      repo_digests: [`${reg.host}/test/oci@${oci.manifestDigest}`],
      uid: { value: '1000' },
      username: '',
    });
    expect(BigInt(st.image?.size ?? '0')).toBeGreaterThan(BigInt(base.size));
    const list = await c.image.ListImages({});
    expect(list.images.map((i) => i.id)).toContain(oci.configDigest);
    // the layers are unpacked on disk, busybox's applets as hard links
    const busybox = layerDirs(d).map((l) => path.join(layersDir(d), l, 'diff', 'bin', 'busybox')).find((p) => fs.existsSync(p));
    expect(busybox).toBeDefined();
    expect(fs.statSync(busybox as string).nlink).toBeGreaterThan(5);
  });

  it('finds an image by id, id prefix and digest reference; returns verbose info', async () => {
    for (const name of [oci.configDigest, oci.configDigest.slice(7, 20), `${reg.host}/test/oci@${oci.manifestDigest}`]) {
      expect((await c.image.ImageStatus({ image: { image: name } })).image?.id).toBe(oci.configDigest);
    }
    const st = await c.image.ImageStatus({ image: { image: oci.configDigest }, verbose: true });
    const info = JSON.parse(st.info['info'] ?? '{}') as { imageSpec: { config: { Env: string[] } }; manifest: { layers: unknown[] } };
    expect(info.imageSpec.config.Env).toEqual(['A=1']);
    expect(info.manifest.layers).toHaveLength(2);
  });

  it('answers an unknown image with an empty status, not an error', async () => {
    const st = await c.image.ImageStatus({ image: { image: `${reg.host}/nope:latest` } });
    expect(st.image).toBeNull();
  });

  it('pulls a Docker v2s2 image by digest and reports the USER name', async () => {
    const pulled = await c.image.PullImage({ image: { image: `${reg.host}/test/docker@${docker.manifestDigest}` } });
    expect(pulled.image_ref).toBe(docker.configDigest);
    const st = await c.image.ImageStatus({ image: { image: docker.configDigest } });
    expect(st.image).toMatchObject({ repo_tags: [], repo_digests: [`${reg.host}/test/docker@${docker.manifestDigest}`], username: 'app' });
  });

  it('picks this platform from a multi-platform index', async () => {
    const images = DEFAULT_PLATFORMS.map((platform) => buildImage({ layers: [base], platform, config: { Labels: { arch: platform.architecture } } }));
    const index = buildIndex(images);
    await reg.push('test/multi', 'latest', index);
    const pulled = await c.image.PullImage({ image: { image: `${reg.host}/test/multi` } });
    const mine = images.find((i) => i.platform.architecture === hostPlatform().architecture);
    expect(pulled.image_ref).toBe(mine?.configDigest);
    const st = await c.image.ImageStatus({ image: { image: `${reg.host}/test/multi:latest` } });
    expect(st.image?.repo_digests).toEqual([`${reg.host}/test/multi@${index.manifestDigest}`]);
  });

  it('unpacks zstd and uncompressed layers', async () => {
    const tar = await packTar([{ path: 'z/zstd.txt', type: 'file', content: 'zstd layer\n' }]);
    const z = execFileSync('zstd', ['-q', '-c'], { input: tar });
    const zstdLayer: BuiltLayer = { digest: digestOf(z), diffId: digestOf(tar), size: z.length, mediaType: 'application/vnd.oci.image.layer.v1.tar+zstd', bytes: z };
    const plain = await buildLayer({ entries: [{ path: 'p/plain.txt', type: 'file', content: 'plain layer\n' }], compression: 'none' });
    const image = buildImage({ layers: [base, zstdLayer, plain] });
    await reg.push('test/compressions', 'v1', image);
    expect((await c.image.PullImage({ image: { image: `${reg.host}/test/compressions:v1` } })).image_ref).toBe(image.configDigest);
    const files = layerDirs(d).flatMap((l) => ['z/zstd.txt', 'p/plain.txt'].map((f) => path.join(layersDir(d), l, 'diff', f))).filter((f) => fs.existsSync(f));
    expect(files.map((f) => fs.readFileSync(f, 'utf8')).sort()).toEqual(['plain layer\n', 'zstd layer\n']);
    await c.image.RemoveImage({ image: { image: image.configDigest } });
  });

  it('downloads each layer once when the same image is pulled twice at the same time', async () => {
    const layer = await buildLayer([{ path: 'big.bin', type: 'file', content: Buffer.alloc(4 << 20, 7) }]);
    const image = buildImage({ layers: [layer] });
    await reg.push('test/twice', 'v1', image);
    const before = await metric(d, 'berth_image_pulls_bytes_total');
    const ref = { image: { image: `${reg.host}/test/twice:v1` } };
    const [a, b] = await Promise.all([c.image.PullImage(ref), c.image.PullImage(ref)]);
    expect(a.image_ref).toBe(image.configDigest);
    expect(b.image_ref).toBe(image.configDigest);
    expect((await metric(d, 'berth_image_pulls_bytes_total')) - before).toBe(layer.size);
  });

  it('reuses a layer that another image already brought', async () => {
    const before = await metric(d, 'berth_image_layer_reuse_total');
    const image = buildImage({ layers: [base], config: { Labels: { other: 'yes' } } });
    await reg.push('test/reuse', 'v1', image);
    await c.image.PullImage({ image: { image: `${reg.host}/test/reuse:v1` } });
    expect((await metric(d, 'berth_image_layer_reuse_total')) - before).toBe(1);
  });

  it('removes by tag, then by id; keeps layers other images use; is idempotent', async () => {
    const ref = `${reg.host}/test/reuse:v1`;
    const id = (await c.image.ImageStatus({ image: { image: ref } })).image?.id ?? '';
    const layersBefore = layerDirs(d);
    await c.image.RemoveImage({ image: { image: ref } });
    expect((await c.image.ImageStatus({ image: { image: ref } })).image).toBeNull();
    expect((await c.image.ImageStatus({ image: { image: id } })).image).toBeNull();
    expect(layerDirs(d)).toEqual(layersBefore); // busybox layer still used by test/oci
    await c.image.RemoveImage({ image: { image: ref } }); // again: not an error
    await c.image.RemoveImage({ image: { image: oci.configDigest } });
    await c.image.RemoveImage({ image: { image: docker.configDigest } });
    await c.image.RemoveImage({ image: { image: `${reg.host}/test/multi:latest` } });
    await c.image.RemoveImage({ image: { image: `${reg.host}/test/twice:v1` } });
    expect((await c.image.ListImages({})).images).toEqual([]);
    expect(layerDirs(d)).toEqual([]);
    expect(fs.readdirSync(path.join(d.root, 'image-store', 'blobs'))).toEqual([]);
  });

  it('refuses malformed references and missing images clearly', async () => {
    await expect(c.image.PullImage({ image: { image: 'UPPER/case' } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(c.image.PullImage({ image: { image: '' } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('image.image') });
    await expect(c.image.PullImage({ image: { image: `${reg.host}/test/absent:v1` } })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringContaining('test/absent'),
    });
  });

  it('streams images in batches', async () => {
    await c.image.PullImage({ image: { image: `${reg.host}/test/oci:v1` } });
    const got: string[] = [];
    for await (const batch of c.image.StreamImages({})) got.push(...batch.images.map((i) => i.id));
    expect(got).toEqual([oci.configDigest]);
  });

  it('refuses a second daemon on the same storage root', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-second-'));
    try {
      await expect(
        startDaemon({ dir: other, metrics: false, args: ['--root', d.root] }),
      ).rejects.toThrow(/locked by another berth/);
    } finally {
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});

describe('image service with credentials', () => {
  it('pulls through basic auth with the request credentials and refuses wrong ones', async () => {
    const reg = await startRegistry({ htpasswd: { user: 'alice', password: 's3cret' } });
    const d = await startDaemon({ metrics: false, toml: `[image.registries."${reg.host}"]\ninsecure = true\n` });
    try {
      const image = buildImage({ layers: [await busyboxLayer()] });
      await reg.push('private/img', 'v1', image);
      const c = d.client();
      const ref = { image: `${reg.host}/private/img:v1` };
      await expect(c.image.PullImage({ image: ref })).rejects.toMatchObject({ code: grpc.status.UNAUTHENTICATED });
      await expect(c.image.PullImage({ image: ref, auth: { username: 'alice', password: 'wrong' } })).rejects.toMatchObject({
        code: grpc.status.UNAUTHENTICATED,
        details: expect.stringContaining(reg.host),
      });
      const pulled = await c.image.PullImage({ image: ref, auth: { auth: Buffer.from('alice:s3cret').toString('base64') } });
      expect(pulled.image_ref).toBe(image.configDigest);
      expect(d.logs()).not.toContain('s3cret');
    } finally {
      await d.stop();
      d.cleanup();
      await reg.stop();
    }
  });

  it('pulls through a mirror when the upstream is down', async () => {
    const reg = await startRegistry();
    const d = await startDaemon({
      metrics: false,
      toml: `[image.registries."127.0.0.1:1"]\nmirrors = ["http://${reg.host}"]\n[image.registries."${reg.host}"]\ninsecure = true\n`,
    });
    try {
      const image = buildImage({ layers: [await busyboxLayer()] });
      await reg.push('mirrored/img', 'v1', image);
      const pulled = await d.client().image.PullImage({ image: { image: '127.0.0.1:1/mirrored/img:v1' } });
      expect(pulled.image_ref).toBe(image.configDigest);
      const st = await d.client().image.ImageStatus({ image: { image: '127.0.0.1:1/mirrored/img:v1' } });
      expect(st.image?.repo_tags).toEqual(['127.0.0.1:1/mirrored/img:v1']);
    } finally {
      await d.stop();
      d.cleanup();
      await reg.stop();
    }
  });
});

describe('hostile registries and layers', () => {
  let fake: FakeRegistry;
  let d: TestDaemon;
  let c: CriClient;
  let outside: string;

  beforeAll(async () => {
    fake = await startFakeRegistry();
    outside = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-outside-'));
    d = await startDaemon({
      toml: `[image]\nmax_layer_bytes = 8388608\npull_progress_timeout_seconds = 2\nretries = 0\n[image.registries."${fake.host}"]\ninsecure = true\n`,
    });
    c = d.client();
  });

  afterAll(async () => {
    await d?.stop();
    d?.cleanup();
    await fake?.stop();
    fs.rmSync(outside, { recursive: true, force: true });
  });

  afterEach(() => {
    // nothing half-made is ever visible, and nothing escaped the store
    expect(layerDirs(d).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    expect(fs.readdirSync(outside)).toEqual([]);
  });

  async function serveLayer(repo: string, entries: LayerEntry[] | Buffer): Promise<BuiltImage> {
    const layer = Buffer.isBuffer(entries) ? await buildLayer({ rawTar: entries, compression: 'gzip' }) : await buildLayer(entries);
    const image = buildImage({ layers: [layer] });
    fake.serve(repo, 'v1', image);
    return image;
  }

  it.each<[string, () => LayerEntry[], RegExp]>([
    ['path traversal', () => [{ path: `../../../../../../../..${outside}/evil`, type: 'file', content: 'x' }], /escapes the layer root/],
    ['absolute symlink then a file under it', () => [
      { path: 'etc', type: 'symlink', linkname: outside },
      { path: 'etc/evil', type: 'file', content: 'x' },
    ], /symlink/],
    ['hardlink to outside', () => [{ path: 'link', type: 'hardlink', linkname: `../../../../../../..${outside}/x` }], /escapes the layer root|hard ?link/i],
    ['whiteout of ..', () => [{ path: 'a/.wh...', type: 'file', content: '' }], /whiteout/],
  ])('refuses a layer with %s and writes nothing outside', async (_what, entries, message) => {
    const repo = `hostile/${_what.replace(/\W+/g, '-')}`;
    await serveLayer(repo, entries());
    await expect(c.image.PullImage({ image: { image: `${fake.host}/${repo}:v1` } })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringMatching(message),
    });
  });

  it('stops a decompression bomb at the layer size limit', async () => {
    // 64 MiB of zeros gzip to ~64 KiB; the daemon allows 8 MiB per layer here
    const tarHeader = Buffer.alloc(512);
    tarHeader.write('bomb', 0);
    tarHeader.write('0000644\0', 100);
    tarHeader.write('0000000\0', 108);
    tarHeader.write('0000000\0', 116);
    tarHeader.write((64 * 1024 * 1024).toString(8).padStart(11, '0') + '\0', 124);
    tarHeader.write('00000000000\0', 136);
    tarHeader.write('0', 156);
    tarHeader.write('ustar\0' + '00', 257);
    tarHeader.fill(' ', 148, 156);
    let sum = 0;
    for (const b of tarHeader) sum += b;
    tarHeader.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    const raw = Buffer.concat([tarHeader, Buffer.alloc(64 * 1024 * 1024), Buffer.alloc(1024)]);
    const layer = await buildLayer({ rawTar: raw, compression: 'gzip' });
    expect(layer.size).toBeLessThan(1 << 20);
    const image = buildImage({ layers: [layer] });
    fake.serve('hostile/bomb', 'v1', image);
    await expect(c.image.PullImage({ image: { image: `${fake.host}/hostile/bomb:v1` } })).rejects.toMatchObject({
      code: grpc.status.RESOURCE_EXHAUSTED,
    });
  });

  it('refuses a blob whose bytes do not match its digest', async () => {
    const image = await serveLayer('hostile/mismatch', [{ path: 'f', type: 'file', content: 'good' }]);
    const layer = image.layers[0] as BuiltLayer;
    fake.misbehave(`/v2/hostile/mismatch/blobs/${layer.digest}`, { kind: 'bytes', body: zlib.gzipSync(Buffer.alloc(layer.size, 1)).subarray(0, layer.size) });
    await expect(c.image.PullImage({ image: { image: `${fake.host}/hostile/mismatch:v1` } })).rejects.toMatchObject({ code: grpc.status.DATA_LOSS });
  });

  it('refuses a truncated blob', async () => {
    const image = await serveLayer('hostile/truncated', [{ path: 'f', type: 'file', content: Buffer.alloc(100_000, 3) }]);
    const layer = image.layers[0] as BuiltLayer;
    fake.misbehave(`/v2/hostile/truncated/blobs/${layer.digest}`, { kind: 'truncate', bytes: Math.floor(layer.size / 2) });
    await expect(c.image.PullImage({ image: { image: `${fake.host}/hostile/truncated:v1` } })).rejects.toMatchObject({
      code: expect.any(Number),
    });
    expect((await c.image.ListImages({})).images.map((i) => i.id)).not.toContain(image.configDigest);
  });

  it('refuses malformed and oversized manifests', async () => {
    fake.misbehave('/v2/hostile/garbage/manifests/v1', { kind: 'bytes', body: Buffer.from('{"schemaVersion": 2, "mediaType": '), contentType: 'application/vnd.oci.image.manifest.v1+json' });
    await expect(c.image.PullImage({ image: { image: `${fake.host}/hostile/garbage:v1` } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    fake.misbehave('/v2/hostile/huge/manifests/v1', { kind: 'bytes', body: Buffer.alloc(5 << 20, 32), contentType: 'application/vnd.oci.image.manifest.v1+json' });
    await expect(c.image.PullImage({ image: { image: `${fake.host}/hostile/huge:v1` } })).rejects.toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED });
  });

  it('cancels a pull that makes no progress', async () => {
    const image = await serveLayer('hostile/stall', [{ path: 'f', type: 'file', content: Buffer.alloc(200_000, 5) }]);
    const layer = image.layers[0] as BuiltLayer;
    fake.misbehave(`/v2/hostile/stall/blobs/${layer.digest}`, { kind: 'stall', bytes: 100 });
    await expect(c.image.PullImage({ image: { image: `${fake.host}/hostile/stall:v1` } })).rejects.toMatchObject({
      code: grpc.status.DEADLINE_EXCEEDED,
      details: expect.stringContaining('no progress'),
    });
  });
});

describe('crash safety', () => {
  const afterCleanup: (() => Promise<void>)[] = [];
  afterAll(async () => {
    for (const f of afterCleanup) await f().catch(() => undefined);
  });

  it('recovers from kill -9 in the middle of a pull: no half layer, and the next pull succeeds', async () => {
    const fake = await startFakeRegistry();
    afterCleanup.push(() => fake.stop());
    const small = await busyboxLayer();
    const big = await buildLayer([{ path: 'big.bin', type: 'file', content: Buffer.alloc(1 << 20, 9) }]);
    const image = buildImage({ layers: [small, big] });
    fake.serve('crash/img', 'v1', image);
    fake.misbehave(`/v2/crash/img/blobs/${big.digest}`, { kind: 'stall', bytes: 1000 });
    const d1 = await startDaemon({ metrics: false, toml: `[image.registries."${fake.host}"]\ninsecure = true\n` });
    try {
      const pull = d1.client().image.PullImage({ image: { image: `${fake.host}/crash/img:v1` } }).catch((e: unknown) => e);
      // wait until the small layer is in and the big one is mid-download
      const deadline = Date.now() + 10_000;
      while (!fake.requests.some((r) => r.includes(big.digest)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 200));
      expect(await d1.stop('SIGKILL')).toBe('SIGKILL');
      await pull;
      const d2 = await startDaemon({ dir: d1.dir, metrics: false });
      try {
        expect(layerDirs(d2).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
        await fake.stop();
        // the same content from a healthy registry (127.0.0.1 falls back to plain HTTP without configuration)
        const fresh = await startFakeRegistry();
        fresh.serve('crash/img', 'v1', image);
        const got = await d2.client().image.PullImage({ image: { image: `${fresh.host}/crash/img:v1` } }).finally(() => fresh.stop());
        expect(got.image_ref).toBe(image.configDigest);
        const dirs = layerDirs(d2);
        expect(dirs).toHaveLength(2);
        const bigFile = dirs.map((l) => path.join(layersDir(d2), l, 'diff', 'big.bin')).find((p) => fs.existsSync(p));
        expect(fs.readFileSync(bigFile as string).equals(Buffer.alloc(1 << 20, 9))).toBe(true);
      } finally {
        await d2.stop();
      }
    } finally {
      d1.cleanup();
    }
  });
});
