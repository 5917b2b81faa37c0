import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  BerthConfig,
  ConfigError,
  DEFAULT_CONFIG_FILE,
  configToJSON,
  defaultConfig,
  diffConfig,
  loadConfig,
  parseArgs,
  renderConfig,
} from '../../src/server/config';

let tmp: string;
let dropDir: string;
let mainFile: string;

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-config-'));
  dropDir = join(tmp, 'berth.d');
  mkdirSync(dropDir);
  mainFile = join(tmp, 'berth.toml');
  writeFileSync(mainFile, '');
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const write = (file: string, text: string): string => {
  writeFileSync(file, text);
  return file;
};
const load = (main: string, flags?: Record<string, string>): BerthConfig =>
  loadConfig({ configFile: write(mainFile, main), configDir: dropDir, flags });

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
  throw new Error('expected a ConfigError');
}

describe('sources and precedence', () => {
  test('defaults when no files', () => {
    const cfg = loadConfig({ configFile: mainFile, configDir: join(tmp, 'missing') });
    expect(cfg).toEqual(defaultConfig());
    expect(cfg.log_level).toBe('info');
    expect(cfg.api.listen).toBe('/run/berth/berth.sock');
    expect(cfg.api.max_message_bytes).toBe(16777216);
    expect(cfg.runtime.handlers['runc']).toEqual({ path: '/usr/sbin/runc', root: '/run/berth/runtimes/runc', type: 'oci' });
    expect(cfg.runtime.handlers['crun']?.path).toBe('/usr/bin/crun');
    expect(cfg.network.cni_plugin_dirs).toEqual(['/usr/lib/cni', '/opt/cni/bin']);
    expect(cfg.image.registries).toEqual({});
    expect(cfg.metrics).toEqual({ enabled: true, address: '127.0.0.1:9090' });
  });

  (existsSync(DEFAULT_CONFIG_FILE) ? test.skip : test)('a missing default main file is fine', () => {
    expect(loadConfig({ configDir: dropDir })).toEqual(defaultConfig());
  });

  test('main file overrides defaults', () => {
    const cfg = load('log_level = "debug"\n[api]\nshutdown_timeout_seconds = 0\n[image]\npinned_images = ["pause:3.9"]\n');
    expect(cfg.log_level).toBe('debug');
    expect(cfg.api.shutdown_timeout_seconds).toBe(0);
    expect(cfg.api.listen).toBe('/run/berth/berth.sock');
    expect(cfg.image.pinned_images).toEqual(['pause:3.9']);
  });

  test('drop-ins apply in lexical order, last wins, non-.toml files ignored', () => {
    write(join(dropDir, '20-b.toml'), '[image]\npull_parallelism = 7\n');
    write(join(dropDir, '10-a.toml'), '[image]\npull_parallelism = 5\nmax_config_bytes = 2048\n');
    write(join(dropDir, '30-c.toml.bak'), 'this is not toml');
    write(join(dropDir, 'README'), 'nor this');
    const cfg = load('[image]\npull_parallelism = 2\npinned_images = ["a"]\n');
    expect(cfg.image.pull_parallelism).toBe(7);
    expect(cfg.image.max_config_bytes).toBe(2048);
    expect(cfg.image.pinned_images).toEqual(['a']);
  });

  test('arrays are replaced whole, tables merge key by key', () => {
    write(join(dropDir, '10.toml'), '[network]\ncni_plugin_dirs = ["/x"]\n[runtime.handlers.runc]\nroot = "/r"\n');
    const cfg = load('');
    expect(cfg.network.cni_plugin_dirs).toEqual(['/x']);
    expect(cfg.runtime.handlers['runc']).toEqual({ path: '/usr/sbin/runc', root: '/r', type: 'oci' });
  });

  test('flags beat files and are parsed to the option type', () => {
    write(join(dropDir, '10.toml'), 'log_level = "warn"\n');
    const cfg = load('log_level = "debug"\n', {
      'log-level': 'trace',
      'api-max-message-bytes': '2097152',
      'metrics-enabled': 'false',
      'network-cni-plugin-dirs': '/a, /b',
    });
    expect(cfg.log_level).toBe('trace');
    expect(cfg.api.max_message_bytes).toBe(2097152);
    expect(cfg.metrics.enabled).toBe(false);
    expect(cfg.network.cni_plugin_dirs).toEqual(['/a', '/b']);
  });

  test('bad flag values name the flag', () => {
    const e = configError(() => load('', { 'image-pull-parallelism': 'many' }));
    expect(e.file).toBe('command line');
    expect(e.message).toBe('config error: command line: flag --image-pull-parallelism: expected an integer, got "many"');
    expect(configError(() => load('', { 'no-such': 'x' })).message).toContain('unknown flag --no-such');
  });

  test('an explicitly named missing file is an error', () => {
    const file = join(tmp, 'nope.toml');
    const e = configError(() => loadConfig({ configFile: file, configDir: dropDir }));
    expect(e.file).toBe(file);
    expect(e.message).toBe(`config error: ${file}: cannot read: file not found`);
  });

  test('handlers from files are added to the defaults; root defaults under state_dir', () => {
    write(join(dropDir, '50-kata.toml'), '[runtime.handlers.kata-qemu]\npath = "/opt/kata/bin/kata-runtime"\n');
    const cfg = load('state_dir = "/run/b2"\n[runtime]\ndefault_handler = "kata-qemu"\n');
    expect(Object.keys(cfg.runtime.handlers).sort()).toEqual(['crun', 'kata-qemu', 'runc']);
    expect(cfg.runtime.handlers['kata-qemu']).toEqual({
      path: '/opt/kata/bin/kata-runtime',
      root: '/run/b2/runtimes/kata-qemu',
      type: 'oci',
    });
    expect(cfg.runtime.handlers['runc']?.root).toBe('/run/b2/runtimes/runc');
    expect(cfg.runtime.default_handler).toBe('kata-qemu');
  });
});

describe('validation', () => {
  test.each([
    ['top level', 'bogus = 1\n', 'bogus'],
    ['in a section', '[api]\nlisten = "/x.sock"\nport = 1\n', 'api.port'],
    ['inside a handler entry', '[runtime.handlers.runc]\npaht = "/x"\n', 'runtime.handlers.runc.paht'],
    ['unknown section', '[apii]\nlisten = "/x"\n', 'apii'],
    ['inside a registry entry', '[image.registries."127.0.0.1:5000"]\nmirror = []\n', 'image.registries."127.0.0.1:5000".mirror'],
  ])('unknown key %s', (_where, text, key) => {
    const e = configError(() => load(text));
    expect(e.file).toBe(mainFile);
    expect(e.key).toBe(key);
    const shown = key.includes('"') ? key : `"${key}"`;
    expect(e.message).toBe(`config error: ${mainFile}: key ${shown}: unknown key`);
  });

  test('an unknown key in a drop-in names the drop-in', () => {
    const drop = write(join(dropDir, '10.toml'), '[metrics]\nport = 9\n');
    const e = configError(() => load(''));
    expect([e.file, e.key]).toEqual([drop, 'metrics.port']);
  });

  test.each([
    ['wrong type', '[api]\nmax_message_bytes = "16M"\n', 'api.max_message_bytes', 'expected an integer, got a string'],
    ['float for int', '[image]\npull_parallelism = 2.5\n', 'image.pull_parallelism', 'expected an integer, got a float'],
    ['string for array', '[network]\ncni_plugin_dirs = "/usr/lib/cni"\n', 'network.cni_plugin_dirs', 'expected an array of strings'],
    ['scalar for table', 'api = 3\n', 'api', 'expected a table, got an integer'],
    ['out of range', '[image]\npull_parallelism = 33\n', 'image.pull_parallelism', '33 is out of range 1..32'],
    ['below range', '[api]\nmax_message_bytes = 1000\n', 'api.max_message_bytes', 'out of range'],
    ['bad enum', 'log_level = "verbose"\n', 'log_level', '"verbose" is not one of trace, debug, info, warn, error, fatal'],
    ['bad cgroup driver', '[runtime]\ncgroup_driver = "v2"\n', 'runtime.cgroup_driver', 'is not one of'],
    ['relative path', 'root = "var/lib/berth"\n', 'root', '"var/lib/berth" is not an absolute path'],
    ['relative list entry', '[network]\ncni_plugin_dirs = ["/ok", "bin"]\n', 'network.cni_plugin_dirs', '"bin" is not an absolute path'],
    ['relative handler path', '[runtime.handlers.runc]\npath = "runc"\n', 'runtime.handlers.runc.path', 'not an absolute path'],
    ['bad listen address', '[metrics]\naddress = "localhost"\n', 'metrics.address', 'has no port'],
    ['bad port', '[metrics]\naddress = "127.0.0.1:70000"\n', 'metrics.address', 'not in 0..65535'],
    ['unbracketed ipv6', '[metrics]\naddress = "::1:9090"\n', 'metrics.address', 'not host:port'],
    ['bad handler name', '[runtime.handlers.Kata_1]\npath = "/x"\n', 'runtime.handlers.Kata_1', 'must match'],
    ['bad handler type', '[runtime.handlers.runc]\ntype = "vm"\n', 'runtime.handlers.runc.type', 'is not one of oci'],
    ['bad registry mirror', '[image.registries."docker.io"]\nmirrors = ["ftp://m"]\n', 'image.registries."docker.io".mirrors', 'http or https'],
    ['bad socket group', '[api]\nsocket_group = "no spaces"\n', 'api.socket_group', 'not a group name'],
  ])('%s', (_what, text, key, reason) => {
    const e = configError(() => load(text));
    expect([e.file, e.key]).toEqual([mainFile, key]);
    expect(e.reason).toContain(reason);
    expect(e.message.split('\n')).toHaveLength(1);
  });

  test('valid addresses, groups and mirrors are accepted', () => {
    const cfg = load(
      '[api]\nsocket_group = "1000"\n[metrics]\naddress = "[::1]:0"\n[streaming]\naddress = "::1"\n' +
        '[image.registries."localhost:5000"]\nmirrors = ["mirror.example:443", "https://m.example/v2"]\ninsecure = true\n',
    );
    expect(cfg.metrics.address).toBe('[::1]:0');
    expect(cfg.image.registries['localhost:5000']).toEqual({
      mirrors: ['mirror.example:443', 'https://m.example/v2'],
      insecure: true,
      blocked: false,
    });
  });

  test('default_handler must name a defined handler', () => {
    const e = configError(() => load('[runtime]\ndefault_handler = "foo"\n'));
    expect(e.message).toBe(
      `config error: ${mainFile}: key "runtime.default_handler": handler "foo" is not defined in [runtime.handlers]`,
    );
  });

  test('a new handler needs a path', () => {
    const e = configError(() => load('[runtime.handlers.kata]\ntype = "oci"\n'));
    expect([e.file, e.key, e.reason]).toEqual([mainFile, 'runtime.handlers.kata.path', 'is required']);
  });

  test('TLS cert and key go together', () => {
    const e = configError(() => load('[streaming]\ntls_cert_file = "/etc/berth/tls.crt"\n'));
    expect(e.key).toBe('streaming.tls_cert_file');
    expect(e.reason).toContain('must be set together');
    const both = '[streaming]\ntls_cert_file = "/c.pem"\ntls_key_file = "/k.pem"\n';
    expect(load(both).streaming.tls_key_file).toBe('/k.pem');
  });

  test('a TOML syntax error names the file and line', () => {
    const drop = write(join(dropDir, '10-broken.toml'), '[api]\nlisten = "/a.sock"\nshutdown_timeout_seconds = = 3\n');
    const e = configError(() => load(''));
    expect(e.file).toBe(drop);
    expect(e.message).toMatch(new RegExp(`^config error: ${drop}: TOML syntax error at line 3, column \\d+: .+$`));
  });
});

describe('rendering', () => {
  function roundTrip(cfg: BerthConfig): { text: string; again: BerthConfig } {
    const text = renderConfig(cfg);
    const file = write(join(tmp, 'rendered.toml'), text);
    return { text, again: loadConfig({ configFile: file, configDir: dropDir }) };
  }

  test('render → load gives an equal config, and rendering is stable', () => {
    write(join(dropDir, '10.toml'), '[runtime.handlers."kata.v2"]\npath = "/opt/kata/bin/kata"\n');
    const cfg = load(
      'log_level = "debug"\n[image]\npinned_images = ["registry.k8s.io/pause:3.9"]\n' +
        '[image.registries."127.0.0.1:5000"]\ninsecure = true\nmirrors = ["[::1]:5001"]\n' +
        '[image.registries."docker.io"]\nmirrors = ["https://mirror.gcr.io"]\n' +
        '[network]\ndefault_network = "tab\\there \\"quoted\\" back\\\\slash \\u0001 \\u007f é"\n',
    );
    rmSync(join(dropDir, '10.toml'));
    const { text, again } = roundTrip(cfg);
    expect(again).toEqual(cfg);
    expect(renderConfig(again)).toBe(text);
    expect(text).toContain('[image.registries."127.0.0.1:5000"]');
    expect(text).toContain('[runtime.handlers."kata.v2"]');
    expect(text.indexOf('"127.0.0.1:5000"]')).toBeLessThan(text.indexOf('"docker.io"]'));
  });

  test('every option is preceded by its doc, default and liveness', () => {
    const text = renderConfig(defaultConfig());
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (/^[a-z_]+ = /.test(line)) expect(lines[i - 1]).toMatch(/^# (Default: .*|Required) \((live|restart needed)\)$/);
    });
    expect(text).toContain('# Default: "info" (live)\nlog_level = "info"');
    expect(text).toContain('pinned_images = []');
    expect(roundTrip(defaultConfig()).again).toEqual(defaultConfig());
  });
});

describe('reload diff and JSON', () => {
  test('diffConfig splits changed keys into live and restart', () => {
    const before = defaultConfig();
    const after = load(
      'log_level = "debug"\nroot = "/srv/berth"\n[metrics]\nenabled = false\n' +
        '[runtime.handlers.kata]\npath = "/usr/bin/kata"\n[image]\npull_parallelism = 3\n',
    );
    expect(diffConfig(before, after)).toEqual({
      live: ['log_level', 'runtime.handlers'],
      restart: ['root', 'metrics.enabled'],
    });
    expect(diffConfig(after, after)).toEqual({ live: [], restart: [] });
  });

  test('configToJSON is a plain deep copy', () => {
    const cfg = defaultConfig();
    const json = configToJSON(cfg);
    expect(JSON.parse(JSON.stringify(json))).toEqual(cfg);
    expect(json['runtime']).not.toBe(cfg.runtime);
  });
});

describe('parseArgs', () => {
  test('command defaults to run; known commands are recognised', () => {
    expect(parseArgs([])).toEqual({ command: 'run', rest: [], flags: {} });
    expect(parseArgs(['status', 'containers', 'abc'])).toMatchObject({ command: 'status', rest: ['containers', 'abc'] });
    expect(() => parseArgs(['config', 'extra'])).toThrow('unexpected argument "extra"');
    for (const c of ['run', 'config', 'version', 'status', 'help']) expect(parseArgs([c]).command).toBe(c);
  });

  test('--x=y and --x y forms, config file and dir, command anywhere', () => {
    const args = parseArgs(['--config', '/c.toml', 'config', '--config-dir=/d', '--log-level=debug', '--streaming-port', '0']);
    expect(args).toEqual({
      command: 'config',
      rest: [],
      configFile: '/c.toml',
      configDir: '/d',
      flags: { 'log-level': 'debug', 'streaming-port': '0' },
    });
    expect(parseArgs(['--api-socket-group=']).flags).toEqual({ 'api-socket-group': '' });
  });

  test('unknown flag, unknown command, missing value and extra words are errors', () => {
    expect(configError(() => parseArgs(['--log-levle', 'x'])).message).toBe('config error: command line: unknown flag --log-levle');
    expect(configError(() => parseArgs(['-v'])).reason).toBe('unknown flag -v');
    expect(configError(() => parseArgs(['start'])).reason).toContain('unknown command "start"');
    expect(configError(() => parseArgs(['--log-level'])).reason).toBe('flag --log-level needs a value');
    expect(configError(() => parseArgs(['run', 'config'])).reason).toBe('unexpected argument "config"');
  });

  test('parsed flags feed loadConfig', () => {
    const args = parseArgs(['--metrics-address=[::1]:9091', '--image-pinned-images', 'a,b']);
    const cfg = loadConfig({ configFile: mainFile, configDir: dropDir, flags: args.flags });
    expect(cfg.metrics.address).toBe('[::1]:9091');
    expect(cfg.image.pinned_images).toEqual(['a', 'b']);
  });
});
