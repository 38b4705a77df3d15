/**
 * One UDP socket to one upstream PCP / NAT-PMP server: requests retransmitted on a short bounded schedule
 * (RFC 6887 §8.1.1 starts at 3 s; a client of ours waits at most the configured bound, so this retries within
 * it), answers matched by a caller's predicate, unsolicited datagrams handed to a listener. Datagrams from
 * any other address or port, or over 1100 octets (RFC 6887 §7: a PCP message is at most 1100), are dropped.
 */
import dgram from 'node:dgram';

const MAX_DATAGRAM = 1100;

export interface UdpExchange {
  /** sends `packet` until an answer satisfies `match` (returns it) or `timeoutMs` passes (returns null) */
  request(packet: Uint8Array, match: (b: Uint8Array) => boolean, timeoutMs: number): Promise<Uint8Array | null>;
  onUnsolicited(fn: (b: Uint8Array) => void): void;
  close(): Promise<void>;
}

export async function openUdpExchange(opts: {
  readonly server: string;
  readonly port: number;
  /** the gateway's WAN address: requests leave from it (PCP's client address must be the source, §8.3) */
  readonly localAddress: string | null;
}): Promise<UdpExchange> {
  const sock = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    sock.once('error', reject);
    sock.bind(0, opts.localAddress ?? undefined, () => {
      sock.off('error', reject);
      resolve();
    });
  });
  const waiting = new Set<{ match: (b: Uint8Array) => boolean; done: (b: Uint8Array | null) => void }>();
  let unsolicited: (b: Uint8Array) => void = () => {};
  let closed = false;
  sock.on('error', () => {
    /* a send to an unreachable server: the request times out */
  });
  sock.on('message', (msg, rinfo) => {
    if (rinfo.address !== opts.server || rinfo.port !== opts.port || msg.length > MAX_DATAGRAM) return;
    const b = new Uint8Array(msg.buffer, msg.byteOffset, msg.length);
    for (const w of waiting) {
      if (w.match(b)) {
        waiting.delete(w);
        w.done(b);
        return;
      }
    }
    unsolicited(b);
  });
  return {
    request(packet, match, timeoutMs) {
      if (closed) return Promise.resolve(null);
      return new Promise((resolve) => {
        const timers: NodeJS.Timeout[] = [];
        const w = {
          match,
          done: (b: Uint8Array | null) => {
            for (const t of timers) clearTimeout(t);
            waiting.delete(w);
            resolve(b);
          },
        };
        waiting.add(w);
        const send = () => {
          if (closed) return;
          try {
            sock.send(packet, opts.port, opts.server, () => {});
          } catch {
            /* closed meanwhile: the request times out */
          }
        };
        send();
        // retransmissions at 250 ms, 750 ms, 1750 ms ... inside the bound
        for (let at = 250, step = 500; at < timeoutMs; at += step, step *= 2) timers.push(setTimeout(send, at));
        timers.push(setTimeout(() => w.done(null), timeoutMs));
      });
    },
    onUnsolicited(fn) {
      unsolicited = fn;
    },
    close: () =>
      new Promise<void>((resolve) => {
        if (closed) return resolve();
        closed = true;
        for (const w of [...waiting]) w.done(null);
        sock.close(() => resolve());
      }),
  };
}
