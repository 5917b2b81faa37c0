import pino, { DestinationStream, Logger, LevelWithSilent } from 'pino';

export type { Logger };

/** JSON lines on stderr (journald and log shippers read them); the level can change on SIGHUP. */
export function createLogger(level: LevelWithSilent, destination: DestinationStream = pino.destination({ dest: 2, sync: true })): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
}
