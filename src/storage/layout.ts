import path from 'node:path';

/** Where things live under the storage root; the one place that knows the layout. */
export interface StorageLayout {
  root: string;
  /** Blobs, unpacked layers and image records: what ImageFsInfo reports as the image filesystem. */
  imageStore: string;
  /** Per-container writable layers: what ImageFsInfo reports as the container filesystem. */
  containers: string;
  /** Checkpoints of pods and containers (kept across reboots, like the images they refer to). */
  podCheckpoints: string;
  containerCheckpoints: string;
}

export function storageLayout(root: string): StorageLayout {
  return {
    root,
    imageStore: path.join(root, 'image-store'),
    containers: path.join(root, 'containers'),
    podCheckpoints: path.join(root, 'checkpoints', 'pods'),
    containerCheckpoints: path.join(root, 'checkpoints', 'containers'),
  };
}
