// Manifest, index and image-config parsing of hostile registry JSON, and containerd-style platform selection.
import { BerthError } from '../../src/common/errors';
import { parseImageConfig } from '../../src/image/image-config';
import { ImageIndex, MediaType, parseManifest, Platform, selectPlatform } from '../../src/image/manifest';
import { buildImage, buildIndex, buildLayer, buildMultiPlatform, MediaTypes } from '../fixtures/oci-image';

const D = (c: string): string => `sha256:${c.repeat(64)}`;
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function failure(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(BerthError);
    return err as BerthError;
  }
  throw new Error('expected a failure');
}

function image(layers: unknown[], extra: Record<string, unknown> = {}): Buffer {
  return json({
    schemaVersion: 2,
    mediaType: MediaType.ociManifest,
    config: { mediaType: MediaType.ociConfig, digest: D('c'), size: 10 },
    layers,
    ...extra,
  });
}
const layer = (mediaType: string, digest = D('1'), size: unknown = 5): unknown => ({ mediaType, digest, size });

describe('parseManifest', () => {
  it.each(['oci', 'docker'] as const)('parses a %s image manifest built by the fixtures', async (format) => {
    const l = await buildLayer([{ path: 'a', type: 'file', content: 'x' }]);
    const img = buildImage({ layers: [l], format });
    const m = parseManifest(img.manifestBytes, img.mediaType);
    expect(m).toEqual({
      kind: 'image',
      mediaType: img.mediaType,
      config: { mediaType: format === 'oci' ? MediaTypes.ociConfig : MediaTypes.dockerConfig, digest: img.configDigest, size: img.configBytes.length },
      layers: [{ mediaType: img.layers[0]?.mediaType, digest: l.digest, size: l.size, compression: 'gzip' }],
    });
  });

  it.each(['oci', 'docker'] as const)('parses a %s index and keeps each platform', async (format) => {
    const idx = await buildMultiPlatform({ format });
    const m = parseManifest(idx.manifestBytes, idx.mediaType);
    expect(m.kind).toBe('index');
    if (m.kind !== 'index') return;
    expect(m.mediaType).toBe(format === 'oci' ? MediaType.ociIndex : MediaType.dockerManifestList);
    expect(m.manifests.map((e) => e.platform)).toEqual(idx.manifests.map((i) => i.platform));
    expect(m.manifests.map((e) => e.digest)).toEqual(idx.manifests.map((i) => i.manifestDigest));
  });

  it('detects the kind from Content-Type or shape when the body has no mediaType', () => {
    const body = { schemaVersion: 2, config: { mediaType: MediaType.ociConfig, digest: D('c'), size: 1 }, layers: [] };
    expect(parseManifest(json(body), `${MediaType.dockerManifest}; charset=utf-8`).mediaType).toBe(MediaType.dockerManifest);
    expect(parseManifest(json(body), 'application/json').mediaType).toBe(MediaType.ociManifest);
    expect(parseManifest(json({ schemaVersion: 2, manifests: [] })).kind).toBe('index');
  });

  it('knows every supported layer type and its compression', () => {
    const m = parseManifest(
      image([layer(MediaType.ociLayer), layer(MediaType.ociLayerZstd), layer(MediaType.dockerLayerGzip), layer(MediaType.dockerLayer)]),
    );
    expect(m.kind === 'image' && m.layers.map((l) => l.compression)).toEqual(['none', 'zstd', 'gzip', 'none']);
  });

  it.each([
    [MediaType.dockerSchema1, json({ schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] })],
    [MediaType.dockerSchema1Signed, json({ schemaVersion: 1 })],
    ['application/json', json({ schemaVersion: 1, fsLayers: [] })],
  ])('refuses schema 1 (%s)', (type, bytes) => {
    const err = failure(() => parseManifest(bytes, type));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/schema 1 manifests are not supported.*docker\.io deprecated them/);
  });

  it.each([
    ['not JSON', Buffer.from('{'), /not JSON/],
    ['an array', json([]), /not a JSON object/],
    ['schemaVersion 3', json({ schemaVersion: 3, manifests: [] }), /schemaVersion/],
    ['an unknown media type', json({ schemaVersion: 2, mediaType: 'application/vnd.foo+json' }), /unsupported manifest media type/],
    ['an ambiguous body', json({ schemaVersion: 2, manifests: [], layers: [] }), /together/],
    ['a bad layer digest', image([layer(MediaType.ociLayerGzip, 'sha256:xyz')]), /layers\[0\]\.digest/],
    ['a sha512 digest', image([layer(MediaType.ociLayerGzip, `sha512:${'a'.repeat(128)}`)]), /layers\[0\]\.digest/],
    ['a negative size', image([layer(MediaType.ociLayerGzip, D('1'), -1)]), /layers\[0\]\.size/],
    ['a fractional size', image([layer(MediaType.ociLayerGzip, D('1'), 1.5)]), /layers\[0\]\.size/],
    ['a string size', image([layer(MediaType.ociLayerGzip, D('1'), '5')]), /layers\[0\]\.size/],
    ['an unknown layer type', image([layer('application/x-tar')]), /layers\[0\]\.mediaType.*unsupported layer media type/],
    ['no layers array', image([], { layers: 'x' }), /layers: must be an array/],
    ['too many layers', image(Array.from({ length: 1001 }, () => layer(MediaType.ociLayerGzip))), /1001 layers \(limit 1000\)/],
    ['a config without digest', image([], { config: { mediaType: MediaType.ociConfig, size: 1 } }), /config\.digest/],
    ['too many index entries', json({ schemaVersion: 2, manifests: Array.from({ length: 1001 }, () => layer(MediaType.ociManifest)) }), /limit 1000/],
    ['an index entry without digest', json({ schemaVersion: 2, manifests: [{ mediaType: MediaType.ociManifest, size: 1 }] }), /manifests\[0\]\.digest/],
    ['a platform without os', json({ schemaVersion: 2, manifests: [{ ...(layer(MediaType.ociManifest) as object), platform: { architecture: 'amd64' } }] }), /manifests\[0\]\.platform/],
  ])('refuses %s', (_name, bytes, why) => {
    const err = failure(() => parseManifest(bytes, ''));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(why);
  });

  it.each([
    ['application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', /foreign/],
    ['application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', /foreign/],
    ['application/vnd.oci.image.layer.v1.tar+gzip+encrypted', /encrypted/],
  ])('refuses a %s layer clearly', (type, why) => {
    const err = failure(() => parseManifest(image([layer(type)])));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(why);
  });

  it('refuses an artifact that is not a container image', () => {
    const err = failure(() => parseManifest(image([], { config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: D('c'), size: 1 } })));
    expect(err.message).toMatch(/not a container image/);
  });
});

describe('selectPlatform', () => {
  const entry = (p: Platform, c: string, mediaType: string = MediaType.ociManifest): ImageIndex['manifests'][number] => ({
    mediaType, digest: D(c), size: 1, platform: p,
  });
  const index = (...entries: ImageIndex['manifests']): ImageIndex => ({ kind: 'index', mediaType: MediaType.ociIndex, manifests: entries });
  const amd64 = entry({ os: 'linux', architecture: 'amd64' }, '1');
  const arm64 = entry({ os: 'linux', architecture: 'arm64', variant: 'v8' }, '2');
  const armv7 = entry({ os: 'linux', architecture: 'arm', variant: 'v7' }, '3');
  const armv6 = entry({ os: 'linux', architecture: 'arm', variant: 'v6' }, '4');
  const armv5 = entry({ os: 'linux', architecture: 'arm', variant: 'v5' }, '5');
  const windows = entry({ os: 'windows', architecture: 'amd64' }, '6');

  it('picks amd64 exactly, ignoring other OSes and non-image entries', () => {
    const attestation = { mediaType: MediaType.ociManifest, digest: D('9'), size: 1, platform: { os: 'unknown', architecture: 'unknown' } };
    expect(selectPlatform(index(windows, attestation, arm64, amd64), { os: 'linux', architecture: 'amd64' })).toBe(amd64);
    expect(selectPlatform(index(amd64), { os: 'linux', architecture: 'x86_64' })).toBe(amd64);
  });

  it('treats arm64 without a variant as v8', () => {
    expect(selectPlatform(index(amd64, arm64), { os: 'linux', architecture: 'arm64' })).toBe(arm64);
    const plain = entry({ os: 'linux', architecture: 'arm64' }, '7');
    expect(selectPlatform(index(plain), { os: 'linux', architecture: 'aarch64', variant: 'v8' })).toBe(plain);
  });

  it('prefers arm v7 and falls back v7 → v6 → v5, never upward', () => {
    const want = { os: 'linux', architecture: 'arm', variant: 'v7' };
    expect(selectPlatform(index(armv5, armv6, armv7), want)).toBe(armv7);
    expect(selectPlatform(index(armv5, armv6), want)).toBe(armv6);
    expect(selectPlatform(index(armv5), { os: 'linux', architecture: 'arm' })).toBe(armv5);
    expect(() => selectPlatform(index(armv7), { os: 'linux', architecture: 'arm', variant: 'v6' })).toThrow(/no manifest for linux\/arm\/v6/);
  });

  it('says what is available when nothing matches', () => {
    const err = failure(() => selectPlatform(index(arm64, armv7, windows), { os: 'linux', architecture: 'amd64' }, 'docker.io/library/x:1'));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('no manifest for linux/amd64 in index docker.io/library/x:1 (available: linux/arm64, linux/arm/v7, windows/amd64)');
  });

  it('selects the host platform from a fixture index by default', async () => {
    const idx = await buildMultiPlatform();
    const parsed = parseManifest(idx.manifestBytes, idx.mediaType);
    if (parsed.kind !== 'index') throw new Error('not an index');
    const want = idx.manifests.find((m) => m.platform.architecture === (process.arch === 'x64' ? 'amd64' : process.arch));
    if (want) expect(selectPlatform(parsed).digest).toBe(want.manifestDigest);
    expect(buildIndex([]).kind).toBe('index');
  });
});

describe('parseImageConfig', () => {
  const base = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [D('a')] } };

  it('parses a fixture config', async () => {
    const l = await buildLayer([{ path: 'a', type: 'file', content: 'x' }]);
    const img = buildImage({
      layers: [l],
      config: { User: 'app', Env: ['A=1'], Entrypoint: ['/bin/sh'], Cmd: ['-c', 'x'], WorkingDir: '/w', Labels: { k: 'v' }, StopSignal: 'SIGINT', ExposedPorts: { '80/tcp': {} } },
    });
    const c = parseImageConfig(img.configBytes);
    expect(c.rootfs).toEqual({ type: 'layers', diff_ids: [l.diffId] });
    expect(c.config).toEqual({ User: 'app', Env: ['A=1'], Entrypoint: ['/bin/sh'], Cmd: ['-c', 'x'], WorkingDir: '/w', Labels: { k: 'v' }, StopSignal: 'SIGINT', ExposedPorts: { '80/tcp': {} } });
    expect(c.history).toHaveLength(1);
  });

  it("accepts Docker's nulls as absent", () => {
    const c = parseImageConfig(json({ ...base, config: { Cmd: null, Entrypoint: null, Labels: null, Volumes: { '/data': {} } }, history: null }));
    expect(c.config).toEqual({ Volumes: { '/data': {} } });
    expect(c.history).toEqual([]);
  });

  it.each([
    [{ ...base, architecture: 1 }, /architecture/],
    [{ ...base, os: '' }, /os/],
    [{ ...base, rootfs: { type: 'tar', diff_ids: [] } }, /rootfs\.type/],
    [{ ...base, rootfs: { type: 'layers', diff_ids: ['sha256:bad'] } }, /rootfs\.diff_ids\[0\]/],
    [{ ...base, rootfs: { type: 'layers' } }, /rootfs\.diff_ids/],
    [{ ...base, config: { Env: 'A=1' } }, /config\.Env/],
    [{ ...base, config: { Cmd: ['a', 2] } }, /config\.Cmd\[1\]/],
    [{ ...base, config: { Entrypoint: ['a\0b'] } }, /config\.Entrypoint\[0\].*NUL/],
    [{ ...base, config: { User: 0 } }, /config\.User/],
    [{ ...base, config: { Labels: { a: 1 } } }, /config\.Labels/],
    [{ ...base, config: { ExposedPorts: ['80'] } }, /config\.ExposedPorts/],
    [{ ...base, config: [] }, /config: must be an object/],
    [{ ...base, history: [{ empty_layer: 'yes' }] }, /history\[0\]\.empty_layer/],
  ])('refuses %j', (doc, why) => {
    const err = failure(() => parseImageConfig(json(doc)));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/^invalid image config: /);
    expect(err.message).toMatch(why);
  });

  it('does not let a "__proto__" label change the prototype', () => {
    const c = parseImageConfig(Buffer.from(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{"Labels":{"__proto__":"x"}}}`));
    expect(Object.getPrototypeOf(c.config.Labels)).toBe(Object.prototype);
    expect(Object.keys(c.config.Labels ?? {})).toEqual(['__proto__']);
  });
});
