/**
 * The nftables driver's ruleset as nft text: the table's structure and rules, the external address set, the
 * script forms (`nft -f`, `nft -i`). Pure. The elements are the typed model (model.ts), planned by
 * nftables-plan.ts, written as text by nft-text.ts or as netlink by nf-netlink.ts.
 *
 * Kernel layout (one table, `table inet <name>`; see docs/nftables.md):
 *   fwd4        proto . port           -> addr . port   single ports
 *   fwd4_range  proto . port-range     -> addr          ranges that keep their port numbers (dnat to an
 *                                                       address keeps the port)
 *   fwd4_peer   remote . proto . port  -> addr . port   leases filtered to one remote peer (ranges expanded
 *                                                       per port)
 *   live_{tcp,udp}[_range]                              external ports that have a lease now (flows of ended
 *                                                       leases are dropped)
 *   ext4                                                our external address(es)
 *   pin6        addr . proto . port                     IPv6 pinholes (no translation); pin6_range for ranges,
 *   pin6_peer   remote . addr . proto . port            pin6_peer for one remote peer (ranges expanded per port),
 *   pin6_net    remote/len . addr . proto . port        pin6_net for a remote prefix (PCP FILTER < /128; interval)
 *   snat4       addr . proto . port    -> addr . port   outbound: a mapped internal endpoint leaves from its
 *                                                       external one (ranges with a port offset per port)
 *   snat4_range addr . proto . port-range -> addr       outbound, ranges that keep their port numbers
 * Ranges whose internal port differs from the external one are expanded into per-port fwd4 elements
 * (nft 1.0.6 has no port-offset dnat).
 */
import { isIPv4 } from 'node:net';
import { FWD_SETS, LIVE_SETS, NftPlanError, PINHOLE_SETS, SET_LAYOUTS, SNAT_SETS, type ElementSet } from './model.js';
import { renderTriggers } from './nftables-triggers.js';
import type { TriggerKernelRule } from './trigger-kernel.js';

/** ct mark bit set on every flow portd forwarded; the drop rule and the hairpin masquerade key on it */
export const PORTD_CT_MARK = 0x100;
/** ct mark bit on hairpin flows (LAN -> external address -> LAN), set in forward, masqueraded in postrouting
 *  (postrouting cannot see the input interface, so the decision is made in forward) */
export const PORTD_CT_MARK_HAIRPIN = 0x200;

/**
 * The outbound chain's priority: before the host's own masquerade (fw4, Debian's and most hand-written ones sit at
 * `srcnat`). A flow's source NAT binding is made once, by the first NAT chain of the hook that binds it; the kernel
 * calls no later NAT chain for that flow (nf_nat_inet_fn), so a mapped endpoint's flow leaves from its lease's port
 * and every other flow falls through to the host's masquerade untouched.
 */
export const SNAT_PRIORITY = 'srcnat - 10';

export interface RulesetOptions {
  readonly table: string;
  readonly wan: string;
  readonly lan: readonly string[];
  readonly hairpin: boolean;
  readonly frontendPorts: { readonly tcp: readonly number[]; readonly udp: readonly number[] };
  /** port-trigger rules (nftables-triggers.ts): when set, the `triggers` chain and sets are part of the structure */
  readonly triggers?: readonly TriggerKernelRule[];
}

const TABLE_RE = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const IFNAME_RE = /^[A-Za-z0-9_.:@+-]{1,15}$/;

export function validateRulesetOptions(o: RulesetOptions): void {
  if (!TABLE_RE.test(o.table))
    throw new NftPlanError(`bad table name ${JSON.stringify(o.table)} (letters, digits, _; max 32)`);
  for (const i of [o.wan, ...o.lan])
    if (!IFNAME_RE.test(i)) throw new NftPlanError(`bad interface name ${JSON.stringify(i)}`);
  if (o.lan.length === 0) throw new NftPlanError('at least one LAN interface is needed');
  for (const p of [...o.frontendPorts.tcp, ...o.frontendPorts.udp]) checkPort(p);
}

function checkPort(p: number): void {
  if (!Number.isInteger(p) || p < 1 || p > 65535) throw new NftPlanError(`bad port ${p}`);
}

/** `add map|set T name { type …; flags …; }` from the set's layout (model.ts) */
function setDefinition(T: string, name: ElementSet): string {
  const l = SET_LAYOUTS[name];
  const key = l.key.map(([, type]) => type).join(' . ');
  const type = l.data === null ? key : `${key} : ${l.data.join(' . ')}`;
  const flags = l.interval ? 'interval,timeout' : 'timeout';
  // a pinhole's elements count the packets that came through it (WANIPv6FirewallControl GetPinholePackets);
  // the kernel gives every element of a set declared with `counter` its own
  const counter = (PINHOLE_SETS as readonly string[]).includes(name) ? ' counter;' : '';
  return `add ${l.data === null ? 'set' : 'map'} ${T} ${name} { type ${type}; flags ${flags};${counter} }`;
}

function ifset(names: readonly string[]): string {
  return `{ ${names.map((n) => `"${n}"`).join(', ')} }`;
}

/**
 * Idempotent structure: creates what is missing, keeps existing elements, rewrites our chains' rules.
 * `add` of an existing set with the same definition is a no-op; a different definition fails the batch
 * (the driver then recreates the table).
 */
export function renderInit(o: RulesetOptions): string[] {
  validateRulesetOptions(o);
  const T = `inet ${o.table}`;
  const M = `0x${PORTD_CT_MARK.toString(16)}`;
  const lan = ifset(o.lan);
  const wan = `"${o.wan}"`;
  const notLan = o.hairpin ? '' : `iifname != ${lan} `;
  const cmds = [
    `add table ${T}`,
    ...FWD_SETS.map((s) => setDefinition(T, s)),
    `add set ${T} ext4 { type ipv4_addr; }`,
    ...LIVE_SETS.map((s) => setDefinition(T, s)),
    ...PINHOLE_SETS.map((s) => setDefinition(T, s)),
    ...SNAT_SETS.map((s) => setDefinition(T, s)),
    `add chain ${T} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `add chain ${T} postrouting { type nat hook postrouting priority srcnat; policy accept; }`,
    `add chain ${T} outbound { type nat hook postrouting priority ${SNAT_PRIORITY}; policy accept; }`,
    `add chain ${T} forward { type filter hook forward priority filter - 1; policy accept; }`,
    `add chain ${T} input { type filter hook input priority filter - 1; policy accept; }`,
    `flush chain ${T} prerouting`,
    `flush chain ${T} postrouting`,
    `flush chain ${T} outbound`,
    `flush chain ${T} forward`,
    `flush chain ${T} input`,
    // peer-filtered first: a peer lease wins over an open one on the same port
    `add rule ${T} prerouting ${notLan}ip daddr @ext4 dnat ip to ip saddr . meta l4proto . th dport map @fwd4_peer`,
    `add rule ${T} prerouting ${notLan}ip daddr @ext4 dnat ip to meta l4proto . th dport map @fwd4`,
    `add rule ${T} prerouting ${notLan}ip daddr @ext4 dnat ip to meta l4proto . th dport map @fwd4_range`,
  ];
  // outbound flows of a mapped internal endpoint to the WAN leave from the lease's external address and port
  // (RFC 4787 REQ-1: one mapping whatever the destination; RFC 6887 §11). Hairpin flows leave on a LAN interface
  // and are masqueraded in postrouting instead; IPv6 has no translation (`snat ip` matches IPv4 only).
  for (const s of SNAT_SETS)
    cmds.push(`add rule ${T} outbound oifname ${wan} snat ip to ip saddr . meta l4proto . th sport map @${s}`);
  // flows of ended leases: drop marked flows whose external port is no longer live (holds when portd is dead)
  for (const p of ['tcp', 'udp'] as const) {
    cmds.push(
      `add rule ${T} forward ct mark & ${M} == ${M} meta nfproto ipv4 meta l4proto ${p} ct original proto-dst != ` +
        `@live_${p} ct original proto-dst != @live_${p}_range drop`,
    );
  }
  // flows of ended IPv6 pinholes: no translation, so the packet's own addresses and ports are the pinhole's
  // (reversed in the reply direction); a marked flow whose pinhole is in none of the sets is dropped
  const inside = 'ip6 daddr . meta l4proto . th dport';
  const insideReply = 'ip6 saddr . meta l4proto . th sport';
  cmds.push(
    `add rule ${T} forward ct mark & ${M} == ${M} ct direction original ${inside} != @pin6 ${inside} != ` +
      `@pin6_range ip6 saddr . ${inside} != @pin6_peer ip6 saddr . ${inside} != @pin6_net drop`,
    `add rule ${T} forward ct mark & ${M} == ${M} ct direction reply ${insideReply} != @pin6 ${insideReply} != ` +
      `@pin6_range ip6 daddr . ${insideReply} != @pin6_peer ip6 daddr . ${insideReply} != @pin6_net drop`,
  );
  // mark new flows that portd forwarded (original destination: our address, a live port)
  for (const p of ['tcp', 'udp'] as const) {
    for (const s of [`live_${p}`, `live_${p}_range`]) {
      cmds.push(
        `add rule ${T} forward ct status dnat ct state new ct original ip daddr @ext4 meta l4proto ${p} ct ` +
          `original proto-dst @${s} ct mark set ct mark | ${M}`,
      );
    }
  }
  // new WAN -> LAN IPv6 flows to an open pinhole: the same bit as forwarded IPv4 flows, which the admin's
  // firewall accepts with one rule (`ct mark & 0x100 == 0x100 accept`, docs/nftables.md)
  for (const [set, match] of [
    ['pin6', inside],
    ['pin6_range', inside],
    ['pin6_peer', `ip6 saddr . ${inside}`],
    ['pin6_net', `ip6 saddr . ${inside}`],
  ] as const)
    cmds.push(`add rule ${T} forward iifname ${wan} ct state new ${match} @${set} ct mark set ct mark | ${M}`);
  // every packet of a flow that came in through a pinhole, in its original direction, counts on the element
  // (a lookup with no verdict; the marking rule above sees only each flow's first packet)
  for (const [set, match] of [
    ['pin6', inside],
    ['pin6_range', inside],
    ['pin6_peer', `ip6 saddr . ${inside}`],
    ['pin6_net', `ip6 saddr . ${inside}`],
  ] as const)
    cmds.push(`add rule ${T} forward ct direction original ct mark & ${M} == ${M} ${match} @${set}`);
  if (o.hairpin) {
    const H = `0x${PORTD_CT_MARK_HAIRPIN.toString(16)}`;
    cmds.push(
      `add rule ${T} forward iifname ${lan} oifname ${lan} ct state new ct mark & ${M} == ${M} ct mark set ct ` +
        `mark | ${H}`,
    );
    cmds.push(`add rule ${T} postrouting ct mark & ${H} == ${H} masquerade`);
  }
  cmds.push(`add rule ${T} forward ct mark & ${M} == ${M} accept`);
  if (o.frontendPorts.tcp.length > 0)
    cmds.push(`add rule ${T} input iifname ${wan} tcp dport { ${[...new Set(o.frontendPorts.tcp)].join(', ')} } drop`);
  if (o.frontendPorts.udp.length > 0)
    cmds.push(`add rule ${T} input iifname ${wan} udp dport { ${[...new Set(o.frontendPorts.udp)].join(', ')} } drop`);
  if (o.triggers) cmds.push(...renderTriggers(o, o.triggers));
  return cmds;
}

/** recreate the table from scratch in one batch (used when our table's definitions conflict, e.g. an older layout) */
export function renderRecreate(o: RulesetOptions): string[] {
  return [`add table inet ${o.table}`, `delete table inet ${o.table}`, ...renderInit(o)];
}

export function renderExternalAddresses(table: string, addresses: readonly string[]): string[] {
  for (const a of addresses) if (!isIPv4(a)) throw new NftPlanError(`bad external address ${a}`);
  const out = [`flush set inet ${table} ext4`];
  if (addresses.length > 0) out.push(`add element inet ${table} ext4 { ${[...new Set(addresses)].join(', ')} }`);
  return out;
}

/** renders commands for `nft -f -` (one transaction per file) */
export function asFile(commands: readonly string[]): string {
  return commands.length === 0 ? '' : `${commands.join('\n')}\n`;
}

/** renders commands as one interactive line (`nft -i` makes one transaction per line) */
export function asLine(commands: readonly string[]): string {
  return commands.join('; ');
}
