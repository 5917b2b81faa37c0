// HPACK (RFC 7541): the Appendix C examples, Huffman coding, the decoder's limits and errors on hostile input,
// and the stateless encoder.
import { ENTRY_OVERHEAD, HpackDecoder, HpackError, HpackListTooLarge, STATIC_TABLE, encodeHeaders } from '../../src/server/h2/hpack';
import { huffmanDecode, huffmanEncode, huffmanEncodedLength } from '../../src/server/h2/huffman';
import { seededRandom } from '../helpers/seeded-random';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const NO_LIMIT = Number.MAX_SAFE_INTEGER;

const rng = seededRandom;

function expectHpackError(fn: () => unknown, message?: RegExp): void {
  let thrown: unknown;
  try {
    fn();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(HpackError);
  if (message) expect((thrown as Error).message).toMatch(message);
}

describe('static table', () => {
  it('has the 61 entries of RFC 7541 Appendix A', () => {
    expect(STATIC_TABLE).toHaveLength(61);
    expect(STATIC_TABLE[0]).toEqual([':authority', '']);
    expect(STATIC_TABLE[7]).toEqual([':status', '200']);
    expect(STATIC_TABLE[15]).toEqual(['accept-encoding', 'gzip, deflate']);
    expect(STATIC_TABLE[30]).toEqual(['content-type', '']);
    expect(STATIC_TABLE[60]).toEqual(['www-authenticate', '']);
  });

  it('decodes every index to its entry', () => {
    const d = new HpackDecoder();
    const block = Buffer.from(STATIC_TABLE.map((_, i) => 0x80 | (i + 1)));
    expect(d.decode(block, NO_LIMIT)).toEqual(STATIC_TABLE);
  });
});

describe('RFC 7541 C.2: header field representations', () => {
  it('C.2.1 literal with indexing', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572'), NO_LIMIT)).toEqual([
      ['custom-key', 'custom-header'],
    ]);
    expect(d.tableEntries()).toEqual([['custom-key', 'custom-header']]);
    expect(d.tableSize).toBe(55);
  });

  it('C.2.2 literal without indexing', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468'), NO_LIMIT)).toEqual([[':path', '/sample/path']]);
    expect(d.tableEntries()).toEqual([]);
    expect(d.tableSize).toBe(0);
  });

  it('C.2.3 literal never indexed', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('1008 7061 7373 776f 7264 0673 6563 7265 74'), NO_LIMIT)).toEqual([['password', 'secret']]);
    expect(d.tableSize).toBe(0);
  });

  it('C.2.4 indexed header field', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('82'), NO_LIMIT)).toEqual([[':method', 'GET']]);
    expect(d.tableSize).toBe(0);
  });
});

// C.3 and C.4 are the same three requests, without and with Huffman coding.
const REQUESTS: Array<{ headers: Array<[string, string]>; table: Array<[string, string]>; size: number }> = [
  {
    headers: [[':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com']],
    table: [[':authority', 'www.example.com']],
    size: 57,
  },
  {
    headers: [
      [':method', 'GET'], [':scheme', 'http'], [':path', '/'], [':authority', 'www.example.com'],
      ['cache-control', 'no-cache'],
    ],
    table: [['cache-control', 'no-cache'], [':authority', 'www.example.com']],
    size: 110,
  },
  {
    headers: [
      [':method', 'GET'], [':scheme', 'https'], [':path', '/index.html'], [':authority', 'www.example.com'],
      ['custom-key', 'custom-value'],
    ],
    table: [['custom-key', 'custom-value'], ['cache-control', 'no-cache'], [':authority', 'www.example.com']],
    size: 164,
  },
];

// C.5 and C.6 are the same three responses, without and with Huffman coding, through a 256-octet table.
const DATE1 = 'Mon, 21 Oct 2013 20:13:21 GMT';
const DATE2 = 'Mon, 21 Oct 2013 20:13:22 GMT';
const COOKIE = 'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1';
const RESPONSES: Array<{ headers: Array<[string, string]>; table: Array<[string, string]>; size: number }> = [
  {
    headers: [[':status', '302'], ['cache-control', 'private'], ['date', DATE1], ['location', 'https://www.example.com']],
    table: [['location', 'https://www.example.com'], ['date', DATE1], ['cache-control', 'private'], [':status', '302']],
    size: 222,
  },
  {
    headers: [[':status', '307'], ['cache-control', 'private'], ['date', DATE1], ['location', 'https://www.example.com']],
    table: [[':status', '307'], ['location', 'https://www.example.com'], ['date', DATE1], ['cache-control', 'private']],
    size: 222,
  },
  {
    headers: [
      [':status', '200'], ['cache-control', 'private'], ['date', DATE2], ['location', 'https://www.example.com'],
      ['content-encoding', 'gzip'], ['set-cookie', COOKIE],
    ],
    table: [['set-cookie', COOKIE], ['content-encoding', 'gzip'], ['date', DATE2]],
    size: 215,
  },
];

function runSequence(
  decoder: HpackDecoder,
  blocks: string[],
  expected: Array<{ headers: Array<[string, string]>; table: Array<[string, string]>; size: number }>,
): void {
  blocks.forEach((block, i) => {
    const want = expected[i];
    if (!want) throw new Error(`no expectation for block ${i}`);
    expect(decoder.decode(hex(block), NO_LIMIT)).toEqual(want.headers);
    expect(decoder.tableEntries()).toEqual(want.table);
    expect(decoder.tableSize).toBe(want.size);
  });
}

describe('RFC 7541 C.3-C.6: sequences sharing one decoder', () => {
  it('C.3 requests without Huffman coding', () => {
    runSequence(
      new HpackDecoder(),
      [
        '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        '8286 84be 5808 6e6f 2d63 6163 6865',
        '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
      ],
      REQUESTS,
    );
  });

  it('C.4 requests with Huffman coding', () => {
    runSequence(
      new HpackDecoder(),
      [
        '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
        '8286 84be 5886 a8eb 1064 9cbf',
        '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
      ],
      REQUESTS,
    );
  });

  it('C.5 responses without Huffman coding, with evictions', () => {
    runSequence(
      new HpackDecoder(256),
      [
        `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3120
         474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`,
        '4803 3330 37c1 c0bf',
        `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d 54c0 5a04 677a 6970 7738
         666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33
         3630 303b 2076 6572 7369 6f6e 3d31`,
      ],
      RESPONSES,
    );
  });

  it('C.6 responses with Huffman coding, with evictions', () => {
    runSequence(
      new HpackDecoder(256),
      [
        `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718
         63c7 8f0b 97c8 e9ae 82ae 43d3`,
        '4883 640e ffc1 c0bf',
        `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab 77ad 94e7 821d d7f2 e6c7
         b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
      ],
      RESPONSES,
    );
  });
});

describe('Huffman coding', () => {
  it('encodes the RFC 7541 C.4 and C.6 strings', () => {
    expect(huffmanEncode('www.example.com').toString('hex')).toBe('f1e3c2e5f23a6ba0ab90f4ff');
    expect(huffmanEncode('no-cache').toString('hex')).toBe('a8eb10649cbf');
    expect(huffmanEncode('custom-key').toString('hex')).toBe('25a849e95ba97d7f');
    expect(huffmanEncode('custom-value').toString('hex')).toBe('25a849e95bb8e8b4bf');
    expect(huffmanEncode('302').toString('hex')).toBe('6402');
    expect(huffmanEncode(DATE1).toString('hex')).toBe('d07abe941054d444a8200595040b8166e082a62d1bff');
    expect(huffmanDecode(hex('9bd9ab'))).toBe('gzip');
  });

  it('round-trips random strings over all 256 octets', () => {
    const rand = rng(1);
    for (let n = 0; n < 2000; n++) {
      const length = Math.floor(rand() * (n < 1000 ? 16 : 300));
      let s = '';
      for (let i = 0; i < length; i++) s += String.fromCharCode(Math.floor(rand() * 256));
      const encoded = huffmanEncode(s);
      expect(encoded.length).toBe(huffmanEncodedLength(s));
      expect(huffmanDecode(encoded)).toBe(s);
    }
    let all = '';
    for (let c = 0; c < 256; c++) all += String.fromCharCode(c);
    expect(huffmanDecode(huffmanEncode(all))).toBe(all);
  });

  it('decodes a sub-range of a buffer, and the empty string', () => {
    const buf = Buffer.concat([hex('ffff'), huffmanEncode('grpc-timeout'), hex('00')]);
    expect(huffmanDecode(buf, 2, buf.length - 1)).toBe('grpc-timeout');
    expect(huffmanDecode(Buffer.alloc(0))).toBe('');
    expect(huffmanEncode('')).toHaveLength(0);
  });

  it('rejects padding longer than 7 bits', () => {
    // 'a' is 00011: 3 bits of padding fit in its octet; another 0xff makes 11.
    expect(huffmanDecode(hex('1f'))).toBe('a');
    expectHpackError(() => huffmanDecode(hex('1fff')), /padding/);
    expectHpackError(() => huffmanDecode(hex('ff')), /padding/);
    expectHpackError(() => huffmanDecode(Buffer.concat([huffmanEncode('www.example.com'), hex('ff')])), /padding/);
  });

  it('rejects padding that is not the most significant bits of EOS', () => {
    expectHpackError(() => huffmanDecode(hex('18')), /padding/); // 'a' then 000
    expectHpackError(() => huffmanDecode(hex('1e')), /padding/); // 'a' then 110
    expectHpackError(() => huffmanDecode(hex('1b')), /padding/); // 'a' then 011
    expect(huffmanDecode(hex('07'))).toBe('0'); // '0' is 00000, then 111
    // A truncated code: the first 8 bits of '"' (1111111000).
    expectHpackError(() => huffmanDecode(hex('fe')), /padding/);
  });

  it('rejects an EOS symbol in the string', () => {
    expectHpackError(() => huffmanDecode(hex('ffffffff')), /EOS/); // EOS (30 1s) then 2 bits of padding
    expectHpackError(() => huffmanDecode(hex('1fffffffff')), /EOS/); // 'a', 3 padding-like 1s, then EOS
    expectHpackError(() => huffmanDecode(hex('ffffffff1f')), /EOS/); // EOS then more symbols
  });
});

describe('HpackDecoder', () => {
  it('rejects index 0', () => {
    expectHpackError(() => new HpackDecoder().decode(hex('80'), NO_LIMIT), /index 0/);
    expectHpackError(() => new HpackDecoder().decode(hex('40'), NO_LIMIT)); // literal name, missing string
    expectHpackError(() => new HpackDecoder().decode(hex('8280'), NO_LIMIT), /index 0/);
  });

  it('rejects an index past the table', () => {
    expectHpackError(() => new HpackDecoder().decode(hex('be'), NO_LIMIT), /past the table/);
    expectHpackError(() => new HpackDecoder().decode(hex('7e0161'), NO_LIMIT), /past the table/); // name index 62
    expectHpackError(() => new HpackDecoder().decode(hex('0f3000'), NO_LIMIT), /past the table/); // 15 + 48 = 63
    expectHpackError(() => new HpackDecoder().decode(hex('ffffff07'), NO_LIMIT), /past the table/);
    const d = new HpackDecoder();
    d.decode(hex('4001610162'), NO_LIMIT); // a: b, now index 62
    expect(d.decode(hex('be'), NO_LIMIT)).toEqual([['a', 'b']]);
    expectHpackError(() => d.decode(hex('bf'), NO_LIMIT), /past the table/);
  });

  it('rejects a truncated integer', () => {
    expectHpackError(() => new HpackDecoder().decode(hex('ff'), NO_LIMIT), /truncated integer/);
    expectHpackError(() => new HpackDecoder().decode(hex('ff80'), NO_LIMIT), /truncated integer/);
    expectHpackError(() => new HpackDecoder().decode(hex('3f'), NO_LIMIT), /truncated integer/);
    expectHpackError(() => new HpackDecoder().decode(hex('00'), NO_LIMIT), /truncated/); // no name length
    expectHpackError(() => new HpackDecoder().decode(hex('00017f'), NO_LIMIT), /truncated/); // name, no value
    expectHpackError(() => new HpackDecoder().decode(hex('00017f7f'), NO_LIMIT), /truncated integer/);
  });

  it('rejects an integer that overflows 2^31 or has too many continuation octets', () => {
    // 127 + 0x7f + 0x7f*2^7 + 0x7f*2^14 + 0x7f*2^21 + 0x0f*2^28 > 2^31 - 1
    expectHpackError(() => new HpackDecoder().decode(hex('ffffffffff0f'), NO_LIMIT), /overflow/);
    expectHpackError(() => new HpackDecoder().decode(hex('ffffffffffffffffff'), NO_LIMIT), /overflow/);
    // Zero continuation octets keep the value small but are still too many.
    expectHpackError(() => new HpackDecoder().decode(hex('ff808080808000'), NO_LIMIT), /continuation/);
    // A string length of 2^31 - 1 is a valid integer, then a truncated string.
    expectHpackError(() => new HpackDecoder().decode(hex('007f80ffffff07'), NO_LIMIT), /truncated string/);
    // Five continuation octets are accepted: 127 + 0 + ... = index 127 - 61 = 66, past the empty table.
    expectHpackError(() => new HpackDecoder().decode(hex('ff8080808000'), NO_LIMIT), /past the table/);
  });

  it('rejects a truncated string', () => {
    expectHpackError(() => new HpackDecoder().decode(hex('400561'), NO_LIMIT), /truncated string/);
    expectHpackError(() => new HpackDecoder().decode(hex('0001610361'), NO_LIMIT), /truncated string/);
    expectHpackError(() => new HpackDecoder().decode(hex('00016185'), NO_LIMIT), /truncated string/); // Huffman
    expectHpackError(() => new HpackDecoder().decode(hex('0f01'), NO_LIMIT), /truncated string/); // no value
  });

  it('rejects a bad Huffman string in a field', () => {
    expectHpackError(() => new HpackDecoder().decode(hex('00016181ff'), NO_LIMIT), /padding/);
    expectHpackError(() => new HpackDecoder().decode(hex('008161 0161'), NO_LIMIT), /padding/);
    expectHpackError(() => new HpackDecoder().decode(hex('400161 84ffffffff'), NO_LIMIT), /EOS/);
  });

  it('applies a dynamic table size update at the start of a block, up to the advertised maximum', () => {
    const d = new HpackDecoder(4096);
    d.decode(hex('4001610162 4001630164'), NO_LIMIT);
    expect(d.tableSize).toBe(68);
    // 001 11111 then 4096 - 31 = 4065 = 0x61 + 0x1f * 128
    expect(d.decode(hex('3fe11f 82'), NO_LIMIT)).toEqual([[':method', 'GET']]);
    expect(d.tableLimit).toBe(4096);
    expect(d.tableSize).toBe(68);
    // Down to 34 octets: only the newest entry (c: d) fits.
    expect(d.decode(hex('3f03 be'), NO_LIMIT)).toEqual([['c', 'd']]);
    expect(d.tableEntries()).toEqual([['c', 'd']]);
    // Two updates in a row (to 0, then back to 100) are allowed; the first empties the table.
    expect(d.decode(hex('20 3f45'), NO_LIMIT)).toEqual([]);
    expect(d.tableEntries()).toEqual([]);
    expect(d.tableLimit).toBe(100);
    d.decode(hex('4001650166'), NO_LIMIT);
    expect(d.tableEntries()).toEqual([['e', 'f']]);
  });

  it('rejects a size update above the advertised maximum', () => {
    expectHpackError(() => new HpackDecoder(4096).decode(hex('3fe21f'), NO_LIMIT), /exceeds/); // 4097
    expectHpackError(() => new HpackDecoder(0).decode(hex('21'), NO_LIMIT), /exceeds/);
    expect(new HpackDecoder(0).decode(hex('20'), NO_LIMIT)).toEqual([]);
  });

  it('rejects a size update after a header field', () => {
    expectHpackError(() => new HpackDecoder().decode(hex('8220'), NO_LIMIT), /after a header field/);
    expectHpackError(() => new HpackDecoder().decode(hex('20 82 3f45'), NO_LIMIT), /after a header field/);
  });

  it('empties the table for an entry larger than it, and keeps its name if it was a table reference', () => {
    const d = new HpackDecoder(64);
    d.decode(hex('4001610162'), NO_LIMIT);
    expect(d.tableSize).toBe(34);
    // Literal with indexing, name = index 62 (a), value of 40 octets: 1 + 40 + 32 > 64, so the table empties.
    const value = 'v'.repeat(40);
    const block = Buffer.concat([hex('7e28'), Buffer.from(value)]);
    expect(d.decode(block, NO_LIMIT)).toEqual([['a', value]]);
    expect(d.tableSize).toBe(0);
    expect(d.tableEntries()).toEqual([]);
  });

  it('with a zero-size table, indexes nothing', () => {
    const d = new HpackDecoder(0);
    expect(d.decode(hex('4001610162'), NO_LIMIT)).toEqual([['a', 'b']]);
    expectHpackError(() => d.decode(hex('be'), NO_LIMIT), /past the table/);
  });

  it('keeps entries in a ring across many insertions and evictions', () => {
    const d = new HpackDecoder(200);
    const model: Array<[string, string]> = [];
    const rand = rng(7);
    for (let n = 0; n < 500; n++) {
      const name = `n${n}`;
      const value = 'x'.repeat(Math.floor(rand() * 60));
      const block = Buffer.concat([hex('40'), Buffer.from([name.length]), Buffer.from(name), Buffer.from([value.length])]);
      d.decode(Buffer.concat([block, Buffer.from(value)]), NO_LIMIT);
      model.unshift([name, value]);
      let size = model.reduce((s, [a, b]) => s + a.length + b.length + 32, 0);
      while (size > 200) {
        const [a, b] = model.pop() as [string, string];
        size -= a.length + b.length + 32;
      }
      expect(d.tableEntries()).toEqual(model);
      expect(d.tableSize).toBe(size);
    }
  });

  it('returns names and values as latin1 strings', () => {
    const d = new HpackDecoder();
    expect(d.decode(hex('0002e9ff 02 80 41'), NO_LIMIT)).toEqual([['\u00e9\u00ff', '\u0080A']]);
  });

  it('enforces maxListSize, counting 32 octets per field', () => {
    const block = hex('82 84 86'); // :method GET, :path /, :scheme http: 10 + 6 + 11 + 3 * 32 = 123
    expect(new HpackDecoder().decode(block, 123)).toHaveLength(3);
    expectHpackError(() => new HpackDecoder().decode(block, 122), /larger than 122/);
    expect(new HpackDecoder().decode(Buffer.alloc(0), 0)).toEqual([]);
    expectHpackError(() => new HpackDecoder().decode(hex('0003616263 00'), 34), /larger than 34/);
  });

  it('decodes a too-large list to the end of its block, keeping nothing past the limit but the table in sync', () => {
    const d = new HpackDecoder();
    // Literal with indexing, name "x", a 4000-octet value (length 127 + 3873 = 0x7f, 0xa1 0x1e) ...
    const insert = Buffer.concat([hex('400178 7fa11e'), Buffer.from('v'.repeat(4000))]);
    // ... a million references to it (4 GB of headers from 1 MB), then one more literal with indexing, "y: 1".
    const block = Buffer.concat([insert, Buffer.alloc(1_000_000, 0xbe), hex('400179 0131')]);
    let thrown: unknown;
    try {
      d.decode(block, 64 * 1024);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(HpackListTooLarge);
    expect((thrown as Error).message).toMatch(/larger than 65536/);
    // Both insertions happened, in order, as the peer's encoder has them: the next block decodes against them.
    expect(d.tableEntries()).toEqual([['y', '1'], ['x', 'v'.repeat(4000)]]);
    expect(d.decode(hex('be bf'), 64 * 1024)).toEqual([['y', '1'], ['x', 'v'.repeat(4000)]]);
    // A malformed block is still a plain HpackError, not a too-large list.
    expectHpackError(() => new HpackDecoder().decode(hex('80'), 64 * 1024), /index 0/);
    expect(() => new HpackDecoder().decode(hex('80'), 64 * 1024)).not.toThrow(HpackListTooLarge);
  });

  it('rejects a bad table size', () => {
    expect(() => new HpackDecoder(-1)).toThrow(RangeError);
    expect(() => new HpackDecoder(1.5)).toThrow(RangeError);
  });
});

describe('encodeHeaders', () => {
  it('indexes full static-table matches and writes other fields as literals without indexing', () => {
    expect(encodeHeaders([[':status', '200']]).toString('hex')).toBe('88');
    expect(encodeHeaders([[':status', '500']]).toString('hex')).toBe('8e');
    expect(encodeHeaders([[':method', 'POST']]).toString('hex')).toBe('83');
    // content-type is static index 31: 0000 1111, then 31 - 15 = 16.
    expect(encodeHeaders([['content-type', 'application/grpc']])).toEqual(
      Buffer.concat([hex('0f10 10'), Buffer.from('application/grpc')]),
    );
    // :status with another value: name index 8.
    expect(encodeHeaders([[':status', '418']])).toEqual(hex('08 03 343138'));
    // Not in the static table: a literal name.
    expect(encodeHeaders([['grpc-status', '0']])).toEqual(
      Buffer.concat([hex('000b'), Buffer.from('grpc-status'), hex('0130')]),
    );
    expect(encodeHeaders([])).toHaveLength(0);
  });

  it('decodes back to the same list, and leaves the decoder table empty', () => {
    const long = 'x'.repeat(300);
    const latin1 = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join('');
    const lists: Array<Array<[string, string]>> = [
      [[':status', '200'], ['content-type', 'application/grpc'], ['grpc-accept-encoding', 'identity,deflate,gzip']],
      [['grpc-status', '0'], ['grpc-message', '']],
      [['grpc-status', '13'], ['grpc-message', 'boom%20it%20failed'], ['x-bin', latin1]],
      [[':status', '204'], [':status', '999'], ['accept-encoding', 'gzip, deflate'], ['accept-encoding', 'br']],
      [[long, long], ['', ''], ['www-authenticate', long + long]],
      STATIC_TABLE.map(([n, v]): [string, string] => [n, v]),
      STATIC_TABLE.map(([n, v]): [string, string] => [n, `${v}!`]),
    ];
    for (const list of lists) {
      const d = new HpackDecoder();
      expect(d.decode(encodeHeaders(list), NO_LIMIT)).toEqual(list);
      expect(d.tableSize).toBe(0);
    }
  });

  it('round-trips random lists, including blocks larger than its scratch buffer', () => {
    const rand = rng(3);
    const str = (max: number): string => {
      let s = '';
      const length = Math.floor(rand() * max);
      for (let i = 0; i < length; i++) s += String.fromCharCode(Math.floor(rand() * 256));
      return s;
    };
    for (let n = 0; n < 300; n++) {
      const list: Array<[string, string]> = [];
      const fields = Math.floor(rand() * 12);
      for (let i = 0; i < fields; i++) {
        const pick = rand();
        const entry = STATIC_TABLE[Math.floor(rand() * STATIC_TABLE.length)] as readonly [string, string];
        if (pick < 0.3) list.push([entry[0], entry[1]]);
        else if (pick < 0.6) list.push([entry[0], str(40)]);
        else list.push([str(30), str(n % 50 === 0 ? 20_000 : 200)]);
      }
      const encoded = encodeHeaders(list);
      expect(new HpackDecoder().decode(encoded, NO_LIMIT)).toEqual(list);
    }
  });

  it('returns a buffer of its own (not a view of a reused one)', () => {
    const a = encodeHeaders([['grpc-status', '1']]);
    const copy = Buffer.from(a);
    encodeHeaders([['grpc-status', '2']]);
    expect(a).toEqual(copy);
  });
});

describe('fuzz', () => {
  const seeds = [
    hex('828684410f7777772e6578616d706c652e636f6d'),
    hex('828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf'),
    hex('488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3'),
    hex('3fe11f 4001610162 be 7e0163 0f10 03616263 1003 666f6f 00 83'),
    encodeHeaders([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '0']]),
  ];

  function mutate(rand: () => number, src: Buffer): Buffer {
    const bytes = Array.from(src);
    const edits = 1 + Math.floor(rand() * 4);
    for (let e = 0; e < edits; e++) {
      const at = Math.floor(rand() * (bytes.length + 1));
      const op = rand();
      if (op < 0.4 && bytes.length > 0) bytes[at % bytes.length] = Math.floor(rand() * 256);
      else if (op < 0.6) bytes.splice(at, 0, Math.floor(rand() * 256));
      else if (op < 0.8) bytes.splice(at, 1);
      else bytes.length = at;
    }
    return Buffer.from(bytes);
  }

  it('decode only ever returns or throws HpackError on random and mutated blocks', () => {
    const rand = rng(42);
    const started = Date.now();
    let decoded = 0;
    let rejected = 0;
    // One long-lived decoder sees everything (as a connection would until its first error), plus fresh ones.
    let shared = new HpackDecoder(256);
    for (let n = 0; n < 5000; n++) {
      let block: Buffer;
      if (n % 2 === 0) {
        block = mutate(rand, seeds[n % seeds.length] as Buffer);
      } else {
        block = Buffer.alloc(Math.floor(rand() * 64));
        for (let i = 0; i < block.length; i++) block[i] = Math.floor(rand() * 256);
      }
      for (const d of [shared, new HpackDecoder(rand() < 0.5 ? 4096 : 64)]) {
        try {
          const headers = d.decode(block, 4096);
          for (const [name, value] of headers) {
            expect(typeof name).toBe('string');
            expect(typeof value).toBe('string');
          }
          decoded++;
        } catch (err) {
          if (!(err instanceof HpackError)) throw err;
          rejected++;
          if (d === shared) shared = new HpackDecoder(256);
        }
      }
    }
    expect(decoded).toBeGreaterThan(100);
    expect(rejected).toBeGreaterThan(100);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('huffmanDecode only ever returns or throws HpackError', () => {
    const rand = rng(9);
    for (let n = 0; n < 5000; n++) {
      const block = Buffer.alloc(Math.floor(rand() * 24));
      for (let i = 0; i < block.length; i++) block[i] = Math.floor(rand() * 256);
      try {
        const s = huffmanDecode(block);
        expect(huffmanDecode(huffmanEncode(s))).toBe(s);
      } catch (err) {
        if (!(err instanceof HpackError)) throw err;
      }
    }
  });

  it('ENTRY_OVERHEAD is 32', () => {
    expect(ENTRY_OVERHEAD).toBe(32);
  });
});
