import pino, { type Logger } from 'pino';

/** pino: pretty lines on a terminal, JSON otherwise (journald, files, log shippers) */
export function createLogger(
  level: string,
  opts: { pretty?: boolean; destination?: NodeJS.WritableStream } = {},
): Logger {
  const pretty = opts.pretty ?? (process.stdout.isTTY === true && !opts.destination);
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
export type { Logger };
