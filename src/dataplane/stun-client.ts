/**
 * STUN client (RFC 8489 §6, Binding over UDP): asks the configured servers, in order, which address and port
 * our traffic leaves from. One socket per check, bound to the WAN address when portd has one of its own, so
 * the request leaves from the WAN side like the traffic of the mappings would. Retransmission per §6.2.1:
 * `transmissions` requests (Rc) at rto, 2·rto, 4·rto ... apart, then 16·rto (Rm) of silence ends it.
 * A datagram that is not a valid response to our transaction is dropped, logged and counted; we keep waiting
 * (§6.3: an invalid response is discarded, it does not end the transaction).
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup } from 'node:dns/promises';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  StunDecodeError,
  TRANSACTION_ID_LENGTH,
  decodeBindingResponse,
  encodeBindingRequest,
  type MappedAddress,
} from '../../protocols/stun/index.js';
import { parseStunServer } from '../config/stun.js';
import type { Metrics } from '../metrics.js';

/** RFC 8489 §6.2.1: after the last request, wait Rm times the initial RTO */
const RM = 16;
/** one check logs at most this many dropped datagrams (a hostile server cannot flood the log) */
const MAX_DROP_LINES = 3;
/** a host name that does not resolve within this is a failed server, not a stuck check */
const RESOLVE_TIMEOUT_MS = 5000;

export type StunOutcome =
  | { readonly ok: true; readonly server: string; readonly mapped: MappedAddress; readonly rttMs: number }
  | { readonly ok: false; readonly error: string };

export type StunRequestResult =
  | 'success'
  | 'error_response'
  | 'timeout'
  | 'resolve_error'
  | 'send_error'
  | 'wrong_family';

export interface StunClientOptions {
  readonly servers: readonly string[];
  readonly rtoMs: number;
  readonly transmissions: number;
  readonly log: Logger;
  readonly metrics?: Pick<Metrics, 'stunRequests' | 'badInput'>;
  /** the local address to send from (the WAN address); undefined: let the kernel pick */
  readonly bindAddress?: () => string | undefined;
  /** tests: a fixed transaction id source */
  readonly randomId?: () => Uint8Array;
  readonly resolve?: (host: string) => Promise<string>;
}

export interface StunClient {
  /** asks the servers in order until one answers with an IPv4 mapped address */
  check(): Promise<StunOutcome>;
  /** stops a running check (its socket closes) */
  close(): void;
}

export function createStunClient(opts: StunClientOptions): StunClient {
  const log = opts.log.child({ component: 'stun' });
  const randomId = opts.randomId ?? (() => new Uint8Array(randomBytes(TRANSACTION_ID_LENGTH)));
  const resolve = opts.resolve ?? (async (host: string) => (await lookup(host, { family: 4, verbatim: true })).address);
  const open = new Set<{ socket: Socket; finish: () => void }>();
  let closed = false;

  const count = (result: StunRequestResult) => opts.metrics?.stunRequests.inc({ result });

  /** one transaction with one server: resolves with what it learned, or an error text */
  async function ask(server: string): Promise<StunOutcome> {
    const parsed = parseStunServer(server);
    if (!parsed) return { ok: false, error: `${server}: not host:port` };
    let ip: string;
    try {
      let t: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`no answer in ${RESOLVE_TIMEOUT_MS} ms`)), RESOLVE_TIMEOUT_MS);
        t.unref();
      });
      ip = await Promise.race([resolve(parsed.host), timeout]).finally(() => clearTimeout(t));
    } catch (e) {
      count('resolve_error');
      return { ok: false, error: `${server}: cannot resolve (${(e as Error).message})` };
    }
    const tx = randomId();
    const request = encodeBindingRequest(tx);
    const socket = createSocket({ type: 'udp4' });
    const bind = opts.bindAddress?.();
    return await new Promise<StunOutcome>((done) => {
      let sent = 0;
      let drops = 0;
      let timer: NodeJS.Timeout | null = null;
      const started = performance.now();
      const entry = { socket, finish: () => finish({ ok: false, error: `${server}: stopped` }) };
      const finish = (o: StunOutcome) => {
        if (timer) clearTimeout(timer);
        timer = null;
        if (!open.delete(entry)) return;
        socket.close();
        done(o);
      };
      open.add(entry);
      socket.on('error', (e) => {
        count('send_error');
        finish({ ok: false, error: `${server}: ${e.message}` });
      });
      socket.on('message', (msg, rinfo) => {
        // only the server we asked may answer (RFC 8489 §6.3.3 matches the transaction; an off-path sender of
        // the right id would need to guess 96 bits, but a datagram from elsewhere is not even looked at)
        if (rinfo.address !== ip || rinfo.port !== parsed.port) {
          opts.metrics?.badInput.inc({ frontend: 'stun', kind: 'stray' });
          return;
        }
        let r: ReturnType<typeof decodeBindingResponse>;
        try {
          r = decodeBindingResponse(new Uint8Array(msg.buffer, msg.byteOffset, msg.byteLength), tx);
        } catch (err) {
          // the codec throws only StunDecodeError (fuzzed); anything else is still a dropped datagram, never a crash
          const e = err instanceof StunDecodeError ? err : new StunDecodeError('internal', 0, String(err));
          opts.metrics?.badInput.inc({ frontend: 'stun', kind: e.reason });
          if (drops++ < MAX_DROP_LINES)
            log.warn(
              { server, reason: e.reason, offset: e.offset, bytes: msg.length },
              `STUN response dropped: ${e.message}`,
            );
          return;
        }
        if (r.kind === 'error') {
          count('error_response');
          finish({ ok: false, error: `${server}: error response ${r.code} ${r.reason}`.trim() });
          return;
        }
        if (r.mapped.family !== 4) {
          count('wrong_family');
          finish({ ok: false, error: `${server}: answered with an IPv${r.mapped.family} address to an IPv4 request` });
          return;
        }
        count('success');
        finish({ ok: true, server, mapped: r.mapped, rttMs: Math.round(performance.now() - started) });
      });
      const transmit = () => {
        if (!open.has(entry)) return;
        if (sent === opts.transmissions) {
          count('timeout');
          finish({ ok: false, error: `${server}: no answer to ${sent} requests` });
          return;
        }
        socket.send(request, parsed.port, ip, (err) => {
          if (err) {
            count('send_error');
            finish({ ok: false, error: `${server}: cannot send (${err.message})` });
          }
        });
        sent++;
        // §6.2.1: RTO doubles after each request; after the last (Rc), Rm × the initial RTO
        const wait = sent === opts.transmissions ? RM * opts.rtoMs : opts.rtoMs * 2 ** (sent - 1);
        timer = setTimeout(transmit, wait);
        timer.unref();
      };
      socket.bind({ port: 0, ...(bind ? { address: bind } : {}) }, transmit);
    });
  }

  return {
    async check() {
      const errors: string[] = [];
      for (const server of opts.servers) {
        if (closed) break;
        const o = await ask(server);
        if (o.ok) return o;
        errors.push(o.error);
        log.info({ server, err: o.error }, 'STUN server gave no address');
      }
      return { ok: false, error: errors.join('; ') || 'no STUN servers' };
    },
    close() {
      closed = true;
      for (const e of [...open]) e.finish();
    },
  };
}
