// runtime.v1.ImageService: every RPC named here, so the compiler catches one that is missing or mistyped.
import type { ImageServiceHandlers } from './generated/runtime/v1/ImageService';
import type { ServerContext } from './context';
import { imageFsInfo } from './image-fs-info';
import { imageStatus } from './image-status';
import { listImages, streamImages } from './list-images';
import { pullImage } from './pull-image';
import { removeImage } from './remove-image';
import type { ServiceImpl } from './rpc';

export function imageService(s: ServerContext): ServiceImpl<ImageServiceHandlers> {
  return {
    ImageFsInfo: imageFsInfo(s),
    ListImages: listImages(s),
    StreamImages: streamImages(s),
    ImageStatus: imageStatus(s),
    PullImage: pullImage(s),
    RemoveImage: removeImage(s),
  };
}
