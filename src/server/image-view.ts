// An image record as the CRI's Image message.
import type { ImageRecord } from '../storage/image-store';
import type { Image } from './generated/runtime/v1/Image';

export function toCriImage(record: ImageRecord, pinned: boolean): Image {
  const user = imageUser(record.user);
  return {
    id: record.id,
    repo_tags: record.repoTags,
    repo_digests: record.repoDigests,
    size: String(record.size),
    ...user,
    spec: { image: record.id, annotations: {} },
    pinned,
  };
}

/** USER "1000", "1000:1000" → uid; "app", "app:grp" → username; empty → neither (the kubelet assumes root). */
export function imageUser(user: string): { uid?: { value: string }; username: string } {
  const name = user.split(':')[0] ?? '';
  if (name === '') return { username: '' };
  if (/^\d+$/.test(name)) return { uid: { value: name }, username: '' };
  return { username: name };
}
