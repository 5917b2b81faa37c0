import type { Credentials } from '../image/registry-client';
import type { PullImageRequest__Output } from './generated/runtime/v1/PullImageRequest';
import type { PullImageResponse } from './generated/runtime/v1/PullImageResponse';
import type { AuthConfig__Output } from './generated/runtime/v1/AuthConfig';
import type { ServerContext } from './context';
import { required } from './request';
import type { UnaryHandler } from './rpc';

export function pullImage(s: ServerContext): UnaryHandler<PullImageRequest__Output, PullImageResponse> {
  return async (req, ctx) => {
    const image = required(req.image?.image ?? '', 'image.image');
    const started = process.hrtime.bigint();
    try {
      const record = await s.images.pull(image, credentials(req.auth), ctx.signal);
      s.metrics.imagePullDuration.observe(Number(process.hrtime.bigint() - started) / 1e9);
      ctx.log.info({ image, id: record.id }, 'image pulled');
      return { image_ref: record.id };
    } catch (err) {
      s.metrics.imagePullFailures.inc({ reason: errorReason(err) });
      throw err;
    }
  };
}

function credentials(auth: AuthConfig__Output | null): Credentials | undefined {
  if (!auth) return undefined;
  const c: Credentials = {};
  if (auth.username) c.username = auth.username;
  if (auth.password) c.password = auth.password;
  if (auth.auth) c.auth = auth.auth;
  if (auth.identity_token) c.identity_token = auth.identity_token;
  if (auth.registry_token) c.registry_token = auth.registry_token;
  return Object.keys(c).length > 0 ? c : undefined;
}

function errorReason(err: unknown): string {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  return /^[A-Z_]+$/.test(code) ? code.toLowerCase() : 'internal';
}
