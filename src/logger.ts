import { createRequire } from 'node:module';
import pino, { type Logger } from 'pino';

/** pino: pretty lines on a terminal, JSON otherwise (journald, files, log shippers) */
export function createLogger(
  level: string,
  opts: { pretty?: boolean; destination?: NodeJS.WritableStream } = {},
): Logger {
  // pino-pretty is a development dependency: an installed package has none and logs JSON on a terminal too
  const pretty = (opts.pretty ?? (process.stdout.isTTY === true && !opts.destination)) && canResolve('pino-pretty');
  if (pretty) {
    return pino({
      level,
      base: { pid: process.pid },
      transport: {
        target: 'pino-pretty',
        options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' },
      },
    });
  }
  return pino(
    { level, base: { pid: process.pid } },
    (opts.destination ?? pino.destination(1)) as pino.DestinationStream,
  );
}
function canResolve(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}
export type { Logger };
