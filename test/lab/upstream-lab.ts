/**
 * The three-tier lab: a gateway (portd) behind another NAT, built on test/lab/harness.ts.
 *
 *   lanA 192.168.77.11 ─┐                                 upstream NAT                    Internet
 *                       ├─ br0 [gw] wan0 ──────────── eth0 [up] wan0 ──────────────── eth0 [inet]
 *   lanB 192.168.77.12 ─┘ 192.168.77.1  100.64.77.2   100.64.77.1  203.0.113.1        203.0.113.2
 *
 * The harness's WAN namespace becomes the upstream NAT (its address moves to 100.64.77.1, RFC 6598
 * shared space, as behind a carrier-grade NAT); a fifth namespace is the Internet host. The gateway
 * routes by default through the upstream NAT and (unless `gatewayMasquerade: false`) masquerades LAN
 * traffic out of wan0 in its own `table ip lab3`, as a home router does; portd's table is left to portd.
 * The upstream NAT masquerades out of its wan0 and has a forward policy of its own (`table ip uplab`):
 * established/related pass, LAN → WAN passes, WAN → LAN only for flows that were DNAT'd there (by
 * whatever NAT daemon runs in the upstream namespace), everything else is dropped.
 *
 * `miniupnpd: true` uses addresses miniupnpd accepts as a WAN (it refuses documentation and reserved
 * ones): upstream WAN 11.22.33.1/24, Internet host 11.22.33.2. They exist only inside these namespaces.
 *
 * Everything is removed by teardown(), on a failure while building, and on exit / signals (the
 * harness's hooks; the fifth namespace is registered with trackNamespace).
 */
import { ADDR, createLab, exec, must, trackNamespace, type Agent, type ExecResult, type Lab } from './harness.js';

export const ADDR3 = {
  gwLan: ADDR.gwLan,
  hostA: ADDR.hostA,
  hostB: ADDR.hostB,
  /** the gateway's WAN address: private to the upstream NAT's LAN (RFC 6598 shared space) */
  gwWan: '100.64.77.2',
  /** the upstream NAT's LAN side: the gateway's default route, where PCP / NAT-PMP go */
  upLan: '100.64.77.1',
  upWan: '203.0.113.1',
  internet: '203.0.113.2',
} as const;

/** with `miniupnpd: true` */
export const ADDR3_MINIUPNPD = { ...ADDR3, upWan: '11.22.33.1', internet: '11.22.33.2' } as const;

/** interface names inside each namespace */
export const IF3 = {
  gwLan: 'br0',
  gwWan: 'wan0',
  upLan: 'eth0',
  upWan: 'wan0',
  internet: 'eth0',
} as const;

export interface UpstreamLabOptions {
  /** miniupnpd's addressing (ADDR3_MINIUPNPD) */
  readonly miniupnpd?: boolean;
  /** the gateway masquerades LAN → WAN in `table ip lab3` (default true) */
  readonly gatewayMasquerade?: boolean;
  /** the upstream NAT's masquerade and forward policy in `table ip uplab` (default true) */
  readonly upstreamPolicy?: boolean;
  readonly verbose?: boolean;
}

export interface UpstreamLab {
  readonly base: Lab;
  readonly addr: typeof ADDR3 | typeof ADDR3_MINIUPNPD;
  /** namespaces: the gateway, the LAN hosts, the upstream NAT, the Internet host */
  readonly gw: string;
  readonly lanA: string;
  readonly lanB: string;
  readonly upstream: string;
  readonly internet: string;
  readonly namespaces: readonly string[];
  exec(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<ExecResult>;
  must(ns: string, argv: readonly string[], opts?: { input?: string; timeoutMs?: number }): Promise<string>;
  /** `nft -f -` inside a namespace */
  nft(ns: string, script: string): Promise<ExecResult>;
  agent(ns: string, label: string): Promise<Agent>;
  teardown(): Promise<void>;
}

/** the upstream NAT's own policy: masquerade out of its WAN, forward only what it DNAT'd inbound */
export function upstreamRuleset(): string {
  return `table ip uplab {
  chain forward {
    type filter hook forward priority filter; policy drop;
    ct state established,related accept
    iifname "${IF3.upLan}" oifname "${IF3.upWan}" accept
    iifname "${IF3.upWan}" ct status dnat accept
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${IF3.upWan}" masquerade
  }
}
`;
}

const GATEWAY_RULESET = `table ip lab3 {
  chain postrouting {
    type nat hook postrouting priority srcnat + 10; policy accept;
    oifname "${IF3.gwWan}" masquerade
  }
}
`;

export async function createUpstreamLab(opts: UpstreamLabOptions = {}): Promise<UpstreamLab> {
  const addr = opts.miniupnpd ? ADDR3_MINIUPNPD : ADDR3;
  const base = await createLab({ ...(opts.verbose ? { verbose: true } : {}) });
  const upstream = base.wan;
  const internet = `${base.gw.slice(0, -1)}i`;
  const removeInternet = trackNamespace(internet);
  const teardown = async () => {
    await base.teardown();
    removeInternet();
  };
  const step = async (ns: string | null, argv: string[], input?: string) => {
    if (opts.verbose) process.stderr.write(`upstream-lab: ${ns ? `[${ns}] ` : ''}${argv.join(' ')}\n`);
    await must(ns, argv, input === undefined ? {} : { input });
  };
  try {
    // gateway WAN: from the harness's 203.0.113.1 to the upstream NAT's LAN
    await step(null, ['ip', '-n', base.gw, 'addr', 'flush', 'dev', IF3.gwWan]);
    await step(null, ['ip', '-n', base.gw, 'addr', 'add', `${addr.gwWan}/24`, 'dev', IF3.gwWan]);
    await step(null, ['ip', '-n', base.gw, 'route', 'add', 'default', 'via', addr.upLan]);
    // the harness's WAN host becomes the upstream NAT
    await step(null, ['ip', '-n', upstream, 'addr', 'flush', 'dev', IF3.upLan]);
    await step(null, ['ip', '-n', upstream, 'addr', 'add', `${addr.upLan}/24`, 'dev', IF3.upLan]);
    await step(upstream, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await step(null, ['ip', 'netns', 'add', internet]);
    await step(null, ['ip', '-n', internet, 'link', 'set', 'lo', 'up']);
    await step(null, [
      'ip',
      '-n',
      upstream,
      'link',
      'add',
      IF3.upWan,
      'type',
      'veth',
      'peer',
      'name',
      IF3.internet,
      'netns',
      internet,
    ]);
    await step(null, ['ip', '-n', upstream, 'addr', 'add', `${addr.upWan}/24`, 'dev', IF3.upWan]);
    await step(null, ['ip', '-n', upstream, 'link', 'set', IF3.upWan, 'up']);
    await step(null, ['ip', '-n', internet, 'addr', 'add', `${addr.internet}/24`, 'dev', IF3.internet]);
    await step(null, ['ip', '-n', internet, 'link', 'set', IF3.internet, 'up']);
    // no route from the Internet host to 100.64.77.0/24 or the LAN: only what the upstream NAT maps gets in
    if (opts.upstreamPolicy ?? true) await step(upstream, ['nft', '-f', '-'], upstreamRuleset());
    if (opts.gatewayMasquerade ?? true) await step(base.gw, ['nft', '-f', '-'], GATEWAY_RULESET);
  } catch (err) {
    await teardown();
    throw err;
  }
  return {
    base,
    addr,
    gw: base.gw,
    lanA: base.lanA,
    lanB: base.lanB,
    upstream,
    internet,
    namespaces: [...base.namespaces, internet],
    exec: (ns, argv, o) => exec(ns, argv, o),
    must: (ns, argv, o) => must(ns, argv, o),
    nft: (ns, script) => exec(ns, ['nft', '-f', '-'], { input: script }),
    agent: (ns, label) => base.agent(ns, label),
    teardown,
  };
}
