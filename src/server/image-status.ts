import type { ImageStatusRequest__Output } from './generated/runtime/v1/ImageStatusRequest';
import type { ImageStatusResponse } from './generated/runtime/v1/ImageStatusResponse';
import type { ServerContext } from './context';
import { toCriImage } from './image-view';
import { required } from './request';
import type { UnaryHandler } from './rpc';

/** An unknown image is an empty answer, not an error: the kubelet asks this to decide whether to pull. */
export function imageStatus(s: ServerContext): UnaryHandler<ImageStatusRequest__Output, ImageStatusResponse> {
  return async (req) => {
    const image = required(req.image?.image ?? '', 'image.image');
    const record = s.images.resolve(image);
    if (!record) return { info: {} };
    const info: Record<string, string> = {};
    if (req.verbose) {
      const manifest = (await s.images.blobs.get(record.manifestDigest)).toString('utf8');
      const config = (await s.images.blobs.get(record.id)).toString('utf8');
      info['info'] = JSON.stringify({ manifestDigest: record.manifestDigest, manifest: JSON.parse(manifest) as unknown, imageSpec: JSON.parse(config) as unknown, layers: record.layers });
    }
    return { image: toCriImage(record, s.images.isPinned(record)), info };
  };
}
