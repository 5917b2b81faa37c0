// HPACK's static Huffman code (RFC 7541 §5.2, Appendix B). Decoding is table-driven: the code tree's 256
// internal nodes are the states of a machine that consumes 4 bits at a time (as nghttp2 does). A nibble emits at
// most one symbol, because the shortest code is 5 bits long. The table is built once, at module load.

/** A malformed HPACK header block or Huffman string: the HTTP/2 layer answers it with COMPRESSION_ERROR. */
export class HpackError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HpackError';
  }
}

// RFC 7541 Appendix B: the code of each symbol 0..255 and EOS (256), right-aligned, and its length in bits.
const CODES = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8,
  0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee,
  0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4, 0xffffff5, 0xffffff6,
  0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa,
  0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa,
  0x16, 0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b,
  0x1c, 0x1d, 0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb,
  0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62,
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b,
  0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73,
  0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23,
  0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75,
  0x28, 0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9,
  0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd,
  0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5,
  0x7fffd9, 0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf,
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4,
  0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd,
  0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde,
  0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2,
  0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0,
  0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2,
  0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1,
  0x1ffffed, 0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2,
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec,
  0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb,
  0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb, 0x7ffffe6, 0x3ffffec,
  0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed,
  0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, 0x3fffffff,
];
const LENGTHS = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28,
  28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6,
  6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23,
  23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21,
  23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19,
  22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27,
  27, 27, 27, 26, 30,
];
const EOS = 256;

// A transition entry: bits 0-7 the emitted symbol, bit 8 "a symbol was emitted", bit 9 "EOS was decoded" (an
// error), bit 10 "accepting": the bits read since the last symbol are all 1s and at most 7 of them, so the string
// may end here (§5.2: padding is the most significant bits of EOS, and longer than 7 bits is an error). Bits 16+
// hold the next state times 16, ready to be ORed with the next nibble.
const EMIT = 0x100;
const FAIL = 0x200;
const ACCEPT = 0x400;

function buildDecodeTable(): Uint32Array {
  // The code tree: internal node n has children child[2n] and child[2n+1]; a leaf is stored as ~symbol (< 0).
  const child: number[] = [0, 0];
  const depth: number[] = [0];
  const allOnes: boolean[] = [true];
  for (let sym = 0; sym <= EOS; sym++) {
    const code = CODES[sym] as number;
    const len = LENGTHS[sym] as number;
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      const slot = 2 * node + bit;
      if (i === 0) {
        child[slot] = ~sym;
      } else {
        if (child[slot] === 0) {
          const next = depth.length;
          child.push(0, 0);
          depth.push((depth[node] as number) + 1);
          allOnes.push((allOnes[node] as boolean) && bit === 1);
          child[slot] = next;
        }
        node = child[slot] as number;
      }
    }
  }
  const states = depth.length; // 256: a full binary tree with 257 leaves
  const table = new Uint32Array(states * 16);
  for (let state = 0; state < states; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        const next = child[2 * node + ((nibble >>> i) & 1)] as number;
        if (next >= 0) {
          node = next;
          continue;
        }
        const sym = ~next;
        entry |= sym === EOS ? FAIL : EMIT | sym;
        node = 0;
      }
      const accept = (allOnes[node] as boolean) && (depth[node] as number) <= 7;
      table[state * 16 + nibble] = entry | (accept ? ACCEPT : 0) | ((node * 16) << 16);
    }
  }
  return table;
}

const DECODE = buildDecodeTable();

// Decoded octets go to a reused scratch buffer (a Huffman string decodes to at most 8/5 of its length); one
// that needs more than SCRATCH_MAX gets a buffer of its own, so a single huge string does not pin memory.
const SCRATCH_MAX = 64 * 1024;
let scratch = Buffer.allocUnsafeSlow(1024);

/** Decodes the Huffman-coded octets src[start, end) into a latin1 string (one char per octet). */
export function huffmanDecode(src: Buffer, start = 0, end = src.length): string {
  if (start < 0 || end > src.length || start > end) throw new RangeError(`bad range [${start}, ${end})`);
  const need = Math.ceil(((end - start) * 8) / 5);
  if (need > scratch.length && need <= SCRATCH_MAX) scratch = Buffer.allocUnsafeSlow(SCRATCH_MAX);
  const out = need <= scratch.length ? scratch : Buffer.allocUnsafe(need);
  let n = 0;
  let entry = ACCEPT; // the root: an empty string is valid
  for (let i = start; i < end; i++) {
    const byte = src[i] as number;
    entry = DECODE[(entry >>> 16) | (byte >>> 4)] as number;
    if ((entry & (EMIT | FAIL)) !== 0) {
      if ((entry & FAIL) !== 0) throw new HpackError('Huffman string contains EOS');
      out[n++] = entry & 0xff;
    }
    entry = DECODE[(entry >>> 16) | (byte & 0x0f)] as number;
    if ((entry & (EMIT | FAIL)) !== 0) {
      if ((entry & FAIL) !== 0) throw new HpackError('Huffman string contains EOS');
      out[n++] = entry & 0xff;
    }
  }
  if ((entry & ACCEPT) === 0) throw new HpackError('invalid Huffman padding');
  return out.toString('latin1', 0, n);
}

/** The length in octets of src Huffman-coded. Chars are taken as latin1 octets (code & 0xff, as Buffer does). */
export function huffmanEncodedLength(src: string): number {
  let bits = 0;
  for (let i = 0; i < src.length; i++) bits += LENGTHS[src.charCodeAt(i) & 0xff] as number;
  return Math.ceil(bits / 8);
}

/** Huffman-codes src (latin1 octets, as in huffmanEncodedLength), padded with the most significant bits of EOS. */
export function huffmanEncode(src: string): Buffer {
  const out = Buffer.allocUnsafe(huffmanEncodedLength(src));
  let n = 0;
  // acc holds `bits` pending bits (fewer than 8 between symbols); a code is at most 30 bits, so acc stays below
  // 2^37: exact in a double, but past 32 bits, hence arithmetic rather than shifts.
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < src.length; i++) {
    const sym = src.charCodeAt(i) & 0xff;
    const len = LENGTHS[sym] as number;
    acc = acc * 2 ** len + (CODES[sym] as number);
    bits += len;
    while (bits >= 8) {
      bits -= 8;
      const div = 2 ** bits;
      out[n++] = Math.floor(acc / div) & 0xff;
      acc %= div;
    }
  }
  if (bits > 0) out[n] = ((acc << (8 - bits)) | (0xff >>> bits)) & 0xff;
  return out;
}
