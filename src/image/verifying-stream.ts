// A blob download checked as it flows: bytes pass through while they are hashed, and the stream fails with
// DATA_LOSS at its end, instead of ending cleanly, when they are too many, too few or hash to another digest.
import { createHash } from 'node:crypto';
import { Transform, TransformCallback } from 'node:stream';
import { BerthError } from '../common/errors';
import { messageOf } from './registry-transport';

/** Passes bytes through while hashing them; ends with DATA_LOSS (not a clean end) on truncation or a wrong digest. */
export class VerifyingStream extends Transform {
  private readonly hash = createHash('sha256');
  private got = 0;

  constructor(
    private readonly digest: string,
    private readonly size: number | undefined,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.got += chunk.length;
    if (this.size !== undefined && this.got > this.size) {
      return cb(new BerthError('DATA_LOSS', `blob ${this.digest} is longer than the expected ${this.size} bytes`));
    }
    this.hash.update(chunk);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.size !== undefined && this.got < this.size) return cb(this.truncated());
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (actual !== this.digest) return cb(new BerthError('DATA_LOSS', `blob ${this.digest} digest mismatch: got ${actual}`));
    cb();
  }

  truncated(): BerthError {
    return new BerthError('DATA_LOSS', `blob ${this.digest} truncated: got ${this.got} of ${this.size ?? '?'} bytes`);
  }

  /** The source failed mid-body: a short read when the size is known, otherwise an unavailable registry. */
  streamFailed(label: string, err: unknown): BerthError {
    if (err instanceof BerthError) return err;
    if (this.size !== undefined && this.got < this.size) return this.truncated();
    return new BerthError('UNAVAILABLE', `blob ${this.digest} download from ${label} failed after ${this.got} bytes: ${messageOf(err)}`);
  }
}
