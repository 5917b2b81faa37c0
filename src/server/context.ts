import type { BerthConfig } from './config';
import type { Logger } from './log';
import type { Metrics } from './metrics';
import type { StorageLayout } from '../storage/layout';
import type { ImageManager } from '../image/image-manager';
import type { SandboxManager } from '../runtime/sandbox-manager';
import type { ContainerManager } from '../runtime/container-manager';
import type { ContainerEvents } from './container-events';
import type { StreamingServer } from './streaming/server';

/** What handlers share: the live config (replaced on SIGHUP), logging, metrics, and where state lives. */
export interface ServerContext {
  readonly version: string;
  config(): BerthConfig;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly layout: StorageLayout;
  readonly runtimeState: RuntimeState;
  readonly images: ImageManager;
  readonly sandboxes: SandboxManager;
  readonly containers: ContainerManager;
  readonly events: ContainerEvents;
  /** The exec/attach/port-forward server (its URLs are what Exec, Attach and PortForward return). */
  streaming(): StreamingServer;
}

/** Node-level settings the kubelet pushes with UpdateRuntimeConfig. */
export interface RuntimeState {
  podCidr: string;
}
