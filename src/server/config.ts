// Configuration: defaults → main file → drop-ins → flags, each layer checked against the schema as it is merged (so an
// error names the file that caused it), then cross-field checks on the result. Also rendering and the reload diff.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, posix } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse, TomlError } from 'smol-toml';
import { BerthConfig, Check, MapSpec, OPTIONS, OptionSpec, OptionType, OptionValue, SCHEMA } from './config-schema';

// Callers import the config types from here; the schema module is the single definition.
export type {
  ApiConfig, BerthConfig, CgroupDriver, HandlerConfig, ImageConfig, LogLevel, MetricsConfig, NetworkConfig,
  RegistryConfig, RuntimeConfig, StreamingConfig,
} from './config-schema';

export const DEFAULT_CONFIG_FILE = '/etc/berth/berth.toml';
export const DEFAULT_CONFIG_DIR = '/etc/berth/berth.d';
export const COMMAND_LINE = 'command line';
export const DEFAULTS = 'defaults';
export const COMMANDS = ['run', 'config', 'version', 'status', 'help'] as const;
export type Command = (typeof COMMANDS)[number];

export interface LoadOptions {
  configFile?: string;
  configDir?: string;
  /** Flag name without dashes → raw value, as parseArgs returns them. */
  flags?: Record<string, string>;
}
export interface ParsedArgs {
  command: Command;
  /** Words after the command (only `status` takes any: what to show). */
  rest: string[];
  configFile?: string;
  configDir?: string;
  flags: Record<string, string>;
}
export interface ConfigDiff {
  live: string[];
  restart: string[];
}
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

const OPTION_BY_PATH = new Map(OPTIONS.map((o) => [o.path, o]));
const OPTION_BY_FLAG = new Map(OPTIONS.map((o) => [o.flag, o]));

export class ConfigError extends Error {
  /** file: a path, "command line" or "defaults"; key: dotted TOML path ("" when the problem is not one key). */
  constructor(
    readonly file: string,
    readonly key: string,
    readonly reason: string,
  ) {
    const flag = file === COMMAND_LINE ? OPTION_BY_PATH.get(key)?.flag : undefined;
    // A key with quoted segments (image.registries."host:5000") is shown bare rather than double-quoted.
    const subject = flag ? `flag --${flag}: ` : key.includes('"') ? `key ${key}: ` : key ? `key "${key}": ` : '';
    super(`config error: ${file}: ${subject}${reason}`);
    this.name = 'ConfigError';
  }
}

// ---- the schema as a tree, so raw TOML is walked by exact key (a quoted "api.listen" key is not api.listen) ---------

interface Section {
  kind: 'section';
  children: Map<string, Section | OptionSpec | MapSpec>;
}
const ROOT: Section = { kind: 'section', children: new Map() };
for (const entry of SCHEMA) {
  const segs = entry.path.split('.');
  const last = segs.pop() ?? '';
  let cur = ROOT;
  for (const s of segs) {
    const next = cur.children.get(s) ?? { kind: 'section', children: new Map() };
    if (next.kind !== 'section') throw new Error(`schema: ${entry.path} nests under an option`);
    cur.children.set(s, next);
    cur = next;
  }
  cur.children.set(last, entry);
}

// The working representation while loading; it becomes a BerthConfig once every leaf has passed the schema.
interface Tree {
  [key: string]: OptionValue | Tree;
}
type Raw = Record<string, unknown>;
type Origins = Map<string, string>;

const isTable = (v: unknown): v is Raw =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
const isTree = (v: unknown): v is Tree => isTable(v);
const BARE_KEY = /^[A-Za-z0-9_-]+$/;
const keyPath = (segs: readonly string[]): string =>
  segs.map((s) => (BARE_KEY.test(s) ? s : tomlString(s))).join('.');

function typeName(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (isTable(v)) return 'a table';
  if (typeof v === 'number') return Number.isInteger(v) ? 'an integer' : 'a float';
  return typeof v === 'boolean' ? 'a boolean' : typeof v === 'string' ? 'a string' : typeof v;
}

const EXPECTED: Record<OptionType, string> = {
  string: 'a string',
  int: 'an integer',
  bool: 'true or false',
  'string[]': 'an array of strings',
};

function checked(type: OptionType, check: Check | undefined, v: unknown, file: string, key: string): OptionValue {
  let value: OptionValue | undefined;
  if (type === 'string' && typeof v === 'string') value = v;
  else if (type === 'int' && typeof v === 'number' && Number.isSafeInteger(v)) value = v;
  else if (type === 'bool' && typeof v === 'boolean') value = v;
  else if (type === 'string[]' && Array.isArray(v) && v.every((s) => typeof s === 'string')) value = [...v];
  if (value === undefined) throw new ConfigError(file, key, `expected ${EXPECTED[type]}, got ${typeName(v)}`);
  const why = check?.(value);
  if (why !== undefined) throw new ConfigError(file, key, why);
  return value;
}

function childTree(tree: Tree, k: string): Tree {
  const cur = tree[k];
  if (isTree(cur)) return cur;
  const fresh: Tree = {};
  tree[k] = fresh;
  return fresh;
}

function applyTable(tree: Tree, raw: Raw, section: Section, segs: string[], file: string, origins: Origins): void {
  for (const [k, v] of Object.entries(raw)) {
    const here = [...segs, k];
    const key = keyPath(here);
    const shape = section.children.get(k);
    if (shape === undefined) throw new ConfigError(file, key, 'unknown key');
    if (shape.kind === 'option') {
      tree[k] = checked(shape.type, shape.check, v, file, key);
      origins.set(key, file);
    } else {
      if (!isTable(v)) throw new ConfigError(file, key, `expected a table, got ${typeName(v)}`);
      if (shape.kind === 'map') applyMap(childTree(tree, k), v, shape, here, file, origins);
      else applyTable(childTree(tree, k), v, shape, here, file, origins);
    }
  }
}

// Map entries merge by name and then field by field, so a file can add a handler or tweak a default one.
function applyMap(map: Tree, raw: Raw, spec: MapSpec, segs: string[], file: string, origins: Origins): void {
  for (const [name, rawEntry] of Object.entries(raw)) {
    const entrySegs = [...segs, name];
    const entryKey = keyPath(entrySegs);
    const bad = spec.checkName(name); // also keeps "__proto__" and friends out of the tree
    if (bad !== undefined) throw new ConfigError(file, entryKey, bad);
    if (!isTable(rawEntry)) throw new ConfigError(file, entryKey, `expected a table, got ${typeName(rawEntry)}`);
    let entry = Object.hasOwn(map, name) ? map[name] : undefined;
    if (!isTree(entry)) {
      entry = {};
      for (const f of spec.fields) if (f.default !== undefined) entry[f.name] = structuredClone(f.default);
      map[name] = entry;
      origins.set(entryKey, file);
    }
    for (const [fname, fv] of Object.entries(rawEntry)) {
      const fkey = keyPath([...entrySegs, fname]);
      const field = spec.fields.find((f) => f.name === fname);
      if (field === undefined) throw new ConfigError(file, fkey, 'unknown key');
      entry[fname] = checked(field.type, field.check, fv, file, fkey);
      origins.set(fkey, file);
    }
  }
}

function setNested(raw: Raw, segs: string[], value: unknown): void {
  let cur = raw;
  for (const s of segs.slice(0, -1)) {
    const next = cur[s];
    cur = isTable(next) ? next : (cur[s] = {});
  }
  cur[segs[segs.length - 1] ?? ''] = value;
}

function defaultsLayer(): Raw {
  const raw: Raw = {};
  for (const e of SCHEMA) setNested(raw, e.path.split('.'), structuredClone(e.default));
  return raw;
}

function finalize(tree: Tree, origins: Origins): BerthConfig {
  for (const spec of SCHEMA) {
    if (spec.kind !== 'map') continue;
    const map = spec.path.split('.').reduce<Tree>((t, k) => childTree(t, k), tree);
    for (const [name, entry] of Object.entries(map)) {
      if (!isTree(entry)) continue;
      const missing = spec.fields.find((f) => entry[f.name] === undefined);
      if (missing !== undefined) {
        const entryKey = keyPath([...spec.path.split('.'), name]);
        throw new ConfigError(origins.get(entryKey) ?? DEFAULTS, `${entryKey}.${missing.name}`, 'is required');
      }
      const ordered: Tree = {}; // fields in schema order, whichever layer set them first
      for (const f of spec.fields) ordered[f.name] = entry[f.name] ?? '';
      map[name] = ordered;
    }
  }
  // Safe: the tree was seeded from every schema row and each leaf written since was type-checked against its row.
  const cfg = tree as unknown as BerthConfig;
  for (const [name, h] of Object.entries(cfg.runtime.handlers)) {
    if (h.root === '') h.root = posix.join(cfg.state_dir, 'runtimes', name);
  }
  const dh = cfg.runtime.default_handler;
  if (!Object.hasOwn(cfg.runtime.handlers, dh)) {
    const key = 'runtime.default_handler';
    throw new ConfigError(origins.get(key) ?? DEFAULTS, key, `handler "${dh}" is not defined in [runtime.handlers]`);
  }
  const { tls_cert_file: cert, tls_key_file: tlsKey } = cfg.streaming;
  if ((cert === '') !== (tlsKey === '')) {
    const key = cert === '' ? 'streaming.tls_key_file' : 'streaming.tls_cert_file';
    const reason = 'streaming.tls_cert_file and streaming.tls_key_file must be set together';
    throw new ConfigError(origins.get(key) ?? DEFAULTS, key, reason);
  }
  return cfg;
}

function build(layers: { file: string; raw: Raw }[]): BerthConfig {
  const tree: Tree = {};
  const origins: Origins = new Map();
  for (const { file, raw } of [{ file: DEFAULTS, raw: defaultsLayer() }, ...layers]) {
    applyTable(tree, raw, ROOT, [], file, origins);
  }
  return finalize(tree, origins);
}

// ---- sources ------------------------------------------------------------------------------------------------------

// Duck-typed: errors from node:fs may come from another realm (jest's sandbox), so instanceof Error is unreliable.
const errCode = (e: unknown): string | undefined =>
  typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
const errText = (e: unknown): string =>
  typeof e === 'object' && e !== null && 'message' in e && typeof e.message === 'string' ? e.message : String(e);

function readToml(file: string, required: boolean): Raw | undefined {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(readFileSync(file));
  } catch (e) {
    if (errCode(e) === 'ENOENT' && !required) return undefined;
    const code = errCode(e);
    const why = code === 'ENOENT' ? 'file not found' : code === 'ERR_ENCODING_INVALID_ENCODED_DATA' ? 'not valid UTF-8' : errText(e);
    throw new ConfigError(file, '', `cannot read: ${why}`);
  }
  try {
    return parse(text);
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    const what = (e.message.split('\n')[0] ?? '').replace(/^Invalid TOML document: /, '');
    throw new ConfigError(file, '', `TOML syntax error at line ${e.line}, column ${e.column}: ${what}`);
  }
}

// `*.toml` as a shell glob sees it (no dotfiles), regular files only, in byte order.
function dropIns(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    if (errCode(e) === 'ENOENT') return [];
    throw new ConfigError(dir, '', `cannot read directory: ${errText(e)}`);
  }
  return names
    .filter((n) => n.endsWith('.toml') && !n.startsWith('.') && statSync(join(dir, n), { throwIfNoEntry: false })?.isFile())
    .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    .map((n) => join(dir, n));
}

function parseFlagValue(spec: OptionSpec, text: string): OptionValue {
  const bad = (what: string): ConfigError => new ConfigError(COMMAND_LINE, spec.path, `expected ${what}, got "${text}"`);
  switch (spec.type) {
    case 'int':
      if (!/^[-+]?\d+$/.test(text)) throw bad('an integer');
      return Number(text);
    case 'bool':
      if (text !== 'true' && text !== 'false') throw bad('true or false');
      return text === 'true';
    case 'string[]':
      return text.split(',').map((s) => s.trim()).filter((s) => s !== '');
    case 'string':
      return text;
  }
}

function flagsLayer(flags: Record<string, string>): Raw {
  const raw: Raw = {};
  for (const [name, text] of Object.entries(flags)) {
    const spec = OPTION_BY_FLAG.get(name);
    if (spec === undefined) throw new ConfigError(COMMAND_LINE, '', `unknown flag --${name}`);
    setNested(raw, spec.path.split('.'), parseFlagValue(spec, text));
  }
  return raw;
}

export function defaultConfig(): BerthConfig {
  return build([]);
}

export function loadConfig(opts: LoadOptions = {}): BerthConfig {
  const layers: { file: string; raw: Raw }[] = [];
  const main = opts.configFile ?? DEFAULT_CONFIG_FILE;
  const mainRaw = readToml(main, opts.configFile !== undefined);
  if (mainRaw !== undefined) layers.push({ file: main, raw: mainRaw });
  for (const file of dropIns(opts.configDir ?? DEFAULT_CONFIG_DIR)) {
    const raw = readToml(file, true);
    if (raw !== undefined) layers.push({ file, raw });
  }
  if (opts.flags !== undefined) layers.push({ file: COMMAND_LINE, raw: flagsLayer(opts.flags) });
  return build(layers);
}

/** argv without node and the script: `berth [command] [--config FILE] [--config-dir DIR] [--flag value | --flag=value]...` */
export function parseArgs(argv: string[]): ParsedArgs {
  const out: ParsedArgs = { command: 'run', rest: [], flags: {} };
  let command: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '-h' || arg === '--help') {
      command ??= 'help';
    } else if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
      let value = eq < 0 ? argv[i + 1] : arg.slice(eq + 1);
      if (eq < 0) {
        if (value === undefined || value.startsWith('--')) throw new ConfigError(COMMAND_LINE, '', `flag --${name} needs a value`);
        i++;
      }
      value ??= '';
      if (name === 'config' || name === 'config-dir') {
        if (value === '') throw new ConfigError(COMMAND_LINE, '', `flag --${name} needs a value`);
        if (name === 'config') out.configFile = value;
        else out.configDir = value;
      } else if (OPTION_BY_FLAG.has(name)) {
        out.flags[name] = value;
      } else {
        throw new ConfigError(COMMAND_LINE, '', `unknown flag --${name}`);
      }
    } else if (arg.startsWith('-') && arg !== '-') {
      throw new ConfigError(COMMAND_LINE, '', `unknown flag ${arg}`);
    } else if (command === 'status') {
      out.rest.push(arg);
    } else if (command !== undefined) {
      throw new ConfigError(COMMAND_LINE, '', `unexpected argument "${arg}"`);
    } else {
      command = arg;
    }
  }
  if (command !== undefined) {
    const known = COMMANDS.find((c) => c === command);
    if (known === undefined) throw new ConfigError(COMMAND_LINE, '', `unknown command "${command}" (known: ${COMMANDS.join(', ')})`);
    out.command = known;
  }
  return out;
}

/** One line per flag, for `berth help`. */
export function flagUsage(): string {
  const rows: [string, string][] = [
    ['--config FILE', `Main config file (default ${DEFAULT_CONFIG_FILE}).`],
    ['--config-dir DIR', `Drop-in directory of *.toml files (default ${DEFAULT_CONFIG_DIR}).`],
    ...OPTIONS.map((o): [string, string] => [`--${o.flag} ${o.type.toUpperCase()}`, `${o.doc} Default: ${tomlValue(o.default)}`]),
  ];
  const width = Math.max(...rows.map(([f]) => f.length));
  return rows.map(([f, doc]) => `  ${f.padEnd(width)}  ${doc}\n`).join('');
}

// ---- rendering ----------------------------------------------------------------------------------------------------

const ESCAPES: Record<string, string> = { '"': '\\"', '\\': '\\\\', '\b': '\\b', '\t': '\\t', '\n': '\\n', '\f': '\\f', '\r': '\\r' };
// TOML basic strings may not hold raw control characters or DEL, which JSON.stringify would leave in.
function tomlString(s: string): string {
  const body = s.replace(
    // eslint-disable-next-line no-control-regex -- control characters are exactly what must be escaped
    /["\\\u0000-\u001f\u007f]/g,
    (c) => ESCAPES[c] ?? `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  return `"${body}"`;
}

function tomlValue(v: unknown): string {
  if (typeof v === 'string') return tomlString(v);
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `[${v.map(tomlValue).join(', ')}]`;
  throw new Error(`cannot render ${typeName(v)} as a TOML value`);
}

const liveTag = (live: boolean): string => (live ? '(live)' : '(restart needed)');
const docLines = (doc: string): string[] => doc.split('\n').map((l) => `# ${l}`);

function renderMap(map: Tree, spec: MapSpec, segs: string[], out: string[]): void {
  const defaults = Object.keys(spec.default).sort();
  out.push('', ...docLines(`[${keyPath(segs)}.<name>]: ${spec.doc}`));
  out.push(`# Default: ${defaults.length ? defaults.map(tomlString).join(', ') : 'none'} ${liveTag(spec.live)}`);
  for (const name of Object.keys(map).sort()) {
    const entry = map[name];
    if (!isTree(entry)) continue;
    out.push('', `[${keyPath([...segs, name])}]`);
    for (const f of spec.fields) {
      if (entry[f.name] === undefined) continue;
      const dflt = f.default === undefined ? 'Required' : `Default: ${tomlValue(f.default)}`;
      out.push(...docLines(f.doc), `# ${dflt} ${liveTag(spec.live)}`, `${f.name} = ${tomlValue(entry[f.name])}`);
    }
  }
}

function renderSection(tree: Tree, section: Section, segs: string[], out: string[]): void {
  const children = [...section.children];
  if (segs.length > 0 && children.some(([, s]) => s.kind === 'option')) out.push('', `[${keyPath(segs)}]`);
  let first = segs.length > 0;
  for (const [k, s] of children) {
    if (s.kind !== 'option') continue;
    if (!first) out.push('');
    first = false;
    out.push(...docLines(s.doc), `# Default: ${tomlValue(s.default)} ${liveTag(s.live)}`);
    out.push(`${keyPath([k])} = ${tomlValue(tree[k])}`);
  }
  for (const [k, s] of children) if (s.kind === 'map') renderMap(childOf(tree, k), s, [...segs, k], out);
  for (const [k, s] of children) if (s.kind === 'section') renderSection(childOf(tree, k), s, [...segs, k], out);
}

const childOf = (tree: Tree, k: string): Tree => {
  const v = tree[k];
  return isTree(v) ? v : {};
};
// BerthConfig is a Tree in all but name (its interfaces carry no index signature); read-only use below.
const asTree = (cfg: BerthConfig): Tree => cfg as unknown as Tree;

/** The effective configuration as commented TOML; loading it back yields an equal config. */
export function renderConfig(cfg: BerthConfig): string {
  const out = [
    '# berth configuration (effective values). Each option notes its default and whether a SIGHUP reload applies a',
    '# change live or it needs a restart. Drop-ins in ' + DEFAULT_CONFIG_DIR + ' override this file key by key.',
  ];
  renderSection(asTree(cfg), ROOT, [], out);
  return out.join('\n') + '\n';
}

// ---- reload and export --------------------------------------------------------------------------------------------

const valueAt = (cfg: BerthConfig, path: string): unknown =>
  path.split('.').reduce<unknown>((v, k) => (isTable(v) ? v[k] : undefined), cfg);

/** Changed options (maps as one key, e.g. "runtime.handlers"), split by whether a reload applies them live. */
export function diffConfig(oldCfg: BerthConfig, newCfg: BerthConfig): ConfigDiff {
  const diff: ConfigDiff = { live: [], restart: [] };
  for (const e of SCHEMA) {
    if (!isDeepStrictEqual(valueAt(oldCfg, e.path), valueAt(newCfg, e.path))) (e.live ? diff.live : diff.restart).push(e.path);
  }
  return diff;
}

/** A deep, plain copy for JSON output (CRI Status verbose info). */
export function configToJSON(cfg: BerthConfig): { [key: string]: JsonValue } {
  return JSON.parse(JSON.stringify(cfg)) as { [key: string]: JsonValue };
}

/** The configuration a running daemon moves to on reload: live options from `next`, the rest kept from `running`. */
export function applyLive(running: BerthConfig, next: BerthConfig): BerthConfig {
  const out = structuredClone(running);
  for (const e of SCHEMA) {
    if (!e.live) continue;
    const keys = e.path.split('.');
    const last = keys.pop() as string;
    const parent = keys.reduce<unknown>((v, k) => (isTable(v) ? v[k] : undefined), out);
    if (isTable(parent)) parent[last] = structuredClone(valueAt(next, e.path));
  }
  return out;
}
