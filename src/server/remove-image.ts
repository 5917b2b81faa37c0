import type { RemoveImageRequest__Output } from './generated/runtime/v1/RemoveImageRequest';
import type { RemoveImageResponse } from './generated/runtime/v1/RemoveImageResponse';
import type { ServerContext } from './context';
import { required } from './request';
import type { UnaryHandler } from './rpc';

export function removeImage(s: ServerContext): UnaryHandler<RemoveImageRequest__Output, RemoveImageResponse> {
  return async (req) => {
    const image = required(req.image?.image ?? '', 'image.image');
    await s.images.remove(image);
    return {};
  };
}
