// The berth command: `berth` (or `berth run`) serves the CRI; `berth config` prints the effective configuration.
import { sdNotify } from '../../native/sd-notify';
import { errorMessage } from '../common/errors';
import { packageVersion } from '../common/package-root';
import { BerthConfig, ConfigError, flagUsage, loadConfig, parseArgs, renderConfig } from './config';
import { Daemon } from './daemon';
import { createLogger, Logger } from './log';

const USAGE = `usage: berth [command] [--config FILE] [--config-dir DIR] [--<option> VALUE]...

commands:
  run       serve the CRI on the configured unix socket (the default)
  config    print the effective configuration as commented TOML
  status    ask the running daemon (its metrics address): status [info|config|containers ID|pods ID]
  version   print berth's version
  help      print this text

Every configuration option is also a flag: "network.cni_conf_dir" is --network-cni-conf-dir.
Files: /etc/berth/berth.toml, then /etc/berth/berth.d/*.toml in lexical order, then flags; the last wins.
`;

export async function main(argv: string[]): Promise<number> {
  let args;
  let cfg: BerthConfig;
  try {
    args = parseArgs(argv);
    if (args.command === 'help') {
      process.stdout.write(`${USAGE}\noptions:\n${flagUsage()}`);
      return 0;
    }
    if (args.command === 'version') {
      process.stdout.write(`berth ${packageVersion()}\n`);
      return 0;
    }
    cfg = loadConfig(args);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`berth: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (args.command === 'config') {
    process.stdout.write(renderConfig(cfg));
    return 0;
  }
  if (args.command === 'status') return statusCommand(cfg, args.rest);
  return serve(cfg, () => loadConfig(args));
}

/** A service manager that went away must not stop berth from serving or stopping. */
function notify(log: Logger, state: string): void {
  try {
    sdNotify(state);
  } catch (err) {
    log.warn({ err: errorMessage(err), state }, 'could not notify the service manager');
  }
}

async function serve(cfg: BerthConfig, reread: () => BerthConfig): Promise<number> {
  const log = createLogger(cfg.log_level);
  // A bug in one code path must not take the node's runtime down; log it loudly and keep serving.
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception'));
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection'));
  let daemon: Daemon;
  try {
    daemon = await Daemon.start(cfg, log);
  } catch (err) {
    log.error({ err }, 'berth could not start');
    process.stderr.write(`berth: cannot start: ${errorMessage(err)}\n`);
    return 1;
  }
  notify(log, 'READY=1');
  process.on('SIGHUP', () => {
    try {
      daemon.reload(reread());
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'configuration reload failed; keeping the running configuration');
    }
  });
  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals): void => {
      if (stopping) {
        log.warn({ signal }, 'second signal while stopping: exiting now');
        resolve(1);
        return;
      }
      stopping = true;
      log.info({ signal }, 'stopping');
      notify(log, 'STOPPING=1');
      daemon.stop().then(
        () => resolve(0),
        (err: unknown) => {
          log.error({ err }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}


/** `berth status`: what the running daemon's introspection endpoint says (see introspection.ts). */
async function statusCommand(cfg: BerthConfig, rest: string[]): Promise<number> {
  const [what = 'info', id, extra] = rest;
  const paths: Record<string, string | undefined> = { info: '/info', config: '/config', containers: id && `/containers/${id}`, pods: id && `/pods/${id}` };
  const route = paths[what];
  if (!route || extra !== undefined || ((what === 'info' || what === 'config') && id !== undefined)) {
    process.stderr.write('berth: usage: berth status [info | config | containers ID | pods ID]\n');
    return 2;
  }
  if (!cfg.metrics.enabled) {
    process.stderr.write('berth: status needs the metrics endpoint (metrics.enabled = false in the config)\n');
    return 1;
  }
  const url = `http://${cfg.metrics.address}${route}`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    const body = await res.text();
    (res.ok ? process.stdout : process.stderr).write(body.endsWith('\n') ? body : `${body}\n`);
    return res.ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`berth: cannot reach the daemon at ${url}: ${errorMessage(err)}\n`);
    return 1;
  }
}
