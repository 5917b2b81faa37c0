import type { ImageFilter__Output } from './generated/runtime/v1/ImageFilter';
import type { ListImagesRequest__Output } from './generated/runtime/v1/ListImagesRequest';
import type { ListImagesResponse } from './generated/runtime/v1/ListImagesResponse';
import type { StreamImagesRequest__Output } from './generated/runtime/v1/StreamImagesRequest';
import type { StreamImagesResponse } from './generated/runtime/v1/StreamImagesResponse';
import type { Image } from './generated/runtime/v1/Image';
import type { ServerContext } from './context';
import { toCriImage } from './image-view';
import { sendInBatches } from './request';
import type { StreamHandler, UnaryHandler } from './rpc';

function listed(s: ServerContext, filter: ImageFilter__Output | null): Image[] {
  const wanted = filter?.image?.image ?? '';
  const records = wanted === '' ? s.images.images.list() : [s.images.resolve(wanted)].flatMap((r) => (r ? [r] : []));
  return records.map((r) => toCriImage(r, s.images.isPinned(r)));
}

export function listImages(s: ServerContext): UnaryHandler<ListImagesRequest__Output, ListImagesResponse> {
  return async (req) => ({ images: listed(s, req.filter) });
}

export function streamImages(s: ServerContext): StreamHandler<StreamImagesRequest__Output, StreamImagesResponse> {
  return async (req, _ctx, send) => {
    await sendInBatches(listed(s, req.filter), (images) => ({ images }), send);
  };
}
