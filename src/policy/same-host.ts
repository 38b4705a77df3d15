/**
 * "A host's own addresses" for secure mode (issue 15, item 4). With IPv6 privacy addresses (RFC 8981)
 * a host has several global addresses at once and sends from a temporary one, while the service it
 * wants reachable listens on its stable one: asked to open a pinhole for the stable address from the
 * temporary one, a gateway that compares the two strings refuses. That is the pain of miniupnpd's users
 * in miniupnp issues #731 and #600.
 *
 * portd's answer: two addresses belong to one host when the gateway's neighbour table (IPv6 neighbour
 * discovery, RFC 4861) maps both to the same link-layer address. The decision below is pure; the
 * entries come from the dataplane's neighbour table (src/dataplane/neighbours.ts), which probes a
 * target it has not seen yet before the decision is made. Unknown is a refusal, with its reason.
 *
 * What it does not protect against: a LAN host that answers neighbour solicitations for another
 * host's address (NDP spoofing) can pass this check, as it could take that address's traffic anyway;
 * secure mode trusts the LAN's link layer the way IPv4 secure mode trusts source addresses.
 */
import { canonicalIPv6 } from '../common/ipv6.js';

/** what the decision reads of a neighbour entry (`ip -j neigh` fields) */
export interface NeighbourEntry {
  /** link-layer address, lower case; null when the kernel has none (INCOMPLETE, FAILED) */
  readonly lladdr: string | null;
  /** the kernel's NUD states, e.g. ['REACHABLE'], ['STALE'], ['FAILED'] */
  readonly state: readonly string[];
}

export type SameHostAnswer =
  | { readonly same: true; readonly reason: string }
  | { readonly same: false; readonly verdict: 'different' | 'unknown'; readonly reason: string };

/** entries in these states say nothing about who has the address (RFC 4861 §7.3.2: resolution failed or pending) */
const NOT_KNOWN = new Set(['FAILED', 'INCOMPLETE', 'NONE']);

/** is this entry a usable answer to "which link-layer address has this IP"? */
export function entryKnown(e: NeighbourEntry | null | undefined): e is NeighbourEntry & { lladdr: string } {
  return !!e && !!e.lladdr && !e.state.some((s) => NOT_KNOWN.has(s));
}

/**
 * Does `target` belong to the same host as `requester`? Both IPv6; `lookup` gives the gateway's
 * neighbour entry for an address (canonical text), or null.
 */
export function sameHost(
  requester: string,
  target: string,
  lookup: (address: string) => NeighbourEntry | null | undefined,
): SameHostAnswer {
  const r = canonicalIPv6(requester);
  const t = canonicalIPv6(target);
  if (r === null || t === null)
    return { same: false, verdict: 'unknown', reason: 'not IPv6: secure mode compares IPv4 addresses as they are' };
  if (r === t) return { same: true, reason: 'the same address' };
  const re = lookup(r);
  const te = lookup(t);
  if (!entryKnown(re))
    return {
      same: false,
      verdict: 'unknown',
      reason: `no usable neighbour entry for the requester ${r}${stateOf(re)}`,
    };
  if (!entryKnown(te))
    return { same: false, verdict: 'unknown', reason: `no usable neighbour entry for ${t}${stateOf(te)}` };
  if (re.lladdr === te.lladdr) return { same: true, reason: `${r} and ${t} share link-layer address ${re.lladdr}` };
  return {
    same: false,
    verdict: 'different',
    reason: `${t} is another host (link-layer ${te.lladdr}, the requester's is ${re.lladdr})`,
  };
}

function stateOf(e: NeighbourEntry | null | undefined): string {
  return e ? ` (state ${e.state.join(',') || 'none'})` : '';
}
