// HPACK (RFC 7541) for the HTTP/2 server transport. The decoder is full RFC 7541 with a dynamic table, and
// treats its input as untrusted: every malformed block throws HpackError (the connection answers it with
// COMPRESSION_ERROR), and the decoded header list is bounded while it is decoded, so a small block of dynamic-table
// references cannot expand into a huge list. The encoder is stateless: static-table matches and literals "without
// indexing", so the peer's SETTINGS_HEADER_TABLE_SIZE never matters to it. Names and values are latin1 strings,
// one char per octet.
import { HpackError, huffmanDecode } from './huffman';

export { HpackError } from './huffman';

/** RFC 7541 Appendix A: the static table; entry i here has HPACK index i + 1. */
export const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''], [':method', 'GET'], [':method', 'POST'], [':path', '/'], [':path', '/index.html'],
  [':scheme', 'http'], [':scheme', 'https'], [':status', '200'], [':status', '204'], [':status', '206'],
  [':status', '304'], [':status', '400'], [':status', '404'], [':status', '500'], ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'], ['accept-language', ''], ['accept-ranges', ''], ['accept', ''],
  ['access-control-allow-origin', ''], ['age', ''], ['allow', ''], ['authorization', ''], ['cache-control', ''],
  ['content-disposition', ''], ['content-encoding', ''], ['content-language', ''], ['content-length', ''],
  ['content-location', ''], ['content-range', ''], ['content-type', ''], ['cookie', ''], ['date', ''], ['etag', ''],
  ['expect', ''], ['expires', ''], ['from', ''], ['host', ''], ['if-match', ''], ['if-modified-since', ''],
  ['if-none-match', ''], ['if-range', ''], ['if-unmodified-since', ''], ['last-modified', ''], ['link', ''],
  ['location', ''], ['max-forwards', ''], ['proxy-authenticate', ''], ['proxy-authorization', ''], ['range', ''],
  ['referer', ''], ['refresh', ''], ['retry-after', ''], ['server', ''], ['set-cookie', ''],
  ['strict-transport-security', ''], ['transfer-encoding', ''], ['user-agent', ''], ['vary', ''], ['via', ''],
  ['www-authenticate', ''],
];
const STATIC_COUNT = STATIC_TABLE.length;
// Indexed by HPACK index (slot 0 unused), for the hot paths.
const STATIC_NAMES = ['', ...STATIC_TABLE.map(([name]) => name)];
const STATIC_VALUES = ['', ...STATIC_TABLE.map(([, value]) => value)];

/** An entry's cost beyond its octets: in the dynamic table (RFC 7541 §4.1) and the header list (RFC 9113 §6.5.2). */
export const ENTRY_OVERHEAD = 32;
/** The largest integer the decoder accepts (an index, string length or table size). */
const MAX_INTEGER = 0x7fffffff;
/** Continuation octets after the prefix: 5 carry 35 bits, enough for MAX_INTEGER; more is only zero padding. */
const MAX_CONTINUATION = 5;

export class HpackDecoder {
  // The dynamic table, a ring: the newest entry is at head - 1. A table of maxTableSize octets never holds more
  // than maxTableSize / 32 entries, so the ring never wraps onto a live entry.
  private readonly names: string[];
  private readonly values: string[];
  private head = 0;
  private count = 0;
  private size = 0;
  /** The table's current maximum size, which dynamic table size updates set (at most maxTableSize). */
  private limit: number;
  // Decoding state, in fields so that helpers return plain values: the read position, and lookup()'s result.
  private pos = 0;
  private foundName = '';
  private foundValue = '';

  /** maxTableSize: the SETTINGS_HEADER_TABLE_SIZE we advertise, the bound on the peer's size updates. */
  constructor(readonly maxTableSize = 4096) {
    if (!Number.isInteger(maxTableSize) || maxTableSize < 0 || maxTableSize > MAX_INTEGER) {
      throw new RangeError(`bad HPACK table size ${maxTableSize}`);
    }
    const slots = Math.floor(maxTableSize / ENTRY_OVERHEAD);
    this.names = new Array<string>(slots).fill('');
    this.values = new Array<string>(slots).fill('');
    this.limit = maxTableSize;
  }

  /** The dynamic table's size in octets (RFC 7541 §4.1). */
  get tableSize(): number {
    return this.size;
  }

  /** The dynamic table's current maximum size, as last set by the peer (initially maxTableSize). */
  get tableLimit(): number {
    return this.limit;
  }

  /** The dynamic table's entries, newest (HPACK index 62) first. For tests and debugging. */
  tableEntries(): Array<[string, string]> {
    const entries: Array<[string, string]> = [];
    for (let i = 0; i < this.count; i++) {
      this.lookup(STATIC_COUNT + 1 + i);
      entries.push([this.foundName, this.foundValue]);
    }
    return entries;
  }

  /**
   * Decodes one complete header block. Throws HpackError on malformed input; after that the table's state is
   * undefined and the connection must end (COMPRESSION_ERROR). A list whose size (octets + 32 per field) exceeds
   * maxListSize throws HpackListTooLarge, but only once the whole block is decoded (fields past the limit are
   * dropped, not kept): the table then matches the peer's, and only that request need be refused. The work stays
   * bounded by the block's length, which the caller bounds.
   */
  decode(block: Buffer, maxListSize: number): Array<[string, string]> {
    const headers: Array<[string, string]> = [];
    const end = block.length;
    let listSize = 0;
    let tooLarge = false;
    let fields = 0;
    this.pos = 0;
    while (this.pos < end) {
      const first = block[this.pos] as number;
      let name: string;
      let value: string;
      if (first >= 0x80) {
        // 1xxxxxxx: indexed header field (§6.1).
        this.lookup(this.integer(block, 0x7f));
        name = this.foundName;
        value = this.foundValue;
      } else if (first >= 0x40) {
        // 01xxxxxx: literal with incremental indexing (§6.2.1).
        name = this.literalName(block, 0x3f);
        value = this.string(block);
        this.insert(name, value);
      } else if (first >= 0x20) {
        // 001xxxxx: dynamic table size update (§6.3), allowed only at the start of a block (§4.2).
        if (fields > 0) throw new HpackError('dynamic table size update after a header field');
        const size = this.integer(block, 0x1f);
        if (size > this.maxTableSize) {
          throw new HpackError(`dynamic table size update to ${size} exceeds the ${this.maxTableSize} allowed`);
        }
        this.limit = size;
        this.evictTo(size);
        continue;
      } else {
        // 0001xxxx never indexed (§6.2.3), 0000xxxx without indexing (§6.2.2): the same to a decoder that does not
        // forward headers.
        name = this.literalName(block, 0x0f);
        value = this.string(block);
      }
      fields++;
      listSize += name.length + value.length + ENTRY_OVERHEAD;
      if (listSize > maxListSize) tooLarge = true;
      if (!tooLarge) headers.push([name, value]);
    }
    if (tooLarge) throw new HpackListTooLarge(`header list larger than ${maxListSize} octets`);
    return headers;
  }

  /** Reads an integer with an N-bit prefix (§5.1); mask is 2^N - 1. */
  private integer(block: Buffer, mask: number): number {
    let pos = this.pos;
    if (pos >= block.length) throw new HpackError('truncated integer');
    let value = (block[pos++] as number) & mask;
    if (value === mask) {
      let scale = 1;
      for (let n = 1; ; n++) {
        if (pos >= block.length) throw new HpackError('truncated integer');
        const octet = block[pos++] as number;
        value += (octet & 0x7f) * scale;
        if (value > MAX_INTEGER) throw new HpackError('integer overflow');
        if (octet < 0x80) break;
        if (n === MAX_CONTINUATION) throw new HpackError('integer has too many continuation octets');
        scale *= 128;
      }
    }
    this.pos = pos;
    return value;
  }

  /** Reads a string literal (§5.2), raw or Huffman-coded. */
  private string(block: Buffer): string {
    if (this.pos >= block.length) throw new HpackError('truncated string literal');
    const huffman = (block[this.pos] as number) >= 0x80;
    const length = this.integer(block, 0x7f);
    const start = this.pos;
    const stop = start + length;
    if (stop > block.length) throw new HpackError('truncated string literal');
    this.pos = stop;
    return huffman ? huffmanDecode(block, start, stop) : block.toString('latin1', start, stop);
  }

  /** A literal field's name: a table index in the first octet's prefix, or (index 0) a string literal. */
  private literalName(block: Buffer, mask: number): string {
    const index = this.integer(block, mask);
    if (index === 0) return this.string(block);
    this.lookup(index);
    return this.foundName;
  }

  /** Sets foundName and foundValue to the entry at an HPACK index (§2.3.3). */
  private lookup(index: number): void {
    if (index <= STATIC_COUNT) {
      if (index === 0) throw new HpackError('index 0');
      this.foundName = STATIC_NAMES[index] as string;
      this.foundValue = STATIC_VALUES[index] as string;
      return;
    }
    const i = index - STATIC_COUNT - 1;
    if (i >= this.count) throw new HpackError(`index ${index} is past the table's ${STATIC_COUNT + this.count}`);
    let slot = this.head - 1 - i;
    if (slot < 0) slot += this.names.length;
    this.foundName = this.names[slot] as string;
    this.foundValue = this.values[slot] as string;
  }

  /** Adds an entry, evicting the oldest to make room; one larger than the table empties it (§4.4). */
  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.limit) {
      this.evictTo(0);
      return;
    }
    this.evictTo(this.limit - size);
    this.names[this.head] = name;
    this.values[this.head] = value;
    this.head = this.head + 1 === this.names.length ? 0 : this.head + 1;
    this.count++;
    this.size += size;
  }

  /** Evicts the oldest entries until the table's size is at most target (§4.3). */
  private evictTo(target: number): void {
    while (this.size > target) {
      let slot = this.head - this.count;
      if (slot < 0) slot += this.names.length;
      this.size -= (this.names[slot] as string).length + (this.values[slot] as string).length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.count--;
    }
  }
}

/** A header list over the limit, in a block decoded to its end: the table is in sync, the connection can go on. */
export class HpackListTooLarge extends HpackError {}

// The encoder. A name's first static index; entries that share a name are adjacent in the static table.
const STATIC_NAME_INDEX = new Map<string, number>();
for (let i = STATIC_COUNT; i >= 1; i--) STATIC_NAME_INDEX.set(STATIC_NAMES[i] as string, i);

/** The most a field costs beyond its name and value octets: a 2-octet name index or 6-octet name length, and a
 * 6-octet value length (lengths below 2^31). */
const FIELD_OVERHEAD = 14;
// Blocks are written into a reused scratch buffer and copied out; one larger than SCRATCH_MAX gets its own buffer.
const SCRATCH_MAX = 64 * 1024;
let scratch = Buffer.allocUnsafeSlow(4096);

/**
 * Encodes a header list, statelessly (§6.1, §6.2.2): a field that is a static-table entry as its index, any other
 * as a literal without indexing, with the static-table index of its name when there is one. Strings are raw
 * (no Huffman), latin1: a char above U+00FF is written modulo 256, as Buffer's latin1 encoding does.
 */
export function encodeHeaders(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  let bound = 0;
  for (const [name, value] of headers) bound += name.length + value.length + FIELD_OVERHEAD;
  if (bound > scratch.length && bound <= SCRATCH_MAX) scratch = Buffer.allocUnsafeSlow(SCRATCH_MAX);
  const own = bound > scratch.length;
  const buf = own ? Buffer.allocUnsafe(bound) : scratch;
  let pos = 0;
  for (const [name, value] of headers) {
    const index = STATIC_NAME_INDEX.get(name);
    if (index === undefined) {
      buf[pos++] = 0x00;
      pos = writeString(buf, pos, name);
    } else {
      let full = 0;
      for (let i = index; i <= STATIC_COUNT && STATIC_NAMES[i] === name; i++) {
        if (STATIC_VALUES[i] === value) {
          full = i;
          break;
        }
      }
      if (full !== 0) {
        buf[pos++] = 0x80 | full;
        continue;
      }
      pos = writeInteger(buf, pos, index, 0x0f, 0x00);
    }
    pos = writeString(buf, pos, value);
  }
  if (own) return buf.subarray(0, pos);
  const out = Buffer.allocUnsafe(pos);
  buf.copy(out, 0, 0, pos);
  return out;
}

/**
 * Writes an integer with an N-bit prefix (§5.1) at pos, the first octet's other bits set from flags; mask is
 * 2^N - 1. Returns the position after it.
 */
function writeInteger(buf: Buffer, pos: number, value: number, mask: number, flags: number): number {
  if (value < mask) {
    buf[pos++] = flags | value;
    return pos;
  }
  buf[pos++] = flags | mask;
  let rest = value - mask;
  while (rest >= 0x80) {
    buf[pos++] = (rest % 0x80) | 0x80;
    rest = Math.floor(rest / 0x80);
  }
  buf[pos++] = rest;
  return pos;
}

/** Writes a raw string literal (§5.2, H = 0) at pos; returns the position after it. */
function writeString(buf: Buffer, pos: number, s: string): number {
  pos = writeInteger(buf, pos, s.length, 0x7f, 0x00);
  // A short string is quicker copied here than through Buffer#write's native call.
  if (s.length <= 32) {
    for (let i = 0; i < s.length; i++) buf[pos + i] = s.charCodeAt(i);
    return pos + s.length;
  }
  return pos + buf.write(s, pos, 'latin1');
}
