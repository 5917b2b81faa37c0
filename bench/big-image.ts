// A deterministic ~200 MiB, 5-layer gzip image for pull benchmarks, built one layer at a time and pushed as it goes,
// so the benchmark process holds one layer (its tar and its gzip) at most, never the whole image.
//   1  the busybox root (the test fixture's layer)
//   2  60 MiB of incompressible data in 4 big files
//   3  60 MiB of compressible text in 12 files
//   4  10,000 small files of 1–8 KiB in 100 × 10 nested dirs (¾ text, ¼ random)
//   5  a mix: big random and text files, 2,000 small files, symlinks, hard links, odd modes and owners, file
//      whiteouts and an opaque dir over layer 4, a file replacing one of layer 3
import { createCipheriv, createHash } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { BuiltLayer, buildImage, buildLayer, busyboxLayer, LayerEntry } from '../test/fixtures/oci-image';
import type { Registry } from '../test/fixtures/registry';
import { seededRandom } from '../test/helpers/seeded-random';

export interface PushedImage {
  ref: string;
  manifestDigest: string;
  layers: number;
  /** Sum of the gzip layer sizes (what a pull downloads, apart from the manifest and config). */
  compressedBytes: number;
  /** Sum of the uncompressed tar sizes. */
  tarBytes: number;
  /** Sum of regular file contents. */
  fileBytes: number;
  /** Tar entries over all layers. */
  entries: number;
  buildSeconds: number;
}

const MiB = 1024 * 1024;

const prng = seededRandom;

/** Incompressible but reproducible bytes: an AES-256-CTR key stream keyed by `label`. */
function randomBytes(label: string, n: number): Buffer {
  const key = createHash('sha256').update(label).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** Word-list text: compresses about as well as source code or logs (gzip ≈ 3×). */
class TextGen {
  private readonly rng: () => number;
  private readonly vocab: Buffer[];

  constructor(seed: number) {
    this.rng = prng(seed);
    const letters = 'etaoinshrdlcumwfgypbvkjxqz'; // by English frequency, picked with a skew toward the front
    this.vocab = Array.from({ length: 4096 }, () => {
      const len = 2 + Math.floor(this.rng() * 9);
      let w = '';
      for (let i = 0; i < len; i++) w += letters[Math.floor(this.rng() ** 2 * letters.length)] ?? 'e';
      return Buffer.from(w);
    });
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    let o = 0;
    let col = 0;
    while (o < n) {
      const w = this.vocab[Math.floor(this.rng() ** 3 * this.vocab.length)] as Buffer;
      o += w.copy(out, o, 0, Math.min(w.length, n - o));
      col += w.length + 1;
      if (o < n) out[o++] = col > 72 ? 0x0a : 0x20;
      if (col > 72) col = 0;
    }
    return out;
  }
}

const file = (path: string, content: Buffer, extra: Partial<LayerEntry> = {}): LayerEntry => ({ path, type: 'file', content, ...extra });
const dir = (path: string, extra: Partial<LayerEntry> = {}): LayerEntry => ({ path, type: 'dir', ...extra });
const pad = (n: number, w: number): string => String(n).padStart(w, '0');

function layer2(): LayerEntry[] {
  const entries = [dir('opt'), dir('opt/blobs')];
  for (let i = 0; i < 4; i++) entries.push(file(`opt/blobs/blob-${i}.bin`, randomBytes(`layer2/${i}`, 15 * MiB)));
  return entries;
}

function layer3(): LayerEntry[] {
  const text = new TextGen(3);
  const entries = [dir('usr'), dir('usr/share'), dir('usr/share/doc'), dir('usr/share/doc/corpus')];
  for (let i = 0; i < 12; i++) entries.push(file(`usr/share/doc/corpus/text-${pad(i, 2)}.txt`, text.bytes(5 * MiB)));
  return entries;
}

function layer4(): LayerEntry[] {
  const rng = prng(4);
  const text = new TextGen(40);
  const entries = [dir('srv'), dir('srv/small')];
  let n = 0;
  for (let d = 0; d < 100; d++) {
    entries.push(dir(`srv/small/d${pad(d, 2)}`));
    for (let e = 0; e < 10; e++) {
      const sub = `srv/small/d${pad(d, 2)}/e${e}`;
      entries.push(dir(sub));
      for (let f = 0; f < 10; f++, n++) {
        const size = 1024 + Math.floor(rng() * 7 * 1024);
        const content = n % 4 === 3 ? randomBytes(`layer4/${n}`, size) : text.bytes(size);
        entries.push(file(`${sub}/file-${pad(n, 5)}.dat`, content));
      }
    }
  }
  return entries;
}

function layer5(): LayerEntry[] {
  const rng = prng(5);
  const text = new TextGen(50);
  const entries: LayerEntry[] = [dir('opt'), dir('opt/app'), dir('opt/app/lib'), dir('opt/app/data'), dir('opt/app/static')];
  for (let i = 0; i < 8; i++) entries.push(file(`opt/app/lib/libbench-${i}.so.1`, randomBytes(`layer5/lib/${i}`, 1.5 * MiB), { mode: 0o755 }));
  for (let i = 0; i < 8; i++) entries.push({ path: `opt/app/lib/libbench-${i}.so`, type: 'symlink', linkname: `libbench-${i}.so.1` });
  for (let i = 0; i < 10; i++) entries.push(file(`opt/app/data/table-${i}.json`, text.bytes(MiB)));
  for (let d = 0; d < 20; d++) {
    const sub = `opt/app/static/s${pad(d, 2)}`;
    entries.push(dir(sub, d % 5 === 0 ? { mode: 0o700, uid: 1000, gid: 1000 } : {}));
    for (let f = 0; f < 100; f++) {
      const size = 512 + Math.floor(rng() * 3584);
      const content = f % 3 === 0 ? randomBytes(`layer5/static/${d}/${f}`, size) : text.bytes(size);
      entries.push(file(`${sub}/asset-${pad(f, 3)}.bin`, content, f % 7 === 0 ? { uid: 1000, gid: 1000, mode: 0o600 } : {}));
    }
    for (let f = 0; f < 5; f++) entries.push({ path: `${sub}/link-${f}`, type: 'hardlink', linkname: `${sub}/asset-${pad(f, 3)}.bin` });
  }
  for (let i = 0; i < 20; i++) entries.push(file(`opt/app/empty-${i}`, Buffer.alloc(0)));
  entries.push({ path: 'opt/app/current', type: 'symlink', linkname: '/opt/app/lib' });
  // Over layer 4: ten file whiteouts, one opaque dir refilled with new files.
  entries.push(dir('srv'), dir('srv/small'), dir('srv/small/d00'), dir('srv/small/d00/e0'));
  for (let f = 0; f < 10; f++) entries.push(file(`srv/small/d00/e0/.wh.file-${pad(f, 5)}.dat`, Buffer.alloc(0)));
  entries.push(dir('srv/small/d01'), file('srv/small/d01/.wh..wh..opq', Buffer.alloc(0)));
  for (let f = 0; f < 10; f++) entries.push(file(`srv/small/d01/new-${f}.txt`, text.bytes(4096)));
  // Over layer 3: a replaced file.
  entries.push(dir('usr'), dir('usr/share'), dir('usr/share/doc'), dir('usr/share/doc/corpus'));
  entries.push(file('usr/share/doc/corpus/text-00.txt', text.bytes(MiB)));
  return entries;
}

/** Builds the image layer by layer, pushes it as `<registry>/<repo>:<tag>`, and describes what it pushed. */
export async function pushBigImage(registry: Registry, repo = 'bench/pull', tag = 'v1'): Promise<PushedImage> {
  const started = process.hrtime.bigint();
  const makers: Array<() => Promise<BuiltLayer>> = [
    () => busyboxLayer(),
    () => buildLayer(layer2()),
    () => buildLayer(layer3()),
    () => buildLayer(layer4()),
    () => buildLayer(layer5()),
  ];
  const described: BuiltLayer[] = [];
  let compressedBytes = 0;
  let tarBytes = 0;
  let fileBytes = 0;
  let entries = 0;
  for (const make of makers) {
    const built = await make();
    await registry.pushBlob(repo, built.bytes);
    compressedBytes += built.size;
    // The uncompressed size and entry count come from gunzipping once: the builders do not return the tar.
    const stats = tarStats(built.bytes);
    tarBytes += stats.tarBytes;
    fileBytes += stats.fileBytes;
    entries += stats.entries;
    described.push({ ...built, bytes: Buffer.alloc(0) }); // the blob is pushed: keep its descriptor only
  }
  const image = buildImage({ layers: described, config: { Cmd: ['/bin/sh'], Env: ['PATH=/bin'] } });
  await registry.pushBlob(repo, image.configBytes);
  const digest = await registry.pushManifest(repo, tag, image.manifestBytes, image.mediaType);
  if (digest !== image.manifestDigest) throw new Error(`registry stored ${repo}:${tag} as ${digest}, built as ${image.manifestDigest}`);
  return {
    ref: `${registry.host}/${repo}:${tag}`,
    manifestDigest: image.manifestDigest,
    layers: described.length,
    compressedBytes,
    tarBytes,
    fileBytes,
    entries,
    buildSeconds: Number(process.hrtime.bigint() - started) / 1e9,
  };
}

function tarStats(gz: Buffer): { tarBytes: number; fileBytes: number; entries: number } {
  const tarBuf = gunzipSync(gz);
  let fileBytes = 0;
  let entries = 0;
  // Walk the ustar headers (512-byte blocks; size is octal at offset 124, 12 bytes; PAX/GNU records are counted as
  // entries too, which the fixture's tar-stream does not write for these plain names).
  for (let off = 0; off + 512 <= tarBuf.length; ) {
    const header = tarBuf.subarray(off, off + 512);
    if (header.every((b) => b === 0)) break;
    const size = parseInt(header.toString('latin1', 124, 136).replace(/\0.*$/s, '').trim() || '0', 8);
    const type = String.fromCharCode(header[156] ?? 0);
    entries++;
    if (type === '0' || type === '\0') fileBytes += size;
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return { tarBytes: tarBuf.length, fileBytes, entries };
}
