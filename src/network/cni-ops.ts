// The list operations of the CNI spec over one attachment: ADD runs the plugins in order, each getting the previous
// result; DEL runs all of them in reverse (even after one fails: DEL is idempotent, and a broken portmap must not
// keep host-local from releasing the address); CHECK in order; STATUS (CNI 1.1+) per plugin. Each plugin run is timed
// and reported to the observer.
import { BerthError, errorMessage } from '../common/errors';
import { compareVersions, type NetworkConfigFile } from './cni-config';
import { runtimeConfigFor } from './cni-args';
import { findPlugin, runPlugin, type CniCommand } from './cni-exec';
import { parseResult, type CniResult } from './cni-result';

export interface CniObserver {
  /** One plugin invocation finished: op is the CNI command, plugin the type, seconds wall time. */
  pluginDone(op: CniCommand, plugin: string, seconds: number, ok: boolean): void;
}

export interface OpsLog {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface OpsContext {
  pluginDirs: string[];
  timeoutMs: number;
  observer?: CniObserver;
  log?: OpsLog;
}

/** One network attachment: what every command for it needs, identical for ADD and the later DEL. */
export interface Attachment {
  network: NetworkConfigFile;
  containerId: string;
  ifName: string;
  netns: string;
  cniArgs: [string, string][];
  capabilityArgs: Record<string, unknown>;
}

/** How far an ADD got: updated as each plugin finishes, so a failure leaves the partial chain for DEL. */
export interface AddProgress {
  completed: number;
  result: CniResult | null;
}

/** Runs ADD for every plugin in order; returns the final result. `progress` shows how far it got on failure. */
export async function addList(ctx: OpsContext, att: Attachment, progress: AddProgress): Promise<CniResult> {
  for (const plugin of att.network.plugins) {
    const raw = await invoke(ctx, 'ADD', att, plugin, progress.result);
    progress.result = parseResult(raw, pluginType(plugin));
    progress.completed++;
  }
  if (!progress.result) throw new BerthError('INTERNAL', `network ${att.network.name} has no plugins`);
  return progress.result;
}

/**
 * Runs DEL for every plugin in reverse order with `prevResult` (CNI 0.4.0+ only, as libcni does); a plugin's failure
 * does not stop the rest, and the failures are thrown together at the end.
 */
export async function delList(ctx: OpsContext, att: Attachment, prevResult: CniResult | null): Promise<void> {
  const prev = compareVersions(att.network.cniVersion, '0.4.0') >= 0 ? prevResult : null;
  const failures: BerthError[] = [];
  for (const plugin of [...att.network.plugins].reverse()) {
    try {
      await invoke(ctx, 'DEL', att, plugin, prev);
    } catch (err) {
      failures.push(err instanceof BerthError ? err : new BerthError('INTERNAL', errorMessage(err)));
    }
  }
  const first = failures[0];
  if (first) {
    const text = failures.map((f) => f.message).join('; ');
    throw new BerthError(first.code, `CNI DEL on network ${att.network.name} failed: ${text}`, { cause: first });
  }
}

/**
 * Runs CHECK for every plugin in order against the cached ADD result; stops at the first failure. Returns false when
 * the list cannot be checked (before CNI 0.4.0, or `disableCheck`).
 */
export async function checkList(ctx: OpsContext, att: Attachment, result: CniResult): Promise<boolean> {
  if (att.network.disableCheck || compareVersions(att.network.cniVersion, '0.4.0') < 0) return false;
  for (const plugin of att.network.plugins) {
    if (portmapCheckBroken(plugin, att, result)) {
      ctx.log?.debug({ network: att.network.name, containerId: att.containerId }, 'CNI CHECK skipped for portmap with an IPv4-only result');
      continue;
    }
    await invoke(ctx, 'CHECK', att, plugin, result);
  }
  return true;
}

/** CNI 1.1 STATUS for each plugin; false (nothing run) when the network's version predates STATUS. */
export async function statusList(ctx: OpsContext, network: NetworkConfigFile): Promise<boolean> {
  if (compareVersions(network.cniVersion, '1.1.0') < 0) return false;
  const att: Attachment = { network, containerId: '', ifName: '', netns: '', cniArgs: [], capabilityArgs: {} };
  for (const plugin of network.plugins) await invoke(ctx, 'STATUS', att, plugin, null);
  return true;
}

/** The config one plugin reads on stdin: its own object plus name, cniVersion, prevResult and runtimeConfig. */
export function pluginConfig(
  network: NetworkConfigFile,
  plugin: Record<string, unknown>,
  prevResult: CniResult | null,
  caps: Record<string, unknown>,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: network.name, cniVersion: network.cniVersion };
  delete conf['prevResult'];
  delete conf['runtimeConfig'];
  if (prevResult) conf['prevResult'] = prevResult;
  const rc = runtimeConfigFor(plugin, caps);
  if (rc) conf['runtimeConfig'] = rc;
  return conf;
}

async function invoke(ctx: OpsContext, command: CniCommand, att: Attachment, plugin: Record<string, unknown>, prev: CniResult | null): Promise<unknown> {
  const type = pluginType(plugin);
  const started = process.hrtime.bigint();
  let ok = false;
  try {
    const binary = await findPlugin(type, ctx.pluginDirs);
    const out = await runPlugin({
      command,
      type,
      binary,
      config: pluginConfig(att.network, plugin, prev, command === 'STATUS' ? {} : att.capabilityArgs),
      containerId: att.containerId,
      netns: att.netns,
      ifName: att.ifName,
      args: att.cniArgs,
      pluginDirs: ctx.pluginDirs,
      timeoutMs: ctx.timeoutMs,
    });
    ok = true;
    return out;
  } finally {
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    ctx.log?.debug({ op: command, plugin: type, network: att.network.name, containerId: att.containerId, seconds, ok }, 'CNI plugin finished');
    try {
      ctx.observer?.pluginDone(command, type, seconds, ok);
    } catch (err) {
      ctx.log?.warn({ err: errorMessage(err) }, 'CNI observer failed');
    }
  }
}

function pluginType(plugin: Record<string, unknown>): string {
  return typeof plugin['type'] === 'string' ? plugin['type'] : '';
}

/**
 * portmap up to at least 1.1.1 fails CHECK whenever it has port mappings and the result holds no IPv6 address (it
 * checks the IPv6 rules regardless), so a healthy pod would read as broken; its CHECK is skipped in that case only.
 */
function portmapCheckBroken(plugin: Record<string, unknown>, att: Attachment, result: CniResult): boolean {
  if (pluginType(plugin) !== 'portmap') return false;
  const mapped = runtimeConfigFor(plugin, att.capabilityArgs)?.['portMappings'];
  const hasV6 = (result.ips ?? []).some((ip) => ip.address.includes(':'));
  return Array.isArray(mapped) && mapped.length > 0 && !hasV6;
}
