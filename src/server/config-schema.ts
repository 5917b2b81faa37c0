// The declarative configuration schema: every option berth reads, in one table. Loading, validation, flags, rendering
// and reload all walk SCHEMA, so adding an option means adding one row here (and the field in BerthConfig, which a
// compile-time check below keeps in step with the table).
import { isIP, isIPv6 } from 'node:net';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const CGROUP_DRIVERS = ['cgroupfs', 'systemd'] as const;
export type CgroupDriver = (typeof CGROUP_DRIVERS)[number];

export interface HandlerConfig {
  path: string;
  root: string;
  type: 'oci';
}
export interface RegistryConfig {
  mirrors: string[];
  insecure: boolean;
  blocked: boolean;
}
export interface ApiConfig {
  listen: string;
  socket_group: string;
  max_message_bytes: number;
  shutdown_timeout_seconds: number;
  container_events_queue_size: number;
}
export interface RuntimeConfig {
  default_handler: string;
  cgroup_driver: CgroupDriver;
  cgroup_parent: string;
  conmon_path: string;
  pids_limit: number;
  handlers: Record<string, HandlerConfig>;
}
export interface ImageConfig {
  pull_parallelism: number;
  pull_progress_timeout_seconds: number;
  max_manifest_bytes: number;
  max_config_bytes: number;
  max_layer_bytes: number;
  max_layer_entries: number;
  request_timeout_seconds: number;
  retries: number;
  pinned_images: string[];
  registries_config_dir: string;
  registries: Record<string, RegistryConfig>;
}
export interface NetworkConfig {
  cni_conf_dir: string;
  cni_plugin_dirs: string[];
  default_network: string;
  plugin_timeout_seconds: number;
}
export interface MetricsConfig {
  enabled: boolean;
  address: string;
}
export interface StreamingConfig {
  address: string;
  port: number;
  tls_cert_file: string;
  tls_key_file: string;
  token_ttl_seconds: number;
  idle_timeout_seconds: number;
}
/** The effective configuration: a plain object shaped exactly like the TOML. Treat it as immutable. */
export interface BerthConfig {
  log_level: LogLevel;
  root: string;
  state_dir: string;
  api: ApiConfig;
  runtime: RuntimeConfig;
  image: ImageConfig;
  network: NetworkConfig;
  metrics: MetricsConfig;
  streaming: StreamingConfig;
}

export type OptionType = 'string' | 'int' | 'bool' | 'string[]';
export type OptionValue = string | number | boolean | string[];
/** Returns why a (correctly typed) value is refused, or undefined when it is fine. */
export type Check = (v: OptionValue) => string | undefined;

export interface FieldSpec {
  name: string;
  type: OptionType;
  doc: string;
  /** Absent: the field is required in every map entry. */
  default?: OptionValue;
  check?: Check;
}
export interface OptionSpec<P extends string = string> {
  kind: 'option';
  path: P;
  type: OptionType;
  doc: string;
  default: OptionValue;
  live: boolean;
  flag: string;
  check?: Check;
}
export interface MapSpec<P extends string = string> {
  kind: 'map';
  path: P;
  doc: string;
  live: boolean;
  checkName: (name: string) => string | undefined;
  fields: FieldSpec[];
  default: Record<string, Record<string, OptionValue>>;
}
export type SchemaEntry = OptionSpec | MapSpec;

// ---- value checks -------------------------------------------------------------------------------------------------

type StrCheck = (s: string) => string | undefined;
const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const HANDLER_NAME = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export const absolutePath: StrCheck = (s) =>
  !s.startsWith('/') ? `"${s}" is not an absolute path` : s.includes('\0') ? 'path contains a NUL byte' : undefined;
const absoluteOrEmpty: StrCheck = (s) => (s === '' ? undefined : absolutePath(s));
const nonEmpty: StrCheck = (s) => (s === '' ? 'must not be empty' : undefined);
const oneOf =
  (allowed: readonly string[]): StrCheck =>
  (s) =>
    allowed.includes(s) ? undefined : `"${s}" is not one of ${allowed.join(', ')}`;

function checkHost(host: string): string | undefined {
  return HOSTNAME.test(host) || isIP(host) !== 0 ? undefined : `"${host}" is not a host name or IP address`;
}
function checkPort(port: string, min: number): string | undefined {
  const n = Number(port);
  return /^\d{1,5}$/.test(port) && n >= min && n <= 65535 ? undefined : `port "${port}" is not in ${min}..65535`;
}
/** host:port (portRequired) or host[:port]; an IPv6 host is bracketed: [::1]:9090. */
function hostPort(portRequired: boolean, portMin: number): StrCheck {
  return (s) => {
    const m = /^\[([^\]]*)\](?::([^:]*))?$/.exec(s) ?? /^([^:[\]]+)(?::([^:]*))?$/.exec(s);
    if (!m) return `"${s}" is not host${portRequired ? ':port' : '[:port]'} (IPv6 as [::1]:port)`;
    const [, host = '', port] = m;
    if (s.startsWith('[') && !isIPv6(host)) return `"${host}" is not an IPv6 address`;
    if (port === undefined) return portRequired ? `"${s}" has no port (expected host:port)` : checkHost(host);
    return (s.startsWith('[') ? undefined : checkHost(host)) ?? checkPort(port, portMin);
  };
}
const registryHost = hostPort(false, 1);
const mirror: StrCheck = (s) => {
  if (!s.includes('://')) return registryHost(s);
  let url: URL;
  try {
    url = new URL(s);
  } catch {
    return `"${s}" is not a valid URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `mirror URL "${s}" must be http or https`;
  return url.username || url.password ? `mirror URL "${s}" must not carry credentials` : undefined;
};
const group: StrCheck = (s) =>
  s === '' ||
  (/^\d{1,10}$/.test(s) && Number(s) < 4294967295) ||
  /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/.test(s)
    ? undefined
    : `"${s}" is not a group name or numeric gid`;
const handlerName = (s: string): string | undefined =>
  HANDLER_NAME.test(s) ? undefined : `handler name "${s}" must match ${HANDLER_NAME.source}`;
const registryKey = (s: string): string | undefined => {
  const why = registryHost(s);
  return why === undefined ? undefined : `registry key: ${why}`;
};

// ---- row builders: they turn a typed check into a Check over any value, so no casts are needed --------------------

const flagOf = (path: string): string => path.replace(/[._]/g, '-');
const strCheck =
  (c?: StrCheck): Check | undefined =>
  c && ((v) => (typeof v === 'string' ? c(v) : undefined));
const listCheck =
  (c: StrCheck, nonEmptyList: boolean): Check =>
  (v) => {
    if (!Array.isArray(v)) return undefined;
    if (nonEmptyList && v.length === 0) return 'must list at least one entry';
    for (const s of v) {
      const why = c(s);
      if (why !== undefined) return why;
    }
    return undefined;
  };
const rangeCheck =
  (min: number, max: number): Check =>
  (v) =>
    typeof v === 'number' && (v < min || v > max) ? `${v} is out of range ${min}..${max}` : undefined;

function str<P extends string>(path: P, def: string, live: boolean, doc: string, c?: StrCheck): OptionSpec<P> {
  return { kind: 'option', path, type: 'string', default: def, live, doc, flag: flagOf(path), check: strCheck(c) };
}
function int<P extends string>(path: P, def: number, live: boolean, doc: string, min: number, max: number): OptionSpec<P> {
  return { kind: 'option', path, type: 'int', default: def, live, doc, flag: flagOf(path), check: rangeCheck(min, max) };
}
function bool<P extends string>(path: P, def: boolean, live: boolean, doc: string): OptionSpec<P> {
  return { kind: 'option', path, type: 'bool', default: def, live, doc, flag: flagOf(path) };
}
function strs<P extends string>(path: P, def: string[], live: boolean, doc: string, c: StrCheck, atLeastOne = false): OptionSpec<P> {
  return { kind: 'option', path, type: 'string[]', default: def, live, doc, flag: flagOf(path), check: listCheck(c, atLeastOne) };
}
function map<P extends string>(spec: Omit<MapSpec<P>, 'kind'>): MapSpec<P> {
  return { kind: 'map', ...spec };
}

const LIVE = true;
const RESTART = false;
const MiB = 1024 * 1024;

// ---- the table ----------------------------------------------------------------------------------------------------

const ROWS = [
  str('log_level', 'info', LIVE, `Log verbosity: ${LOG_LEVELS.join(', ')}.`, oneOf(LOG_LEVELS)),
  str('root', '/var/lib/berth', RESTART, 'Storage root: images, layers, container directories.', absolutePath),
  str('state_dir', '/run/berth', RESTART, 'Runtime state: sockets, pinned namespaces, exit files.', absolutePath),

  str('api.listen', '/run/berth/berth.sock', RESTART, 'Unix socket the CRI gRPC API listens on.', absolutePath),
  str('api.socket_group', '', RESTART, 'Group owning the API socket (mode 0660): a name or gid; "" = root\'s group.', group),
  int('api.max_message_bytes', 16 * MiB, RESTART, 'Largest gRPC message accepted or sent, 1 MiB..256 MiB.', MiB, 256 * MiB),
  int('api.shutdown_timeout_seconds', 10, LIVE, 'How long shutdown waits for in-flight calls, 0..600.', 0, 600),
  int('api.container_events_queue_size', 1000, LIVE, 'Events a GetContainerEvents subscriber may lag behind before it is dropped, 1..1000000.', 1, 1_000_000),

  str('runtime.default_handler', 'runc', LIVE, 'Handler used when a pod names no runtime handler.', nonEmpty),
  str('runtime.cgroup_driver', 'cgroupfs', RESTART, `Cgroup manager: ${CGROUP_DRIVERS.join(', ')}.`, oneOf(CGROUP_DRIVERS)),
  str('runtime.cgroup_parent', '/berth', RESTART, 'Cgroup parent for pods (cgroupfs driver).', nonEmpty),
  str('runtime.conmon_path', '/usr/bin/conmon', LIVE, 'The conmon binary that supervises each container.', absolutePath),
  int('runtime.pids_limit', 0, LIVE, 'Default pids limit per container; 0 = unlimited.', 0, Number.MAX_SAFE_INTEGER),
  map({
    path: 'runtime.handlers',
    doc: 'OCI runtimes by handler name; a file adds handlers or overrides fields of the defaults.',
    live: LIVE,
    checkName: handlerName,
    fields: [
      { name: 'path', type: 'string', doc: 'Absolute path of the OCI runtime binary.', check: strCheck(absolutePath) },
      { name: 'root', type: 'string', doc: 'State root of this runtime; "" = <state_dir>/runtimes/<name>.', default: '', check: strCheck(absoluteOrEmpty) },
      { name: 'type', type: 'string', doc: 'Runtime kind; only "oci" for now.', default: 'oci', check: strCheck(oneOf(['oci'])) },
    ],
    default: {
      runc: { path: '/usr/sbin/runc', root: '', type: 'oci' },
      crun: { path: '/usr/bin/crun', root: '', type: 'oci' },
    },
  }),

  int('image.pull_parallelism', 3, LIVE, 'Layers downloaded at once per pull, 1..32.', 1, 32),
  int('image.pull_progress_timeout_seconds', 60, LIVE, 'A pull making no progress this long is cancelled, 1..3600.', 1, 3600),
  int('image.max_manifest_bytes', 4 * MiB, LIVE, 'Largest manifest or index accepted, 1 KiB..256 MiB.', 1024, 256 * MiB),
  int('image.max_config_bytes', 8 * MiB, LIVE, 'Largest image config accepted, 1 KiB..256 MiB.', 1024, 256 * MiB),
  int('image.max_layer_bytes', 32 * 1024 * MiB, LIVE, 'Largest uncompressed layer accepted (stops decompression bombs), 1 MiB..1 TiB.', MiB, 1024 * 1024 * MiB),
  int('image.max_layer_entries', 1_000_000, LIVE, 'Most tar entries accepted in one layer, 1..100000000.', 1, 100_000_000),
  int('image.request_timeout_seconds', 30, LIVE, 'Registry connect and response-headers timeout, 1..600.', 1, 600),
  int('image.retries', 3, LIVE, 'Retries (with backoff) of a registry request after a 5xx or a reset, 0..10.', 0, 10),
  strs('image.pinned_images', [], LIVE, 'Images never removed by RemoveImage or garbage collection.', nonEmpty),
  str('image.registries_config_dir', '/etc/berth/certs.d', LIVE, 'certs.d layout of per-registry CA and client certs.', absolutePath),
  map({
    path: 'image.registries',
    doc: 'Per-registry settings, keyed by "host[:port]".',
    live: LIVE,
    checkName: registryKey,
    fields: [
      { name: 'mirrors', type: 'string[]', doc: 'Mirrors tried first: "host[:port]" or http(s) URLs.', default: [], check: listCheck(mirror, false) },
      { name: 'insecure', type: 'bool', doc: 'Allow plain HTTP to this registry.', default: false },
      { name: 'blocked', type: 'bool', doc: 'Refuse every pull from this registry.', default: false },
    ],
    default: {},
  }),

  str('network.cni_conf_dir', '/etc/cni/net.d', LIVE, 'Directory of CNI network configuration files.', absolutePath),
  strs('network.cni_plugin_dirs', ['/usr/lib/cni', '/opt/cni/bin'], LIVE, 'Directories searched for CNI plugin binaries.', absolutePath, true),
  str('network.default_network', '', LIVE, 'CNI network for pods; "" = the first config file by name.'),
  int('network.plugin_timeout_seconds', 60, LIVE, 'Timeout of one CNI plugin invocation, 1..600.', 1, 600),

  bool('metrics.enabled', true, RESTART, 'Serve Prometheus metrics over HTTP.'),
  str('metrics.address', '127.0.0.1:9090', RESTART, 'Metrics listen address, host:port (IPv6 as [::1]:port).', hostPort(true, 0)),

  str('streaming.address', '127.0.0.1', RESTART, 'Address the exec/attach/port-forward server binds.', checkHost),
  int('streaming.port', 0, RESTART, 'Streaming server port; 0 = pick a free port.', 0, 65535),
  str('streaming.tls_cert_file', '', RESTART, 'TLS certificate for streaming; "" = no TLS (set both or neither).', absoluteOrEmpty),
  str('streaming.tls_key_file', '', RESTART, 'TLS private key for streaming; "" = no TLS (set both or neither).', absoluteOrEmpty),
  int('streaming.token_ttl_seconds', 60, LIVE, 'How long a streaming URL stays valid, 1..3600.', 1, 3600),
  int('streaming.idle_timeout_seconds', 14400, LIVE, 'Streaming sessions idle this long are closed, 1..604800.', 1, 604800),
];

/** Every option and map, in rendering order. */
export const SCHEMA: readonly SchemaEntry[] = ROWS;
export const OPTIONS: readonly OptionSpec[] = SCHEMA.flatMap((e) => (e.kind === 'option' ? [e] : []));
export const MAPS: readonly MapSpec[] = SCHEMA.flatMap((e) => (e.kind === 'map' ? [e] : []));

// Compile-time guard: the table's paths and BerthConfig's leaf paths (maps count as leaves) are the same set.
type Leaf<T> = T extends OptionValue ? true : string extends keyof T ? true : false;
type ConfigPaths<T, P extends string = ''> = {
  [K in keyof T & string]: Leaf<T[K]> extends true ? `${P}${K}` : ConfigPaths<T[K], `${P}${K}.`>;
}[keyof T & string];
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Assert<T extends true> = T;
export type SchemaMatchesConfig = Assert<Same<(typeof ROWS)[number]['path'], ConfigPaths<BerthConfig>>>;
