// Proves the shared fixtures against the real docker-registry: built images push, read back byte for byte,
// and a busybox layer unpacks with hard links intact.
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import {
  BuiltImage,
  MediaTypes,
  buildImage,
  buildLayer,
  buildMultiPlatform,
  busyboxLayer,
  digestOf,
} from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function fetchManifest(reg: Registry, repo: string, ref: string, accept: string): Promise<{ digest: string; body: Buffer; type: string }> {
  const res = await reg.request(`/v2/${repo}/manifests/${ref}`, { headers: { accept } });
  expect(res.status).toBe(200);
  return { digest: String(res.headers['docker-content-digest']), body: res.body, type: String(res.headers['content-type']) };
}

describe('registry + image fixtures', () => {
  let reg: Registry;
  let busybox: Awaited<ReturnType<typeof busyboxLayer>>;

  beforeAll(async () => {
    [reg, busybox] = await Promise.all([startRegistry(), busyboxLayer()]);
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it.each([
    ['oci', MediaTypes.ociManifest],
    ['docker', MediaTypes.dockerManifest],
  ] as const)('pushes a %s image and reads it back by tag and digest', async (format, mediaType) => {
    const img = buildImage({
      layers: [busybox],
      format,
      config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'], User: 'app', Labels: { a: 'b' } },
    });
    expect(img.mediaType).toBe(mediaType);
    await reg.push(`test/${format}`, 'v1', img);
    for (const ref of ['v1', img.manifestDigest]) {
      const got = await fetchManifest(reg, `test/${format}`, ref, mediaType);
      expect(got.type).toBe(mediaType);
      expect(got.digest).toBe(img.manifestDigest);
      expect(got.body.equals(img.manifestBytes)).toBe(true);
    }
    const manifest = JSON.parse(img.manifestBytes.toString()) as { layers: { mediaType: string }[] };
    expect(manifest.layers[0]?.mediaType).toBe(format === 'oci' ? MediaTypes.ociLayerGzip : MediaTypes.dockerLayerGzip);
  });

  it('serves a pushed blob whose sha256 matches its digest', async () => {
    const img = buildImage({ layers: [busybox] });
    await reg.push('test/blob', 'latest', img);
    for (const digest of [img.configDigest, busybox.digest]) {
      const res = await reg.request(`/v2/test/blob/blobs/${digest}`);
      expect(res.status).toBe(200);
      expect(digestOf(res.body)).toBe(digest);
    }
  });

  it.each([
    ['oci', MediaTypes.ociIndex],
    ['docker', MediaTypes.dockerManifestList],
  ] as const)('pushes a 3-platform %s index', async (format, mediaType) => {
    const index = await buildMultiPlatform({ format });
    await reg.push('test/multi', format, index);
    const got = await fetchManifest(reg, 'test/multi', format, mediaType);
    expect(got.digest).toBe(index.manifestDigest);
    const parsed = JSON.parse(got.body.toString()) as { manifests: { platform: { architecture: string; variant?: string } }[] };
    expect(parsed.manifests.map((m) => `${m.platform.architecture}${m.platform.variant ?? ''}`)).toEqual(['amd64', 'arm64', 'armv7']);
    // Each child is fetchable by digest and its config names its own platform.
    for (const child of index.manifests) {
      await fetchManifest(reg, 'test/multi', child.manifestDigest, child.mediaType);
      const cfg = await reg.request(`/v2/test/multi/blobs/${child.configDigest}`);
      expect(JSON.parse(cfg.body.toString())).toMatchObject(child.platform);
    }
  });

  it('writes entries verbatim: hostile names, devices, pax xattrs, mode 0', async () => {
    const layer = await buildLayer({
      compression: 'none',
      entries: [
        { path: '../evil', type: 'file', content: 'x', mode: 0 },
        { path: '/abs', type: 'symlink', linkname: '/etc/shadow' },
        { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
        { path: 'f', type: 'file', content: 'y', uid: 7, gid: 8, pax: { 'SCHILY.xattr.user.k': 'v' } },
      ],
    });
    expect(layer.mediaType).toBe(MediaTypes.ociLayer);
    expect(layer.digest).toBe(layer.diffId);
    const seen: tar.Header[] = [];
    const extract = tar.extract();
    extract.end(layer.bytes);
    for await (const entry of extract) {
      seen.push(entry.header);
      entry.resume();
    }
    expect(seen.map((h) => [h.name, h.type, h.mode])).toEqual([
      ['../evil', 'file', 0],
      ['/abs', 'symlink', 0o644],
      ['dev/null', 'character-device', 0o666],
      ['f', 'file', 0o644],
    ]);
    expect(seen[2]).toMatchObject({ devmajor: 1, devminor: 3 });
    expect(seen[3]).toMatchObject({ uid: 7, gid: 8, pax: { 'SCHILY.xattr.user.k': 'v' } });
  });

  it('builds a busybox layer with hard-linked applets', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-layer-'));
    try {
      await writeFile(join(dir, 'layer.tar.gz'), busybox.bytes);
      const root = join(dir, 'root');
      await mkdir(root);
      execFileSync('tar', ['-xzf', join(dir, 'layer.tar.gz'), '-C', root]);
      const bb = await stat(join(root, 'bin/busybox'));
      const sh = await stat(join(root, 'bin/sh'));
      expect(sh.ino).toBe(bb.ino);
      expect(bb.nlink).toBe(16);
      expect((await stat(join(root, 'tmp'))).mode & 0o7777).toBe(0o1777);
      expect(digestOf(gunzipSync(busybox.bytes))).toBe(busybox.diffId);
      expect(execFileSync(join(root, 'bin/sh'), ['-c', 'echo hi']).toString()).toBe('hi\n');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('registry with htpasswd', () => {
  const creds = { user: 'berth', password: 's3cret pw' };
  let reg: Registry;
  let img: BuiltImage;

  beforeAll(async () => {
    reg = await startRegistry({ htpasswd: creds });
    img = buildImage({ layers: [await buildLayer([{ path: 'hello', type: 'file', content: 'hi' }])] });
  });
  afterAll(async () => {
    await reg?.stop();
  });

  it('challenges anonymous clients with Basic', async () => {
    const res = await reg.request('/v2/', { auth: null });
    expect(res.status).toBe(401);
    expect(String(res.headers['www-authenticate'])).toMatch(/^Basic realm="berth-test"/);
    await expect(reg.push('auth/img', 'v1', img, null)).rejects.toThrow(/HTTP 401/);
    const wrong = await reg.request('/v2/', { auth: { ...creds, password: 'nope' } });
    expect(wrong.status).toBe(401);
  });

  it('lets the right credentials in and push', async () => {
    expect((await reg.request('/v2/', { auth: creds })).status).toBe(200);
    await reg.push('auth/img', 'v1', img, creds);
    const got = await reg.request('/v2/auth/img/manifests/v1', { auth: creds, headers: { accept: img.mediaType } });
    expect(got.status).toBe(200);
    expect(got.body.equals(img.manifestBytes)).toBe(true);
  });
});

describe('registry lifecycle', () => {
  it('stop() kills the process and removes its dir, twice safely', async () => {
    const reg = await startRegistry();
    expect(isAlive(reg.pid)).toBe(true);
    await reg.stop();
    await reg.stop();
    expect(isAlive(reg.pid)).toBe(false);
    expect(existsSync(reg.dir)).toBe(false);
  });

  it('serves TLS with the given certificate', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'berth-tls-'));
    const certFile = join(dir, 'cert.pem');
    const keyFile = join(dir, 'key.pem');
    execFileSync('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', keyFile, '-out', certFile,
    ], { stdio: 'ignore' });
    const reg = await startRegistry({ tls: { certFile, keyFile } });
    try {
      expect(reg.url).toMatch(/^https:/);
      expect((await reg.request('/v2/')).status).toBe(200);
    } finally {
      await reg.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
