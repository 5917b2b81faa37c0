// The registry client against a real docker-registry (test/fixtures/registry.ts), with small Node servers in front
// of it for what the real one will not do: tampered or truncated bytes, bearer tokens, redirects, 503s, hangs.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, copyFileSync, readFileSync } from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { BerthError } from '../../src/common/errors';
import { parseImageConfig } from '../../src/image/image-config';
import { MediaType, parseManifest, selectPlatform } from '../../src/image/manifest';
import { parseReference } from '../../src/image/reference';
import { RegistryClient } from '../../src/image/registry-client';
import { resolveEndpoints } from '../../src/image/registry-endpoints';
import type { ImageConfig, RegistryConfig } from '../../src/server/config-schema';
import { createLogger } from '../../src/server/log';
import { BuiltImage, BuiltIndex, BuiltLayer, buildImage, buildMultiPlatform, busyboxLayer } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';

const MiB = 1024 * 1024;
const ALICE = { username: 'alice', password: 'pw-Secret-123' };
const TOKEN = 'tok-abc.def';

let certsDir: string;
const clients: RegistryClient[] = [];
const logLines: string[] = [];

function config(over: Partial<ImageConfig> = {}): ImageConfig {
  return {
    pull_parallelism: 3, pull_progress_timeout_seconds: 60, max_manifest_bytes: 4 * MiB, max_config_bytes: 8 * MiB,
    max_layer_bytes: 1024 * MiB, max_layer_entries: 100_000, request_timeout_seconds: 5, retries: 1, pinned_images: [],
    registries_config_dir: certsDir, registries: {}, ...over,
  };
}
const reg = (over: Partial<RegistryConfig>): RegistryConfig => ({ mirrors: [], insecure: false, blocked: false, ...over });

function client(over: Partial<ImageConfig> = {}): RegistryClient {
  const sink = new Writable({ write: (chunk: Buffer, _e, cb) => (logLines.push(chunk.toString()), cb()) });
  const c = new RegistryClient(() => config(over), createLogger('debug', sink));
  clients.push(c);
  return c;
}

async function failure(p: Promise<unknown>, code: string, message?: RegExp): Promise<BerthError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(BerthError);
  expect((err as BerthError).code).toBe(code);
  if (message) expect((err as BerthError).message).toMatch(message);
  return err as BerthError;
}

async function readAll(s: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

interface Stub {
  host: string;
  close(): Promise<void>;
}
async function listen(server: net.Server): Promise<Stub> {
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => (sockets.add(s), s.on('close', () => sockets.delete(s))));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
const stub = (handler: http.RequestListener): Promise<Stub> => listen(http.createServer(handler));

/** Forwards a GET to the real registry (anonymously) and streams the answer back. */
function proxyTo(target: Registry, req: http.IncomingMessage, res: http.ServerResponse): void {
  const up = http.request(new URL(req.url ?? '/', target.url), { headers: req.headers.accept ? { accept: req.headers.accept } : {} }, (r) => {
    res.writeHead(r.statusCode ?? 502, r.headers);
    r.pipe(res);
  });
  up.on('error', () => res.destroy());
  up.end();
}

async function closedPort(): Promise<string> {
  const s = await listen(net.createServer());
  await s.close();
  return s.host;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}
function makeCerts(dir: string): void {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(dir, 'req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=berth-test-ca');
  for (const [name, usage, cn] of [['server', 'serverAuth', '127.0.0.1'], ['client', 'clientAuth', 'berth-client']] as const) {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=${usage}\n`);
    openssl(dir, 'req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
  }
}
function certsFor(host: string, files: Record<string, string>, dir = certsDir): void {
  mkdirSync(join(dir, host), { recursive: true });
  for (const [to, from] of Object.entries(files)) copyFileSync(from, join(dir, host, to));
}

describe('RegistryClient', () => {
  let tmp: string;
  let plain: Registry;
  let busybox: BuiltLayer;
  let oci: BuiltImage;
  let docker: BuiltImage;
  let multi: BuiltIndex;
  const stubs: Stub[] = [];
  const track = async (s: Promise<Stub>): Promise<Stub> => {
    const st = await s;
    stubs.push(st);
    return st;
  };

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'berth-regclient-'));
    certsDir = join(tmp, 'certs.d');
    mkdirSync(certsDir);
    [plain, busybox] = await Promise.all([startRegistry(), busyboxLayer()]);
    oci = buildImage({ layers: [busybox], config: { Cmd: ['/bin/sh'] } });
    docker = buildImage({ layers: [busybox], format: 'docker' });
    multi = await buildMultiPlatform();
    await plain.push('test/oci', 'v1', oci);
    await plain.push('test/docker', 'v1', docker);
    await plain.push('test/multi', 'v1', multi);
  });
  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });
  afterAll(async () => {
    await Promise.all(stubs.map((s) => s.close()));
    await plain?.stop();
    rmSync(tmp, { recursive: true, force: true });
  });

  const ref = (text: string): ReturnType<typeof parseReference> => parseReference(text);

  describe('manifests and blobs', () => {
    it.each([
      ['oci', () => oci],
      ['docker', () => docker],
    ])('fetches a %s manifest by tag and by digest', async (format, img) => {
      const c = client();
      const byTag = await c.getManifest(ref(`${plain.host}/test/${format}:v1`));
      expect(byTag).toEqual({ bytes: img().manifestBytes, mediaType: img().mediaType, digest: img().manifestDigest });
      const byDigest = await c.getManifest(ref(`${plain.host}/test/${format}@${img().manifestDigest}`));
      expect(byDigest.bytes.equals(img().manifestBytes)).toBe(true);
      expect(byDigest.digest).toBe(img().manifestDigest);
    });

    it('fetches a 3-platform index, then the arm64 child and its config', async () => {
      const c = client();
      const r = ref(`${plain.host}/test/multi:v1`);
      const top = await c.getManifest(r);
      expect(top.mediaType).toBe(MediaType.ociIndex);
      expect(top.digest).toBe(multi.manifestDigest);
      const index = parseManifest(top.bytes, top.mediaType);
      if (index.kind !== 'index') throw new Error('not an index');
      expect(index.manifests).toHaveLength(3);
      const entry = selectPlatform(index, { os: 'linux', architecture: 'arm64' });
      const child = await c.getManifest({ ...r, tag: undefined, digest: entry.digest });
      const manifest = parseManifest(child.bytes, child.mediaType);
      if (manifest.kind !== 'image') throw new Error('not an image');
      const cfg = parseImageConfig(await c.getBlobBuffer(r, manifest.config.digest, MiB));
      expect(cfg.architecture).toBe('arm64');
    });

    it('streams a blob through the verifier', async () => {
      const c = client();
      const r = ref(`${plain.host}/test/oci:v1`);
      const blob = await c.openBlob(r, busybox.digest, busybox.size);
      expect(blob.size).toBe(busybox.size);
      expect((await readAll(blob.stream)).equals(busybox.bytes)).toBe(true);
      const unsized = await c.openBlob(r, busybox.digest);
      expect(unsized.size).toBe(busybox.size);
      expect((await readAll(unsized.stream)).length).toBe(busybox.size);
      expect((await c.getBlobBuffer(r, oci.configDigest, MiB)).equals(oci.configBytes)).toBe(true);
    });

    it('maps 404 to NOT_FOUND naming the reference and the registry', async () => {
      const c = client();
      await failure(c.getManifest(ref(`${plain.host}/test/oci:nope`)), 'NOT_FOUND', new RegExp(`image ${plain.host}/test/oci:nope not found in registry ${plain.host}`));
      await failure(c.openBlob(ref(`${plain.host}/test/oci`), `sha256:${'0'.repeat(64)}`), 'NOT_FOUND', /blob sha256:0+ of .* not found/);
    });

    it('refuses an oversized manifest (Content-Length upfront, or while reading)', async () => {
      await failure(client({ max_manifest_bytes: 100 }).getManifest(ref(`${plain.host}/test/oci:v1`)), 'RESOURCE_EXHAUSTED', /exceeds 100 bytes/);
      const chunked = await track(stub((_req, res) => {
        res.writeHead(200, { 'content-type': MediaType.ociManifest });
        res.end(Buffer.alloc(10_000, 0x20));
      }));
      await failure(client({ max_manifest_bytes: 2048 }).getManifest(ref(`${chunked.host}/x:1`)), 'RESOURCE_EXHAUSTED', /exceeds 2048 bytes/);
      await failure(client().getBlobBuffer(ref(`${plain.host}/test/oci`), busybox.digest, 1000), 'RESOURCE_EXHAUSTED');
    });

    it('refuses a bad digest argument before any request', async () => {
      await failure(client().openBlob(ref(`${plain.host}/test/oci`), 'sha256:../../x'), 'INVALID_ARGUMENT');
    });
  });

  describe('hostile registry', () => {
    let evil: Stub;
    beforeAll(async () => {
      const flipped = Buffer.from(busybox.bytes);
      flipped[100] = (flipped[100] ?? 0) ^ 0xff;
      evil = await track(stub((req, res) => {
        const url = req.url ?? '';
        if (url === '/v2/evil/x/manifests/v1') {
          res.writeHead(200, { 'content-type': MediaType.ociManifest, 'docker-content-digest': oci.manifestDigest });
          return res.end(Buffer.concat([oci.manifestBytes, Buffer.from(' ')]));
        }
        if (url === `/v2/evil/x/manifests/${oci.manifestDigest}`) {
          res.writeHead(200, { 'content-type': MediaType.ociManifest });
          return res.end(docker.manifestBytes);
        }
        if (url === `/v2/evil/x/blobs/${busybox.digest}`) {
          res.writeHead(200, { 'content-length': flipped.length });
          return res.end(flipped);
        }
        if (url === `/v2/evil/short/blobs/${busybox.digest}`) {
          res.writeHead(200, { 'content-length': busybox.size });
          res.write(busybox.bytes.subarray(0, 1000));
          return setTimeout(() => res.socket?.destroy(), 50);
        }
        if (url === `/v2/evil/slow/blobs/${busybox.digest}`) {
          res.writeHead(200, { 'content-length': busybox.size });
          return void res.write(busybox.bytes.subarray(0, 1000)); // and then nothing
        }
        if (url === `/v2/evil/long/blobs/${busybox.digest}`) {
          res.writeHead(200); // chunked: no length to refuse upfront
          return res.end(Buffer.concat([busybox.bytes, Buffer.from('more')]));
        }
        res.writeHead(404).end();
      }));
    });

    it('detects a manifest whose bytes do not match the digest asked for or the one announced', async () => {
      const c = client();
      await failure(c.getManifest(ref(`${evil.host}/evil/x@${oci.manifestDigest}`)), 'DATA_LOSS', /digest mismatch/);
      await failure(c.getManifest(ref(`${evil.host}/evil/x:v1`)), 'DATA_LOSS', /Docker-Content-Digest/);
    });

    it('fails a tampered blob stream at the end instead of ending cleanly', async () => {
      const c = client();
      const blob = await c.openBlob(ref(`${evil.host}/evil/x`), busybox.digest, busybox.size);
      await failure(readAll(blob.stream), 'DATA_LOSS', new RegExp(`blob ${busybox.digest} digest mismatch`));
      await failure(c.getBlobBuffer(ref(`${evil.host}/evil/x`), busybox.digest, 64 * MiB), 'DATA_LOSS', /digest mismatch/);
    });

    it('reports a truncated blob as DATA_LOSS with the byte counts', async () => {
      const blob = await client().openBlob(ref(`${evil.host}/evil/short`), busybox.digest, busybox.size);
      await failure(readAll(blob.stream), 'DATA_LOSS', new RegExp(`truncated: got 1000 of ${busybox.size} bytes`));
    });

    it('ends a stalled blob stream when the signal aborts', async () => {
      const ac = new AbortController();
      const blob = await client().openBlob(ref(`${evil.host}/evil/slow`), busybox.digest, busybox.size, { signal: ac.signal });
      setTimeout(() => ac.abort(), 100);
      await failure(readAll(blob.stream), 'CANCELLED', /download of blob .* cancelled/);
    });

    it('stops a blob longer than the manifest says', async () => {
      const blob = await client().openBlob(ref(`${evil.host}/evil/long`), busybox.digest, busybox.size);
      await failure(readAll(blob.stream), 'DATA_LOSS', /longer than the expected/);
      await failure(client().openBlob(ref(`${plain.host}/test/oci`), busybox.digest, busybox.size - 1), 'DATA_LOSS', /the manifest says/);
    });
  });

  describe('authentication', () => {
    let priv: Registry;
    beforeAll(async () => {
      priv = await startRegistry({ htpasswd: { user: ALICE.username, password: ALICE.password } });
      await priv.push('test/private', 'v1', oci);
    });
    afterAll(async () => priv?.stop());

    it('sends basic credentials after the challenge, in either CRI form', async () => {
      const r = ref(`${priv.host}/test/private:v1`);
      expect((await client().getManifest(r, { auth: ALICE })).digest).toBe(oci.manifestDigest);
      const auth = Buffer.from(`${ALICE.username}:${ALICE.password}`).toString('base64');
      const c = client();
      expect((await c.getManifest(r, { auth: { auth } })).digest).toBe(oci.manifestDigest);
      expect((await readAll((await c.openBlob(r, busybox.digest, busybox.size, { auth: { auth } })).stream)).length).toBe(busybox.size);
    });

    it('names the registry when credentials are wrong or missing, never the password', async () => {
      const r = ref(`${priv.host}/test/private:v1`);
      const err = await failure(
        client().getManifest(r, { auth: { username: 'alice', password: 'wrong-pw' } }),
        'UNAUTHENTICATED',
        new RegExp(`registry ${priv.host} refused the credentials for ${priv.host}/test/private`),
      );
      expect(err.message).not.toMatch(/wrong-pw/);
      await failure(client().getManifest(r), 'UNAUTHENTICATED', /requires authentication/);
    });

    describe('bearer tokens', () => {
      let tokenServer: Stub;
      let front: Stub;
      const fetches: { method: string; url: string; authorization?: string; body: string }[] = [];
      beforeAll(async () => {
        await plain.push('test/bearer', 'v1', oci);
        const basic = `Basic ${Buffer.from(`${ALICE.username}:${ALICE.password}`).toString('base64')}`;
        tokenServer = await track(stub((req, res) => {
          let body = '';
          req.on('data', (c: Buffer) => (body += c.toString()));
          req.on('end', () => {
            fetches.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body });
            const form = new URLSearchParams(body);
            const ok = req.method === 'POST' ? form.get('refresh_token') === 'refresh-xyz' : req.headers.authorization === basic;
            if (!ok) return void res.writeHead(401).end();
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON.stringify(req.method === 'POST' ? { access_token: TOKEN, expires_in: 300 } : { token: TOKEN, expires_in: 300 }));
          });
        }));
        front = await track(stub((req, res) => {
          if (req.headers.authorization === `Bearer ${TOKEN}`) return proxyTo(plain, req, res);
          res.writeHead(401, {
            'www-authenticate': `Bearer realm="http://${tokenServer.host}/token",service="test",scope="repository:test/bearer:pull"`,
          });
          res.end('{"errors":[{"code":"UNAUTHORIZED"}]}');
        }));
      });
      beforeEach(() => void fetches.splice(0));

      it('fetches a token once and reuses it from the cache', async () => {
        const c = client();
        const r = ref(`${front.host}/test/bearer:v1`);
        expect((await c.getManifest(r, { auth: ALICE })).digest).toBe(oci.manifestDigest);
        expect((await c.getManifest(r, { auth: ALICE })).digest).toBe(oci.manifestDigest);
        expect((await readAll((await c.openBlob(r, busybox.digest, busybox.size, { auth: ALICE })).stream)).length).toBe(busybox.size);
        expect(fetches).toHaveLength(1);
        const q = new URL(fetches[0]?.url ?? '', 'http://x').searchParams;
        expect(q.get('service')).toBe('test');
        expect(q.getAll('scope')).toEqual(['repository:test/bearer:pull']);
      });

      it('refuses wrong credentials at the token server, naming the registry', async () => {
        const err = await failure(
          client().getManifest(ref(`${front.host}/test/bearer:v1`), { auth: { username: 'alice', password: 'nope-pw' } }),
          'UNAUTHENTICATED',
          new RegExp(`registry ${front.host} refused the credentials`),
        );
        expect(err.message).not.toMatch(/nope-pw/);
      });

      it('uses a registry_token directly and exchanges an identity_token by POST', async () => {
        const r = ref(`${front.host}/test/bearer:v1`);
        expect((await client().getManifest(r, { auth: { registry_token: TOKEN } })).digest).toBe(oci.manifestDigest);
        expect(fetches).toHaveLength(0);
        expect((await client().getManifest(r, { auth: { identity_token: 'refresh-xyz' } })).digest).toBe(oci.manifestDigest);
        expect(fetches.map((f) => f.method)).toEqual(['POST']);
        expect(new URLSearchParams(fetches[0]?.body).get('grant_type')).toBe('refresh_token');
        await failure(client().getManifest(r, { auth: { registry_token: 'stale' } }), 'UNAUTHENTICATED', /refused the credentials/);
      });
    });
  });

  describe('endpoints', () => {
    it('uses a mirror when the registry is down, and falls back to the registry when the mirror is', async () => {
      const down = await closedPort();
      const r = ref(`${down}/test/oci:v1`);
      for (const mirror of [plain.host, `http://${plain.host}`, `http://${plain.host}/v2`]) {
        const c = client({ registries: { [down]: reg({ mirrors: [mirror] }) } });
        expect((await c.getManifest(r)).digest).toBe(oci.manifestDigest);
        expect((await readAll((await c.openBlob(r, busybox.digest, busybox.size)).stream)).length).toBe(busybox.size);
      }
      logLines.splice(0);
      const empty = await track(stub((_req, res) => void res.writeHead(404).end()));
      const c = client({ registries: { [plain.host]: reg({ mirrors: [down, empty.host] }) } });
      expect((await c.getManifest(ref(`${plain.host}/test/oci:v1`))).digest).toBe(oci.manifestDigest);
      expect(logLines.join('')).toMatch(new RegExp(`"endpoint":"mirror ${down}".*trying the next`));
    });

    it('names every endpoint and why when all fail', async () => {
      const [down1, down2] = [await closedPort(), await closedPort()];
      const hang = await track(listen(net.createServer(() => undefined)));
      const c = client({ request_timeout_seconds: 1, retries: 0, registries: { [down1]: reg({ mirrors: [`http://${down2}`, hang.host] }) } });
      const err = await failure(c.getManifest(ref(`${down1}/test/oci:v1`)), 'UNAVAILABLE', /every endpoint failed \(3 tried\)/);
      expect(err.message).toContain(`mirror http://${down2}: http://${down2}/v2/test/oci/manifests/v1: connect ECONNREFUSED`);
      expect(err.message).toContain(`mirror ${hang.host}: `);
      expect(err.message).toContain('no response within 1 s');
      expect(err.message).toContain(`; ${down1}: `);
    });

    it('refuses a blocked registry', async () => {
      const c = client({ registries: { [plain.host]: reg({ blocked: true }) } });
      await failure(c.getManifest(ref(`${plain.host}/test/oci:v1`)), 'PERMISSION_DENIED', /blocked by configuration/);
    });

    it('allows plain http for insecure and localhost hosts only', async () => {
      expect((await client({ registries: { [plain.host]: reg({ insecure: true }) } }).getManifest(ref(`${plain.host}/test/oci:v1`))).digest).toBe(oci.manifestDigest);
      const cfg = config({ registries: { 'insecure.example': reg({ insecure: true }), 'docker.io': reg({ mirrors: ['https://m.example/prefix'] }) } });
      expect(resolveEndpoints('registry.example', cfg).map((e) => e.schemes)).toEqual([['https']]);
      expect(resolveEndpoints('insecure.example', cfg).map((e) => [e.schemes, e.skipVerify])).toEqual([[['https', 'http'], true]]);
      expect(resolveEndpoints('localhost:5000', cfg).map((e) => e.schemes)).toEqual([['https', 'http']]);
      expect(resolveEndpoints('docker.io', cfg).map((e) => `${e.schemes.join('+')}://${e.host}${e.apiRoot}`)).toEqual([
        'https://m.example/prefix/v2',
        'https://registry-1.docker.io/v2',
      ]);
    });

    it('retries a 503 with backoff, then gives up after image.retries', async () => {
      let calls = 0;
      let failFirst = 1;
      const flaky = await track(stub((req, res) => {
        if (!req.url?.includes('/manifests/')) return proxyTo(plain, req, res);
        calls++;
        if (calls <= failFirst) return void res.writeHead(503, { 'retry-after': '0' }).end('{"errors":[{"code":"UNAVAILABLE","message":"busy"}]}');
        proxyTo(plain, req, res);
      }));
      expect((await client({ retries: 2 }).getManifest(ref(`${flaky.host}/test/oci:v1`))).digest).toBe(oci.manifestDigest);
      expect(calls).toBe(2);
      [calls, failFirst] = [0, 100];
      await failure(client({ retries: 1 }).getManifest(ref(`${flaky.host}/test/oci:v1`)), 'UNAVAILABLE', /HTTP 503 .*UNAVAILABLE: busy/);
      expect(calls).toBe(2);
    });

    it('follows a blob redirect to another host without the Authorization header', async () => {
      const seen: (string | undefined)[] = [];
      const storage = await track(stub((req, res) => {
        seen.push(req.headers.authorization);
        req.url = (req.url ?? '').replace(/\?.*$/, '');
        proxyTo(plain, req, res);
      }));
      const front = await track(stub((req, res) => {
        if (!req.headers.authorization?.startsWith('Basic ')) return void res.writeHead(401, { 'www-authenticate': 'Basic realm="x"' }).end();
        if (req.url?.includes('/blobs/')) return void res.writeHead(307, { location: `http://${storage.host}${req.url}?X-Amz-Signature=sig-secret` }).end();
        proxyTo(plain, req, res);
      }));
      logLines.splice(0);
      const blob = await client().openBlob(ref(`${front.host}/test/oci`), busybox.digest, busybox.size, { auth: ALICE });
      expect((await readAll(blob.stream)).equals(busybox.bytes)).toBe(true);
      expect(seen).toEqual([undefined]);
      const logs = logLines.join('');
      expect(logs).toContain('registry redirect');
      expect(logs).not.toMatch(/sig-secret|pw-Secret|Basic /);
    });

    it('cancels through the signal', async () => {
      await failure(client().getManifest(ref(`${plain.host}/test/oci:v1`), { signal: AbortSignal.abort() }), 'CANCELLED');
      const hang = await track(listen(net.createServer(() => undefined)));
      const started = Date.now();
      await failure(client().getManifest(ref(`${hang.host}/x:1`), { signal: AbortSignal.timeout(200) }), 'CANCELLED');
      expect(Date.now() - started).toBeLessThan(3000);
      // A pull watchdog aborts with its own reason, which is what the caller sees.
      const watchdog = new AbortController();
      watchdog.abort(new BerthError('DEADLINE_EXCEEDED', 'pull made no progress'));
      await failure(client().getManifest(ref(`${plain.host}/test/oci:v1`), { signal: watchdog.signal }), 'DEADLINE_EXCEEDED', /no progress/);
    });
  });

  describe('TLS', () => {
    let tls: Registry;
    let mtls: Stub;
    let pki: string;
    beforeAll(async () => {
      pki = join(tmp, 'pki');
      mkdirSync(pki);
      makeCerts(pki);
      tls = await startRegistry({ tls: { certFile: join(pki, 'server.crt'), keyFile: join(pki, 'server.key'), caFile: join(pki, 'ca.crt') } });
      await tls.push('test/tls', 'v1', oci);
      const read = (f: string): Buffer => readFileSync(join(pki, f));
      mtls = await track(listen(https.createServer(
        { key: read('server.key'), cert: read('server.crt'), ca: read('ca.crt'), requestCert: true, rejectUnauthorized: true },
        (req, res) => proxyTo(plain, req, res),
      )));
    });
    afterAll(async () => tls?.stop());

    it('refuses an untrusted certificate without downgrading to http', async () => {
      const err = await failure(client().getManifest(ref(`${tls.host}/test/tls:v1`)), 'UNAVAILABLE', /certificate not trusted/);
      expect(err.message).not.toMatch(/http:\/\//);
    });

    it('trusts a CA from certs.d, or any certificate when the host is insecure', async () => {
      const r = ref(`${tls.host}/test/tls:v1`);
      expect((await client({ registries: { [tls.host]: reg({ insecure: true }) } }).getManifest(r)).digest).toBe(oci.manifestDigest);
      certsFor(tls.host, { 'ca.crt': join(pki, 'ca.crt') });
      const c = client();
      expect((await c.getManifest(r)).digest).toBe(oci.manifestDigest);
      expect((await readAll((await c.openBlob(r, busybox.digest, busybox.size)).stream)).length).toBe(busybox.size);
    });

    it('presents a client certificate from certs.d', async () => {
      const r = ref(`${mtls.host}/test/oci:v1`);
      const caOnly = join(tmp, 'certs-ca-only');
      certsFor(mtls.host, { 'ca.crt': join(pki, 'ca.crt') }, caOnly);
      await expect(client({ registries_config_dir: caOnly, retries: 0 }).getManifest(r)).rejects.toBeInstanceOf(BerthError);
      certsFor(mtls.host, { 'ca.crt': join(pki, 'ca.crt'), 'client.cert': join(pki, 'client.crt'), 'client.key': join(pki, 'client.key') });
      expect((await client().getManifest(r)).digest).toBe(oci.manifestDigest);
    });
  });
});
