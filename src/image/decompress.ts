// Layer decompression by media type: gzip with Node's zlib, zstd with Debian's zstd binary (Node 20 has no zstd;
// a fixed absolute path and fixed arguments, so nothing from the image chooses what runs).
import { spawn } from 'node:child_process';
import { Duplex, PassThrough } from 'node:stream';
import zlib from 'node:zlib';
import { BerthError } from '../common/errors';
import type { Compression } from './manifest';

export const ZSTD_BINARY = '/usr/bin/zstd';

export function decompressor(compression: Compression): Duplex {
  switch (compression) {
    case 'gzip':
      return zlib.createGunzip({ chunkSize: 256 * 1024 });
    case 'none':
      return new PassThrough({ highWaterMark: 256 * 1024 });
    case 'zstd':
      return zstdStream();
  }
}

function zstdStream(): Duplex {
  const child = spawn(ZSTD_BINARY, ['-d', '-c', '-q'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-2000)));
  const duplex = Duplex.from({ writable: child.stdin, readable: child.stdout });
  child.once('error', (err) => duplex.destroy(new BerthError('FAILED_PRECONDITION', `cannot run ${ZSTD_BINARY} for a zstd layer: ${err.message}`)));
  child.once('exit', (code, signal) => {
    if (code !== 0 && !duplex.destroyed) {
      duplex.destroy(new BerthError('DATA_LOSS', `zstd layer does not decompress: ${stderr.trim() || `exit ${code ?? signal}`}`));
    }
  });
  duplex.once('close', () => child.kill('SIGKILL'));
  return duplex;
}
