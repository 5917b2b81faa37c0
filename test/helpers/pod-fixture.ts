// The setup most daemon tests share: a local registry with a busybox image, a daemon on its own cgroup parent that
// has pulled it, and one ready pod; close() undoes all of it, whatever failed half-way.
import path from 'node:path';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { buildImage, busyboxLayer, type ImageSpec } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';
import type { CriClient } from './cri-client';
import { startDaemon, TestDaemon, type StartOptions } from './daemon';

export interface PodFixture {
  reg: Registry;
  d: TestDaemon;
  c: CriClient;
  /** The pulled busybox image reference. */
  image: string;
  podId: string;
  podConfig: PodSandboxConfig;
  close(): Promise<void>;
}

export interface PodFixtureOptions {
  /** Names the repository, the pod and its uid. */
  name: string;
  cgroupParent: string;
  /** More TOML after `[runtime] cgroup_parent`. */
  toml?: string;
  daemon?: Omit<StartOptions, 'toml'>;
  /** Merged into the pod's config (log_directory defaults to <daemon dir>/logs). */
  pod?: Partial<PodSandboxConfig>;
  /** The image's config (default: Cmd /bin/sh). */
  imageConfig?: ImageSpec['config'];
}

export async function startPodFixture(o: PodFixtureOptions): Promise<PodFixture> {
  const f: Partial<PodFixture> = {};
  const close = async (): Promise<void> => {
    if (f.c && f.podId) await f.c.runtime.RemovePodSandbox({ pod_sandbox_id: f.podId }).catch(() => undefined);
    await f.d?.stop();
    f.d?.cleanup();
    await f.reg?.stop();
    await removeCgroup(o.cgroupParent);
  };
  try {
    f.reg = await startRegistry();
    await f.reg.push(`${o.name}/busybox`, 'v1', buildImage({ layers: [await busyboxLayer()], config: o.imageConfig ?? { Cmd: ['/bin/sh'] } }));
    f.image = `${f.reg.host}/${o.name}/busybox:v1`;
    f.d = await startDaemon({ ...o.daemon, toml: `[runtime]\ncgroup_parent = "${o.cgroupParent}"\n${o.toml ?? ''}` });
    f.c = f.d.client();
    await f.c.image.PullImage({ image: { image: f.image } });
    const pod = `${o.name}-pod`;
    f.podConfig = {
      metadata: { name: pod, namespace: 'default', uid: `${pod}-uid`, attempt: 0 },
      hostname: pod,
      log_directory: path.join(f.d.dir, 'logs'),
      labels: {},
      annotations: {},
      ...o.pod,
    };
    f.podId = (await f.c.runtime.RunPodSandbox({ config: f.podConfig })).pod_sandbox_id;
    return { ...(f as Omit<PodFixture, 'close'>), close };
  } catch (err) {
    await close();
    throw err;
  }
}
