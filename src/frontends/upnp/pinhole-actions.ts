/**
 * WANIPv6FirewallControl:1 (IGD:2, 2010): IPv6 firewall pinholes through UPnP, as leases of family 6
 * in the one lease table (issue 15). A pinhole has no translation: it lets WAN flows reach
 * `[InternalClient]:InternalPort`, from `RemoteHost`/`RemotePort` only when given.
 *
 * Where the service template leaves room, portd's choices (each in docs/upnp.md):
 * - RemoteHost must be an IPv6 literal or empty/`*` (any). miniupnpd resolves a name with
 *   getaddrinfo, so a LAN client can make the gateway query DNS; portd answers 402 instead.
 * - InternalClient must be a global or unique-local address (a link-local one is never reachable
 *   from the WAN, RFC 4291 §2.5.6): 402 otherwise; empty or `*` is 708.
 * - In secure mode a client opens pinholes to its own addresses only; which addresses are a host's
 *   own is the policy's decision (the lease table checks it; a refusal is 606).
 * - AddPinhole for the five-tuple of an existing pinhole extends it and returns its UniqueID (§2.4.3).
 */
import type { Logger } from 'pino';
import { UpnpErrorCode, type SoapValue } from '../../../protocols/upnp/index.js';
import { canonicalIPv6, isPinholeTarget, splitZone } from '../../common/ipv6.js';
import type { L4Protocol } from '../../common/net-types.js';
import type { LeaseTableApi } from '../../leases/table-api.js';
import type { Lease, Refusal } from '../../leases/types.js';

/** a stable UniqueID (ui2, 1-65535) per active UPnP pinhole; it survives a restart with the lease */
export interface PinholeDirectory {
  /** the pinhole's UniqueID; null when the lease has none (not a UPnP pinhole) */
  idOf(lease: Lease): number | null;
  /** the active UPnP pinhole with this UniqueID */
  leaseOf(uniqueId: number): Lease | null;
}

export interface PinholeDeps {
  readonly leases: LeaseTableApi;
  readonly directory: PinholeDirectory;
  readonly log: Logger;
  readonly secureMode: boolean;
  /** FirewallEnabled / InboundPinholeAllowed (§2.2.1, §2.2.2) */
  readonly status: () => { readonly firewallEnabled: boolean; readonly inboundPinholeAllowed: boolean };
  /** packets that went through the pinhole (kernel counters); null when the dataplane cannot count */
  readonly packets: (lease: Lease) => Promise<number | null>;
  /** how long the firewall keeps state for an outbound flow of this protocol, seconds (conntrack's timeouts) */
  readonly outboundTimeout: (protocol: L4Protocol) => number;
  /** may `client` act on a pinhole to `target`? (secure mode; the policy's "a host's own addresses") */
  readonly sameHost?: (client: string, target: string) => boolean;
  /** awaited before a request for another address than the client's own (reads the neighbour table) */
  readonly prepare?: (client: string, target: string) => Promise<void>;
}

export interface PinholeCall {
  readonly action: string;
  readonly args: ReadonlyMap<string, string>;
  /** the HTTP client's address (canonical text) */
  readonly client: string;
}

export type PinholeResult =
  | { readonly ok: true; readonly out: readonly (readonly [string, SoapValue])[] }
  | { readonly ok: false; readonly code: UpnpErrorCode; readonly detail: string };

const ok = (out: readonly (readonly [string, SoapValue])[] = []): PinholeResult => ({ ok: true, out });
const fail = (code: UpnpErrorCode, detail: string): PinholeResult => ({ ok: false, code, detail });

/** §2.3: LeaseTime is 1 to 86400 seconds */
export const PINHOLE_MAX_LEASE_TIME = 86400;
const PROTOCOL_ANY = 65535;

function ui(v: string | undefined, max: number): number | null {
  const t = (v ?? '').trim();
  if (!/^\d{1,10}$/.test(t)) return null;
  const n = Number(t);
  return n <= max ? n : null;
}

/** the five-tuple of AddPinhole / GetOutboundPinholeTimeout, checked in the order the template's errors suggest */
type Tuple = {
  readonly remote: string | null;
  readonly remotePort: number | null;
  readonly internal: string;
  readonly internalPort: number;
  readonly protocol: L4Protocol;
};

function parseTuple(a: ReadonlyMap<string, string>): Tuple | PinholeResult {
  const rh = (a.get('RemoteHost') ?? '').trim();
  let remote: string | null = null;
  // miniupnpc's own word for the wildcard: AddPinhole turns it into an empty field, GetOutboundPinholeTimeout
  // sends it as it is (`upnpc -G empty …`)
  if (rh !== '' && rh !== '*' && rh.toLowerCase() !== 'empty') {
    remote = canonicalIPv6(rh);
    if (remote === null) return fail(UpnpErrorCode.INVALID_ARGS, 'RemoteHost must be an IPv6 address, empty or *');
  }
  const rpText = (a.get('RemotePort') ?? '').trim();
  const rp = rpText === '' ? 0 : ui(rpText, 65535);
  if (rp === null) return fail(UpnpErrorCode.INVALID_ARGS, 'RemotePort must be a port number (0 = any)');
  const ic = (a.get('InternalClient') ?? '').trim();
  if (ic === '' || ic === '*' || ic.toLowerCase() === 'empty')
    return fail(UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_SRC_IP_FW6, 'InternalClient must name one address');
  const internal = canonicalIPv6(ic);
  if (internal === null || !isPinholeTarget(internal))
    return fail(
      UpnpErrorCode.INVALID_ARGS,
      'InternalClient must be a global or unique-local IPv6 address (not link-local, multicast or IPv4)',
    );
  const ip = ui(a.get('InternalPort'), 65535);
  if (ip === null) return fail(UpnpErrorCode.INVALID_ARGS, 'InternalPort must be a port number');
  if (ip === 0) return fail(UpnpErrorCode.INTERNAL_PORT_WILDCARDING_NOT_ALLOWED, 'InternalPort must not be 0');
  // an IANA number (§2.3); miniupnpc's GetOutboundPinholeTimeout sends the name as typed (`upnpc -G … UDP`)
  const protoText = (a.get('Protocol') ?? '').trim().toUpperCase();
  const proto = protoText === 'TCP' ? 6 : protoText === 'UDP' ? 17 : ui(protoText, 65535);
  if (proto === null) return fail(UpnpErrorCode.INVALID_ARGS, 'Protocol must be an IANA protocol number');
  if (proto === PROTOCOL_ANY)
    return fail(UpnpErrorCode.PROTOCOL_WILDCARDING_NOT_ALLOWED, 'Protocol must be 6 (TCP) or 17 (UDP)');
  const protocol: L4Protocol | null = proto === 6 ? 'tcp' : proto === 17 ? 'udp' : null;
  if (!protocol) return fail(UpnpErrorCode.PROTOCOL_NOT_SUPPORTED, `protocol ${proto}: only 6 (TCP) and 17 (UDP)`);
  return { remote, remotePort: rp === 0 ? null : rp, internal, internalPort: ip, protocol };
}

const isResult = (x: Tuple | PinholeResult): x is PinholeResult => 'ok' in x;

export function createPinholeActionHandler(deps: PinholeDeps) {
  const { leases, directory, log } = deps;

  /** may the caller touch this pinhole? Without secure mode any LAN client may, as for IPv4 mappings */
  const mayTouch = (client: string, l: Lease) =>
    !deps.secureMode ||
    l.owner === client ||
    l.internalAddress === client ||
    (deps.sameHost?.(client, l.internalAddress) ?? false);

  function refusal(r: Refusal): PinholeResult {
    switch (r.reason) {
      case 'not_authorized':
      case 'denied':
      case 'reserved':
        return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, r.detail);
      case 'conflict':
        return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, `pinhole held by a ${r.holder.source} lease`);
      case 'quota':
      case 'capacity':
      case 'no_port':
        return fail(UpnpErrorCode.PINHOLE_SPACE_EXHAUSTED, r.detail);
      case 'in_use':
      case 'invalid':
        return fail(UpnpErrorCode.INVALID_ARGS, r.detail);
      case 'unavailable':
        return fail(UpnpErrorCode.ACTION_FAILED, r.detail);
    }
  }

  function leaseTime(v: string | undefined, name: string): number | PinholeResult {
    const n = ui(v, 0xffffffff);
    if (n === null || n < 1 || n > PINHOLE_MAX_LEASE_TIME)
      return fail(UpnpErrorCode.INVALID_ARGS, `${name} must be 1 to ${PINHOLE_MAX_LEASE_TIME} seconds`);
    return n;
  }

  function grant(client: string, t: Tuple, lifetime: number, description: string) {
    return leases.request({
      family: 6,
      source: 'upnp',
      identity: 'external',
      protocol: t.protocol,
      owner: client,
      internalAddress: t.internal,
      internalPort: t.internalPort,
      // a pinhole has no translation: the external endpoint is the internal one
      externalPort: t.internalPort,
      allowOtherPort: false,
      remoteAddress: t.remote,
      remotePrefix: t.remote === null ? null : 128,
      remotePort: t.remotePort,
      lifetime,
      description,
      actor: `upnp:${client}`,
    });
  }

  /** the pinhole a UniqueID names, when the caller may act on it */
  async function byId(call: PinholeCall): Promise<Lease | PinholeResult> {
    const id = ui(call.args.get('UniqueID'), 65535);
    if (id === null) return fail(UpnpErrorCode.INVALID_ARGS, 'UniqueID must be a number 0-65535');
    const l = directory.leaseOf(id);
    if (l?.state !== 'active') return fail(UpnpErrorCode.NO_SUCH_ENTRY, `no pinhole ${id}`);
    if (deps.secureMode && l.owner !== call.client && l.internalAddress !== call.client)
      await deps.prepare?.(call.client, l.internalAddress);
    if (!mayTouch(call.client, l))
      return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, `pinhole ${id} belongs to another host (secure mode)`);
    return l;
  }
  const isLease = (x: Lease | PinholeResult): x is Lease => !('ok' in x);

  async function addPinhole(call: PinholeCall): Promise<PinholeResult> {
    const t = parseTuple(call.args);
    if (isResult(t)) return t;
    const lt = leaseTime(call.args.get('LeaseTime'), 'LeaseTime');
    if (typeof lt !== 'number') return lt;
    if (!deps.status().inboundPinholeAllowed)
      return fail(UpnpErrorCode.INBOUND_PINHOLE_NOT_ALLOWED, 'inbound pinholes are switched off');
    if (t.internal !== call.client) await deps.prepare?.(call.client, t.internal);
    const res = await grant(call.client, t, lt, 'IGD2 pinhole');
    if (!res.ok) return refusal(res);
    const id = directory.idOf(res.lease);
    if (id === null) return fail(UpnpErrorCode.ACTION_FAILED, 'the pinhole has no UniqueID');
    log.debug(
      { client: call.client, internal: `[${t.internal}]:${t.internalPort}`, uniqueId: id, created: res.created },
      res.created ? 'upnp pinhole granted' : 'upnp pinhole renewed',
    );
    return ok([['UniqueID', id]]);
  }

  async function updatePinhole(call: PinholeCall): Promise<PinholeResult> {
    const l = await byId(call);
    if (!isLease(l)) return l;
    const lt = leaseTime(call.args.get('NewLeaseTime'), 'NewLeaseTime');
    if (typeof lt !== 'number') return lt;
    if (!deps.status().inboundPinholeAllowed)
      return fail(UpnpErrorCode.INBOUND_PINHOLE_NOT_ALLOWED, 'inbound pinholes are switched off');
    const t: Tuple = {
      remote: l.remoteAddress,
      remotePort: l.remotePort,
      internal: l.internalAddress,
      internalPort: l.internalPort,
      protocol: l.protocol,
    };
    // renewed under its owner's name: in secure mode another address of the same host may update it
    const res = await grant(l.owner, t, lt, l.description);
    return res.ok ? ok() : refusal(res);
  }

  async function deletePinhole(call: PinholeCall): Promise<PinholeResult> {
    const l = await byId(call);
    if (!isLease(l)) return l;
    const res = await leases.release({
      family: 6,
      source: 'upnp',
      identity: 'external',
      protocol: l.protocol,
      owner: l.owner,
      externalPort: l.externalPort,
      internalAddress: l.internalAddress,
      internalPort: l.internalPort,
      remoteAddress: l.remoteAddress,
      thirdPartyAllowed: !deps.secureMode,
      actor: `upnp:${call.client}`,
    });
    if (!res.ok) return refusal(res);
    if (res.lease === null) return fail(UpnpErrorCode.NO_SUCH_ENTRY, 'no such pinhole');
    return ok();
  }

  async function packetsOf(call: PinholeCall): Promise<number | PinholeResult> {
    const l = await byId(call);
    if (!isLease(l)) return l;
    const n = await deps.packets(l);
    if (n === null) return fail(UpnpErrorCode.ACTION_FAILED, 'the dataplane keeps no packet counters');
    return n;
  }

  async function handle(raw: PinholeCall): Promise<PinholeResult> {
    // owners and targets are compared in the canonical text (src/common/ipv6.ts)
    const client = canonicalIPv6(splitZone(raw.client).address) ?? raw.client;
    const call: PinholeCall = client === raw.client ? raw : { ...raw, client };
    const st = deps.status();
    if (call.action === 'GetFirewallStatus')
      return ok([
        ['FirewallEnabled', st.firewallEnabled ? 1 : 0],
        ['InboundPinholeAllowed', st.inboundPinholeAllowed ? 1 : 0],
      ]);
    if (!st.firewallEnabled) return fail(UpnpErrorCode.FIREWALL_DISABLED, 'the IPv6 firewall is off');
    try {
      switch (call.action) {
        case 'GetOutboundPinholeTimeout': {
          const t = parseTuple(call.args);
          if (isResult(t)) return t;
          return ok([['OutboundPinholeTimeout', deps.outboundTimeout(t.protocol)]]);
        }
        case 'AddPinhole':
          return await addPinhole(call);
        case 'UpdatePinhole':
          return await updatePinhole(call);
        case 'DeletePinhole':
          return await deletePinhole(call);
        case 'GetPinholePackets': {
          const n = await packetsOf(call);
          // ui4: a counter past 2^32 wraps, as UPnP counters do
          return typeof n === 'number' ? ok([['PinholePackets', n % 2 ** 32]]) : n;
        }
        case 'CheckPinholeWorking': {
          const n = await packetsOf(call);
          if (typeof n !== 'number') return n;
          return n > 0
            ? ok([['IsWorking', 1]])
            : fail(UpnpErrorCode.NO_PACKET_SENT, 'no packet has gone through the pinhole yet');
        }
        default:
          return fail(UpnpErrorCode.INVALID_ACTION, `no action ${call.action}`);
      }
    } catch (err) {
      log.error({ err, action: call.action, client: call.client }, 'upnp pinhole action failed');
      return fail(UpnpErrorCode.ACTION_FAILED, 'internal error');
    }
  }

  /** the evented variables (§2.2.1-2), for GENA */
  function eventVars(): [string, number][] {
    const st = deps.status();
    return [
      ['FirewallEnabled', st.firewallEnabled ? 1 : 0],
      ['InboundPinholeAllowed', st.inboundPinholeAllowed ? 1 : 0],
    ];
  }

  return { handle, eventVars };
}
export type PinholeActionHandler = ReturnType<typeof createPinholeActionHandler>;
