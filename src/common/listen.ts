import { isIP } from 'node:net';

export interface ListenAddress {
  /** an IP literal; an IPv6 one without its brackets */
  readonly host: string;
  /** 0-65535; 0 asks the kernel for a free port (tests) */
  readonly port: number;
}

/**
 * The one parser of a listen address (`admin.listen`, and everything that reads it back: the admin
 * server, its Host check, the CLI's default URL, the dataplane's list of our own ports).
 * Contract: `a.b.c.d:port` or `[v6]:port` — an IP literal and a port, both required, nothing else
 * (no names: a listen address is bound before DNS means anything, and `localhost` may be either
 * family). Returns null for anything else; the config validator turns that into an error naming the
 * key, so code past validation may rely on a non-null result.
 */
export function parseListen(text: string): ListenAddress | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|(\d+\.\d+\.\d+\.\d+)):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (isIP(host) === 0 || port > 65535) return null;
  if (m[1] !== undefined && isIP(host) !== 6) return null;
  return { host, port };
}
