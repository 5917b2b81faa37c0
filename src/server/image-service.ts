// runtime.v1.ImageService: every RPC named here, so the compiler catches one that is missing or mistyped.
import type { ImageServiceHandlers } from './generated/runtime/v1/ImageService';
import type { ServerContext } from './context';
import { imageFsInfo } from './image-fs-info';
import { notImplemented } from './not-implemented';
import type { ServiceImpl } from './rpc';

export function imageService(s: ServerContext): ServiceImpl<ImageServiceHandlers> {
  return {
    ImageFsInfo: imageFsInfo(s),
    ListImages: notImplemented('ListImages'),
    StreamImages: notImplemented('StreamImages'),
    ImageStatus: notImplemented('ImageStatus'),
    PullImage: notImplemented('PullImage'),
    RemoveImage: notImplemented('RemoveImage'),
  };
}
