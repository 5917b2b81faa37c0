import { nowNs } from '../common/time';
import { DiskUsage, diskUsage } from '../storage/disk-usage';
import type { ImageFsInfoRequest__Output } from './generated/runtime/v1/ImageFsInfoRequest';
import type { ImageFsInfoResponse } from './generated/runtime/v1/ImageFsInfoResponse';
import type { FilesystemUsage } from './generated/runtime/v1/FilesystemUsage';
import type { ServerContext } from './context';
import type { UnaryHandler } from './rpc';

// The kubelet polls this every few seconds; a walk in flight is shared by callers that arrive meanwhile.
const FRESH_MS = 2000;

export function imageFsInfo(s: ServerContext): UnaryHandler<ImageFsInfoRequest__Output, ImageFsInfoResponse> {
  const measure = sharedMeasure();
  return async () => {
    const [images, containers] = await Promise.all([measure(s.layout.imageStore), measure(s.layout.containers)]);
    return { image_filesystems: [usage(s.layout.imageStore, images)], container_filesystems: [usage(s.layout.containers, containers)] };
  };
}

function usage(mountpoint: string, u: { at: bigint; usage: DiskUsage }): FilesystemUsage {
  return {
    timestamp: u.at.toString(),
    fs_id: { mountpoint },
    used_bytes: { value: u.usage.bytes.toString() },
    inodes_used: { value: u.usage.inodes.toString() },
  };
}

function sharedMeasure(): (dir: string) => Promise<{ at: bigint; usage: DiskUsage }> {
  const recent = new Map<string, { doneAt: number; promise: Promise<{ at: bigint; usage: DiskUsage }> }>();
  return (dir) => {
    const hit = recent.get(dir);
    if (hit && (hit.doneAt === 0 || Date.now() - hit.doneAt < FRESH_MS)) return hit.promise;
    const entry = { doneAt: 0, promise: diskUsage(dir).then((u) => ({ at: nowNs(), usage: u })) };
    entry.promise.then(
      () => { entry.doneAt = Date.now(); },
      () => { recent.delete(dir); },
    );
    recent.set(dir, entry);
    return entry.promise;
  };
}
