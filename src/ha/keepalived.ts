/**
 * How portd learns keepalived's VRRP state (issue 18 item 3): keepalived's `notify_fifo` (global_defs), a FIFO
 * it writes one line to per state change, `INSTANCE "<name>" MASTER|BACKUP|FAULT|STOP <priority>` (and `GROUP`
 * lines for sync groups). keepalived opens the FIFO read-write, so lines written while portd is away wait in the
 * pipe, and a restarted portd reads them up to the current state.
 *
 * portd opens it read-write and non-blocking too: opening never waits for a writer, and a restarted keepalived
 * (which closes and reopens its end) never gives portd end-of-file. A FIFO that does not exist yet (portd
 * started before keepalived) is looked for again every `retryMs`.
 */
import { constants, openSync, statSync } from 'node:fs';
import { Socket } from 'node:net';

export type VrrpState = 'MASTER' | 'BACKUP' | 'FAULT' | 'STOP';

export interface NotifyLine {
  readonly type: 'INSTANCE' | 'GROUP';
  readonly name: string;
  readonly state: VrrpState;
  readonly priority: number | null;
}

const STATES = new Set<string>(['MASTER', 'BACKUP', 'FAULT', 'STOP', 'DELETED']);

/** one notify_fifo line, or null for anything else (keepalived's own checker lines, garbage) */
export function parseNotifyLine(line: string): NotifyLine | null {
  const m = /^(INSTANCE|GROUP)\s+"((?:[^"\\]|\\.)*)"\s+([A-Z]+)(?:\s+(\d+))?\s*$/.exec(line.trim());
  if (!m || !STATES.has(m[3]!)) return null;
  // DELETED: the instance was removed by a reload; as far as portd is concerned it stopped
  const state = (m[3] === 'DELETED' ? 'STOP' : m[3]) as VrrpState;
  return { type: m[1] as 'INSTANCE' | 'GROUP', name: m[2]!, state, priority: m[4] ? Number(m[4]) : null };
}

export interface NotifyFifoOptions {
  readonly path: string;
  /** the vrrp_instance (or, with `group`, vrrp_sync_group) whose state portd follows */
  readonly instance: string;
  readonly group?: boolean;
  readonly onState: (state: VrrpState, line: NotifyLine) => void;
  readonly onError?: (message: string) => void;
  readonly retryMs?: number;
}

export function watchNotifyFifo(opts: NotifyFifoOptions) {
  let sock: Socket | null = null;
  let timer: NodeJS.Timeout | null = null;
  let closed = false;
  let buf = '';
  let warned = false;
  const want = opts.group ? 'GROUP' : 'INSTANCE';

  function open(): void {
    timer = null;
    if (closed) return;
    try {
      if (!statSync(opts.path).isFIFO()) throw new Error(`${opts.path} is not a FIFO (ha.keepalived.fifo)`);
      const fd = openSync(opts.path, constants.O_RDWR | constants.O_NONBLOCK);
      sock = new Socket({ fd, readable: true, writable: false });
    } catch (e) {
      if (!warned) opts.onError?.(`cannot open keepalived's notify_fifo: ${(e as Error).message}; retrying`);
      warned = true;
      timer = setTimeout(open, opts.retryMs ?? 500);
      return;
    }
    warned = false;
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = parseNotifyLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (line && line.type === want && line.name === opts.instance) opts.onState(line.state, line);
      }
      if (buf.length > 4096) buf = ''; // no line is this long: not keepalived writing
    });
    sock.on('error', (e) => {
      opts.onError?.(`keepalived's notify_fifo: ${e.message}; reopening`);
      sock?.destroy();
      sock = null;
      if (!closed) timer = setTimeout(open, opts.retryMs ?? 500);
    });
  }
  open();
  return {
    close(): void {
      closed = true;
      if (timer) clearTimeout(timer);
      sock?.destroy();
      sock = null;
    },
  };
}
