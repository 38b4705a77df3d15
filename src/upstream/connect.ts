/**
 * Finds the upstream NAT and opens its client. Discovery stays on the WAN side and runs only when
 * `upstream.mode` is not off: PCP and NAT-PMP go to `upstream.server` or the WAN interface's default
 * gateway (RFC 6887 §8.1, RFC 6886 §3.1); UPnP searches by SSDP on the WAN interface. `auto` takes the
 * first that answers, in the order PCP, NAT-PMP, UPnP IGD.
 */
import { readFileSync } from 'node:fs';
import type { Logger } from '../logger.js';
import type { UpstreamConfig } from '../config/upstream.js';
import type { UpstreamClient } from './types.js';
import { createPcpClient } from './pcp-client.js';
import { createNatPmpClient } from './natpmp-client.js';
import { createUpnpClient } from './upnp-client.js';

/** the IPv4 default gateway of `iface` from /proc/net/route (little-endian hex), or null */
export function defaultGateway(iface: string, routeTable = '/proc/net/route'): string | null {
  let text: string;
  try {
    text = readFileSync(routeTable, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || f[0] !== iface || f[1] !== '00000000') continue;
    const g = Number.parseInt(f[2]!, 16);
    if (!Number.isFinite(g) || g === 0) continue;
    return [g & 255, (g >>> 8) & 255, (g >>> 16) & 255, g >>> 24].join('.');
  }
  return null;
}

export interface ConnectDeps {
  readonly config: UpstreamConfig;
  readonly wanInterface: string;
  /** the gateway's WAN address (requests leave from it) */
  readonly wanAddress: () => string;
  readonly log: Logger;
  /** for tests: the PCP / NAT-PMP port (5351) and the SSDP port (1900) */
  readonly ports?: { readonly pcp?: number; readonly ssdp?: number };
}

export function createConnector(deps: ConnectDeps): () => Promise<UpstreamClient | null> {
  const { config, log } = deps;
  const server = () => config.server ?? defaultGateway(deps.wanInterface);
  const pcpPort = deps.ports?.pcp;
  const tryPcp = async (): Promise<UpstreamClient | null> => {
    const s = server();
    if (!s) return null;
    const c = await createPcpClient({
      server: s,
      clientAddress: deps.wanAddress(),
      ...(pcpPort ? { port: pcpPort } : {}),
    });
    if ((await c.probe(config.timeout)).ok) return c;
    await c.close();
    return null;
  };
  const tryNatPmp = async (): Promise<UpstreamClient | null> => {
    const s = server();
    if (!s) return null;
    const c = await createNatPmpClient({
      server: s,
      localAddress: deps.wanAddress(),
      ...(pcpPort ? { port: pcpPort } : {}),
    });
    if ((await c.probe(config.timeout)).ok) return c;
    await c.close();
    return null;
  };
  const tryUpnp = async (): Promise<UpstreamClient | null> =>
    createUpnpClient({
      interface: deps.wanInterface,
      localAddress: deps.wanAddress(),
      server: config.server,
      timeoutMs: config.timeout,
      log,
      ...(deps.ports?.ssdp ? { ssdpPort: deps.ports.ssdp } : {}),
    });
  return async () => {
    const order =
      config.mode === 'pcp'
        ? [tryPcp]
        : config.mode === 'natpmp'
          ? [tryNatPmp]
          : config.mode === 'upnp'
            ? [tryUpnp]
            : config.mode === 'auto'
              ? [tryPcp, tryNatPmp, tryUpnp]
              : [];
    for (const t of order) {
      const c = await t();
      if (c) return c;
    }
    return null;
  };
}
