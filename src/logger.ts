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
  if (opts.destination) return pino({ level, base: { pid: process.pid } }, opts.destination as pino.DestinationStream);
  // stdout (journald): the lines of 100 ms go out in one write (and at once past 4 KiB, and at exit: pino flushes
  // its destination then). One write per line was 14 % of portd's CPU time in a burst of grants, one
  // `lease granted` line each (docs/benchmarks.md, "cold start"). No timer runs while nothing is logged.
  const dest = pino.destination({ dest: 1, minLength: 4096, sync: false });
  let flushTimer: NodeJS.Timeout | null = null;
  const flushSoon = () => {
    flushTimer = null;
    // while a write is under way sonic-boom's flush() does nothing and keeps what is left under minLength: look again
    if ((dest as unknown as { _writing?: boolean })._writing) {
      flushTimer = setTimeout(flushSoon, 100).unref();
      return;
    }
    try {
      dest.flush();
    } catch {
      /* destroyed (exiting): nothing left to do */
    }
  };
  return pino(
    {
      level,
      base: { pid: process.pid },
      hooks: {
        streamWrite: (line) => {
          if (flushTimer === null) flushTimer = setTimeout(flushSoon, 100).unref();
          return line;
        },
      },
    },
    dest,
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
