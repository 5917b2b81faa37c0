import { invalidArgument } from '../common/errors';
import type { RemoveImageRequest__Output } from './generated/runtime/v1/RemoveImageRequest';
import type { RemoveImageResponse } from './generated/runtime/v1/RemoveImageResponse';
import type { ServerContext } from './context';
import type { UnaryHandler } from './rpc';

export function removeImage(s: ServerContext): UnaryHandler<RemoveImageRequest__Output, RemoveImageResponse> {
  return async (req) => {
    const image = req.image?.image ?? '';
    if (image === '') throw invalidArgument('image.image is required');
    await s.images.remove(image);
    return {};
  };
}
