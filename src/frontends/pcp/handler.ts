/**
 * One datagram in, at most one datagram out: PCP (RFC 6887) and NAT-PMP (RFC 6886) requests
 * turned into lease-table calls, and the answers (or typed refusals) turned back into result
 * codes. No sockets here; the server in server.ts feeds it.
 */
import type { UpstreamChain, UpstreamRefusal } from '../../leases/upstream.js';
import type { Logger } from 'pino';
import type { Config, LimitsConfig } from '../../config/types.js';
import { createRateLimiter } from '../rate-limit.js';
import { createCanonicalAddress } from './canonical-address.js';
import { ipInCidr } from '../../common/net.js';
import { createIPv6Memo, formatIPv6, maskIPv6, parseIPv6 } from '../../common/ipv6.js';
import type { AddressFamily } from '../../common/net-types.js';
import type { LeaseTableApi } from '../../leases/table-api.js';
import type { Lease, Refusal } from '../../leases/types.js';
import {
  classifyPacket,
  decodeNatPmpRequest,
  decodePcpRequest,
  encodeNatPmpResponse,
  encodePcpResponse,
  errorLifetime,
  errorResponseFor,
  IpProtocol,
  NAT_PMP_RESULT_CODE_NAMES,
  NatPmpDecodeError,
  NatPmpOpcode,
  NatPmpResultCode,
  nonceHex,
  Opcode,
  PcpDecodeError,
  RESULT_CODE_NAMES,
  ResultCode,
  Version,
  isUnspecified,
  sameAddress,
} from '../../../protocols/pcp/index.js';
import type {
  MapData,
  NatPmpRequest,
  PcpOption,
  PcpRequest,
  PcpResponse,
  PeerData,
} from '../../../protocols/pcp/index.js';
import type { ConntrackApi } from './conntrack.js';

export type PcpFrontend = 'pcp' | 'natpmp';

export interface HandleResult {
  /** the answer to send to the packet's source; null = drop silently */
  readonly response: Uint8Array | null;
  readonly frontend: PcpFrontend;
  /** result code name for metrics and logs ('DROPPED' when nothing is sent) */
  readonly result: string;
  /** why, for the log line of a refusal or bad input */
  readonly detail?: string;
  /** true when the packet was malformed or hostile (counted as bad input) */
  readonly bad?: boolean;
  /** the global limit (a key of config.limits) that refused this request, for its metric and log line */
  readonly limit?: 'peerLookupsPerSecond';
}

/** what the PCP front-end reads of the configuration: main.ts passes the whole Config, tests and benches build it */
export type PcpFrontendConfig = Pick<Config, 'pcp' | 'natpmp' | 'policy'> & {
  readonly limits: Pick<LimitsConfig, 'pcpRequestsPerSecond' | 'peerLookupsPerSecond'>;
};

export interface PcpHandlerDeps {
  readonly config: PcpFrontendConfig;
  readonly leases: LeaseTableApi;
  readonly log: Logger;
  readonly conntrack: ConntrackApi | null;
  /** seconds since the epoch began (RFC 6887 §8.5, RFC 6886 §3.6) */
  readonly epoch: () => number;
  /** ms clock for the global PEER rate (the server passes its clock) */
  readonly now: () => number;
  /**
   * MAP for an IPv6 internal address opens a firewall pinhole (a lease of family 6, no translation;
   * issue 15); off: such requests get NOT_AUTHORIZED, as before
   */
  readonly ipv6Pinholes?: boolean | (() => boolean);
  /** the address NAT-PMP's external address answer reports (dataplane/wan-status.ts); default the WAN's */
  readonly reportedAddress?: () => string;
  /** behind another NAT: each IPv4 grant is also requested upstream (src/upstream/); absent = not chained */
  readonly upstream?: UpstreamChain;
}

const PCP_DROP = { response: null, frontend: 'pcp', result: 'DROPPED', bad: true } as const;

function protocolName(p: number): 'tcp' | 'udp' | null {
  return p === IpProtocol.TCP ? 'tcp' : p === IpProtocol.UDP ? 'udp' : null;
}

function isIpv4(a: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(a);
}

/**
 * Refusal reason → PCP result code (RFC 6887 §7.4).
 * - conflict / no_port: CANNOT_PROVIDE_EXTERNAL with PREFER_FAILURE (§13.2); otherwise the table
 *   already tried other ports, so no_port means none is left: NO_RESOURCES
 * - reserved: CANNOT_PROVIDE_EXTERNAL (this port cannot be had, another might: a short error)
 * - denied (allow/deny rules) and not_authorized (secure mode, nonce, read-only): NOT_AUTHORIZED
 * - in_use (the gateway listens on that port): CANNOT_PROVIDE_EXTERNAL
 * - quota: USER_EX_QUOTA; capacity (a global cap): NO_RESOURCES; invalid: MALFORMED_REQUEST; unavailable: NO_RESOURCES
 *   (short lifetime)
 */
export function pcpCodeFor(r: Refusal, preferFailure: boolean): number {
  switch (r.reason) {
    case 'conflict':
      return ResultCode.CANNOT_PROVIDE_EXTERNAL;
    case 'no_port':
      return preferFailure ? ResultCode.CANNOT_PROVIDE_EXTERNAL : ResultCode.NO_RESOURCES;
    case 'reserved':
      return ResultCode.CANNOT_PROVIDE_EXTERNAL;
    case 'in_use':
      return ResultCode.CANNOT_PROVIDE_EXTERNAL;
    case 'capacity':
      return ResultCode.NO_RESOURCES;
    case 'denied':
      return ResultCode.NOT_AUTHORIZED;
    case 'not_authorized':
      return ResultCode.NOT_AUTHORIZED;
    case 'quota':
      return ResultCode.USER_EX_QUOTA;
    case 'invalid':
      return ResultCode.MALFORMED_REQUEST;
    case 'unavailable':
      return ResultCode.NO_RESOURCES;
  }
}

/** Refusal reason → NAT-PMP result code (RFC 6886 §3.5) */
export function natPmpCodeFor(r: Refusal): number {
  switch (r.reason) {
    case 'conflict':
    case 'no_port':
    case 'quota':
    case 'capacity':
    case 'in_use':
    case 'unavailable':
      return NatPmpResultCode.OUT_OF_RESOURCES;
    case 'reserved':
    case 'denied':
    case 'not_authorized':
    case 'invalid':
      return NatPmpResultCode.NOT_AUTHORIZED;
  }
}

/**
 * An upstream refusal (src/upstream/, chaining behind another NAT) → PCP result code (RFC 6887 §7.4); the
 * table is in docs/double-nat.md. unavailable (no answer in time) is NO_RESOURCES, a short-lifetime error:
 * the client retries, and by then the upstream answer is usually in.
 */
export function pcpCodeForUpstream(r: UpstreamRefusal): number {
  switch (r) {
    case 'not_authorized':
      return ResultCode.NOT_AUTHORIZED;
    case 'cannot_provide_external':
      return ResultCode.CANNOT_PROVIDE_EXTERNAL;
    case 'no_resources':
      return ResultCode.NO_RESOURCES;
    case 'unavailable':
      return ResultCode.NO_RESOURCES;
  }
}

/** An upstream refusal → NAT-PMP result code (RFC 6886 §3.5); unavailable is NETWORK_FAILURE (3) */
export function natPmpCodeForUpstream(r: UpstreamRefusal): number {
  switch (r) {
    case 'not_authorized':
      return NatPmpResultCode.NOT_AUTHORIZED;
    case 'cannot_provide_external':
    case 'no_resources':
      return NatPmpResultCode.OUT_OF_RESOURCES;
    case 'unavailable':
      return NatPmpResultCode.NETWORK_FAILURE;
  }
}

function refusalDetail(r: Refusal): string {
  return r.reason === 'conflict' ? `conflict with ${r.holder.source} lease ${r.holder.id}` : `${r.reason}: ${r.detail}`;
}

export function createPcpHandler(deps: PcpHandlerDeps) {
  const { config, leases, conntrack } = deps;
  const opcodes: number[] = [Opcode.ANNOUNCE, Opcode.MAP];
  // PEER: IPv4 flows need conntrack (an existing flow is extended); an IPv6 one is a pinhole for its peer
  const pinholesConfigured = deps.ipv6Pinholes !== undefined && deps.ipv6Pinholes !== false;
  if (config.pcp.peer && (conntrack || pinholesConfigured)) opcodes.push(Opcode.PEER);
  const pcpBounds = config.policy.lifetime.pcp;
  // every PEER request may start a `conntrack` process: a global rate across all clients, so spoofed
  // LAN sources cannot multiply it (the conntrack runner also runs one process at a time and caches)
  const peerRate = config.limits.peerLookupsPerSecond;
  const peerLimiter = createRateLimiter({ rate: peerRate, now: deps.now, maxClients: 1 });
  // the addresses of every request are canonicalised, and a pinhole's checked, several times: remembered, not
  // parsed again (issue 15 item 9); both bounded
  const canonicalAddress = createCanonicalAddress();
  const ipv6 = createIPv6Memo();
  const canonicalIPv6 = ipv6.canonical;

  // pcp.thirdParty is fixed for the handler's life: a requester's answer is remembered, as for the addresses
  const thirdPartyByRequester = new Map<string, boolean>();
  function thirdPartyAllowed(requester: string): boolean {
    let ok = thirdPartyByRequester.get(requester);
    if (ok === undefined) {
      ok = config.pcp.thirdParty.some((c) => ipInCidr(requester, c));
      if (thirdPartyByRequester.size >= 1024) thirdPartyByRequester.clear();
      thirdPartyByRequester.set(requester, ok);
    }
    return ok;
  }

  function pcpResult(res: PcpResponse, detail?: string): HandleResult {
    return {
      response: encodePcpResponse(res),
      frontend: 'pcp',
      result: RESULT_CODE_NAMES[res.resultCode] ?? String(res.resultCode),
      ...(detail ? { detail } : {}),
    };
  }

  function pcpError(
    req: PcpRequest,
    code: number,
    options: readonly PcpOption[],
    detail: string,
    data?: { map?: MapData; peer?: PeerData },
  ): HandleResult {
    return pcpResult(
      {
        version: Version.PCP,
        opcode: req.opcode,
        resultCode: code,
        lifetime: errorLifetime(code),
        epoch: deps.epoch(),
        ...(req.opcode === Opcode.MAP ? { map: data?.map ?? req.map } : {}),
        ...(req.opcode === Opcode.PEER ? { peer: data?.peer ?? req.peer } : {}),
        options,
      },
      detail,
    );
  }

  /** common MAP/PEER checks: THIRD_PARTY and protocol (RFC 6887 §13.1, §11.1) */
  function subject(
    req: PcpRequest & { opcode: 1 | 2 },
    source: string,
    data: MapData,
  ):
    | {
        ok: true;
        internalAddress: string;
        family: AddressFamily;
        thirdParty: boolean;
        protocol: 'tcp' | 'udp';
        processed: PcpOption[];
      }
    | { ok: false; result: HandleResult } {
    const processed: PcpOption[] = [];
    let internalAddress = canonicalAddress(req.clientAddress);
    let thirdParty = false;
    const tp = req.options.find((o): o is Extract<PcpOption, { kind: 'third_party' }> => o.kind === 'third_party');
    if (tp) {
      processed.push(tp);
      const target = canonicalAddress(tp.address);
      if (thirdPartyAllowed(source)) {
        internalAddress = target;
        thirdParty = true;
      } else if (!(config.policy.secureMode && !isIpv4(target) && !isIpv4(source))) {
        // RFC 6887 §13.1: a THIRD_PARTY the server is not configured to accept is NOT_AUTHORIZED
        return {
          ok: false,
          result: pcpError(
            req,
            ResultCode.NOT_AUTHORIZED,
            processed,
            `THIRD_PARTY from ${source} not allowed (pcp.thirdParty)`,
          ),
        };
      } else {
        // a pinhole for another address of the requester (a privacy address asking for the stable one, or
        // the other way round): secure mode's own-address check decides, as for UPnP's AddPinhole
        // (policy.ts, same-host.ts: one link-layer address in the neighbour table); any other host's
        // address is refused there, and answered NOT_AUTHORIZED (§13.1)
        internalAddress = target;
      }
    }
    if (data.protocol === IpProtocol.ALL) {
      // whole-host mappings have no lease shape in portd; an admin who enables them still gets UNSUPP_PROTOCOL
      const code = config.pcp.allowAllProtocols ? ResultCode.UNSUPP_PROTOCOL : ResultCode.NOT_AUTHORIZED;
      return { ok: false, result: pcpError(req, code, processed, 'protocol 0 (all protocols)') };
    }
    const protocol = protocolName(data.protocol);
    if (!protocol)
      return { ok: false, result: pcpError(req, ResultCode.UNSUPP_PROTOCOL, processed, `protocol ${data.protocol}`) };
    if (isIpv4(internalAddress)) return { ok: true, internalAddress, family: 4, thirdParty, protocol, processed };
    // an IPv6 internal address: a pinhole to it (RFC 6887 §11.3: for a firewall, the assigned external
    // address and port are the internal ones)
    const facts = ipv6.facts(internalAddress);
    const v6 = facts.canonical;
    const on = typeof deps.ipv6Pinholes === 'function' ? deps.ipv6Pinholes() : (deps.ipv6Pinholes ?? false);
    const why = !on
      ? 'IPv6 pinholes are off'
      : v6 === null || !facts.pinholeTarget
        ? 'not a global or unique-local address: no pinhole can reach it'
        : null;
    if (why !== null)
      return {
        ok: false,
        result: pcpError(req, ResultCode.NOT_AUTHORIZED, processed, `internal address ${internalAddress}: ${why}`),
      };
    return { ok: true, internalAddress: v6!, family: 6, thirdParty, protocol, processed };
  }

  async function handleMap(req: PcpRequest & { opcode: 1 }, from: string): Promise<HandleResult> {
    // an IPv6 owner in the canonical text, as leases compare it (a link-local source keeps its zone)
    const source = from.includes(':') && !from.includes('%') ? (canonicalIPv6(from) ?? from) : from;
    const m = req.map;
    const s = subject(req, source, m);
    if (!s.ok) return s.result;
    const processed = s.processed;
    const preferFailure = req.options.some((o) => o.kind === 'prefer_failure');
    if (preferFailure) processed.push({ kind: 'prefer_failure' });

    const filters = req.options.filter((o): o is Extract<PcpOption, { kind: 'filter' }> => o.kind === 'filter');

    // a pinhole has no translation: its external address is the internal one
    const ext = s.family === 6 ? s.internalAddress : leases.externalAddress();
    const nonce = nonceHex(m.nonce);
    const common = {
      source: 'pcp' as const,
      identity: 'internal' as const,
      protocol: s.protocol,
      owner: source,
      internalAddress: s.internalAddress,
      internalPort: m.internalPort,
      nonce,
      thirdPartyAllowed: s.thirdParty,
      actor: `pcp:${source}`,
      // last: a spread that opens an object literal takes V8's slow path (15-40 µs; table.ts toEntry)
      ...(s.family === 6 ? { family: 6 as const } : {}),
    };

    if (req.lifetime === 0) {
      // delete (RFC 6887 §15); deleting what does not exist succeeds
      const released =
        m.internalPort === 0
          ? await releaseAll(s.protocol, s.internalAddress, source, { ...common, identity: 'internal' }, nonce)
          : await leases.release({ ...common });
      if (!released.ok) return pcpError(req, pcpCodeFor(released, preferFailure), processed, refusalDetail(released));
      const port = released.lease?.externalPort ?? m.externalPort;
      return pcpResult(
        {
          version: Version.PCP,
          opcode: Opcode.MAP,
          resultCode: ResultCode.SUCCESS,
          lifetime: 0,
          epoch: deps.epoch(),
          map: {
            ...m,
            externalPort: port,
            externalAddress:
              released.lease?.externalAddress ?? (isUnspecified(m.externalAddress) ? ext : m.externalAddress),
          },
          options: processed,
        },
        released.lease ? `deleted lease ${released.lease.id}` : 'nothing to delete',
      );
    }

    // the filters a renewal adds to are the mapping's own; one this client cannot renew is left to the table to refuse
    const mine = leases.findByInternal(s.protocol, s.internalAddress, m.internalPort);
    const existing = mine && mine.owner === source && (mine.nonce === null || mine.nonce === nonce) ? mine : null;
    const f = filterOutcome(filters, s.family, existing);
    // a refused FILTER is not echoed: the answer never names a filter the kernel does not apply
    if (!f.ok) return pcpError(req, f.code, processed, f.detail);
    processed.push(...filters);
    const remote = f.remote;
    // a pinhole's remote filter is part of its identity (a lease per peer): a FILTER that changes this
    // client's own pinhole replaces it (ended, then granted with the new filter below), rather than leaving
    // the old filter open beside the new one
    if (
      s.family === 6 &&
      existing &&
      remote &&
      (existing.remoteAddress !== remote.remoteAddress ||
        (existing.remoteAddress !== null && (existing.remotePrefix ?? 128) !== remote.remotePrefix))
    ) {
      const ended = await leases.release({ ...common, remoteAddress: existing.remoteAddress });
      if (!ended.ok) return pcpError(req, pcpCodeFor(ended, preferFailure), processed, refusalDetail(ended));
    }

    if (!isUnspecified(m.externalAddress) && !sameAddress(m.externalAddress, ext) && preferFailure) {
      return pcpError(
        req,
        ResultCode.CANNOT_PROVIDE_EXTERNAL,
        processed,
        `suggested external address ${m.externalAddress} is not ours (${ext})`,
      );
    }
    // a pinhole's port is the internal port, whatever was suggested (the suggestion is a hint, §11.3)
    if (s.family === 6 && m.externalPort !== 0 && m.externalPort !== m.internalPort && preferFailure)
      return pcpError(
        req,
        ResultCode.CANNOT_PROVIDE_EXTERNAL,
        processed,
        `a pinhole keeps the internal port ${m.internalPort}, not ${m.externalPort}`,
      );
    const r = await leases.request({
      ...common,
      externalPort: s.family === 6 ? m.internalPort : m.externalPort === 0 ? undefined : m.externalPort,
      allowOtherPort: s.family === 6 ? false : !preferFailure,
      ...(remote ?? {}),
      lifetime: req.lifetime,
      description:
        s.family === 6
          ? `PCP ${s.protocol.toUpperCase()} [${s.internalAddress}]:${m.internalPort}`
          : `PCP ${s.protocol.toUpperCase()} ${s.internalAddress}:${m.internalPort}`,
    } as Parameters<LeaseTableApi['request']>[0]);
    if (!r.ok) return pcpError(req, pcpCodeFor(r, preferFailure), processed, refusalDetail(r));
    // behind another NAT: the answer names the public endpoint the upstream gave (src/upstream/)
    const up = s.family === 6 || !deps.upstream ? null : await deps.upstream.chain(r.lease);
    if (up?.kind === 'refused') return pcpError(req, pcpCodeForUpstream(up.reason), processed, up.detail);
    const mapped = up?.kind === 'mapped' ? up : null;
    return pcpResult(
      {
        version: Version.PCP,
        opcode: Opcode.MAP,
        resultCode: ResultCode.SUCCESS,
        lifetime: mapped ? Math.min(r.lifetime ?? 0, mapped.lifetime) : (r.lifetime ?? 0),
        epoch: deps.epoch(),
        map: mapped
          ? { ...m, externalPort: mapped.externalPort, externalAddress: mapped.externalAddress }
          : { ...m, externalPort: r.lease.externalPort, externalAddress: r.lease.externalAddress },
        options: processed,
      },
      `${r.created ? 'granted' : 'renewed'} lease ${r.lease.id}` +
        (mapped ? ` (public ${mapped.externalAddress}:${mapped.externalPort})` : ''),
    );
  }

  /**
   * FILTER (RFC 6887 §13.3) against what the kernel enforces. The nftables map fwd4_peer is keyed by
   * (remote address . protocol . external port): one whole remote IPv4 address, any remote port. So
   * portd honours at most one filter per mapping, of the form a.b.c.d/32 (prefix 128 in the
   * IPv4-mapped field) with remote port 0 ("all ports"). The options are taken in order: prefix
   * length 0 removes every filter, each other one adds a peer to those the mapping already has.
   * A result the kernel cannot enforce (a shorter prefix, one remote port, two peers) refuses the
   * request as a whole with EXCESSIVE_REMOTE_PEERS (§7.4: "The PCP server was not able to create
   * the filters in this request"), and nothing changes.
   */
  function filterOutcome(
    filters: readonly Extract<PcpOption, { kind: 'filter' }>[],
    family: AddressFamily,
    existing: Lease | null,
  ):
    | {
        ok: true;
        remote: { remoteAddress: string | null; remotePrefix: number | null; remotePort: number | null } | undefined;
      }
    | { ok: false; code: number; detail: string } {
    if (filters.length === 0) return { ok: true, remote: undefined }; // no FILTER: the mapping's filter stays as it is
    // the kernel keys on one whole remote address: /32 for a mapping, /128 for a pinhole
    const whole = family === 4 ? 32 : 128;
    const peers: { address: string; prefix: number; port: number }[] = [];
    if (existing?.remoteAddress)
      peers.push({
        address: existing.remoteAddress,
        prefix: existing.remotePrefix ?? whole,
        port: existing.remotePort ?? 0,
      });
    for (const f of filters) {
      if (f.prefixLength === 0) {
        peers.length = 0;
        continue;
      }
      const v4 = isIpv4(f.remoteAddress);
      if (v4 !== (family === 4))
        return { ok: false, code: ResultCode.MALFORMED_OPTION, detail: 'FILTER of another address family' };
      const prefix = v4 ? f.prefixLength - 96 : f.prefixLength;
      // an IPv6 prefix is kept as its network (host bits zero), so one prefix is one filter however it was spelt
      const six = v4 ? null : parseIPv6(f.remoteAddress);
      const address = v4 ? f.remoteAddress : six ? formatIPv6(maskIPv6(six, prefix)) : f.remoteAddress;
      const peer = { address, prefix, port: f.remotePort };
      if (!peers.some((p) => p.address === peer.address && p.prefix === peer.prefix && p.port === peer.port))
        peers.push(peer);
    }
    if (peers.length === 0) return { ok: true, remote: { remoteAddress: null, remotePrefix: null, remotePort: null } };
    const [peer] = peers;
    if (peers.length > 1) {
      return {
        ok: false,
        code: ResultCode.EXCESSIVE_REMOTE_PEERS,
        detail: `FILTER would allow ${peers.length} remote peers; the kernel filters on one`,
      };
    }
    // IPv6: a prefix too (the pin6_net set, RFC 6887 §13.3); IPv4: one whole address (the dnat peer map)
    if ((family === 4 && peer!.prefix !== whole) || peer!.port !== 0) {
      return {
        ok: false,
        code: ResultCode.EXCESSIVE_REMOTE_PEERS,
        detail:
          `FILTER ${peer!.address}/${peer!.prefix} port ${peer!.port || 'any'}: the kernel filters on ` +
          (family === 4 ? 'one whole address (/32), any remote port' : 'a remote address or prefix, any remote port'),
      };
    }
    return { ok: true, remote: { remoteAddress: peer!.address, remotePrefix: peer!.prefix, remotePort: null } };
  }

  /**
   * internal port 0 + lifetime 0: every mapping of this internal address for the protocol (RFC 6887 §11.1, RFC 6886
   * §3.4)
   */
  async function releaseAll(
    protocol: 'tcp' | 'udp',
    internalAddress: string,
    owner: string,
    base: Omit<Parameters<LeaseTableApi['release']>[0], 'internalPort'>,
    nonce: string | null,
  ): Promise<{ ok: true; lease: Lease | null } | Refusal> {
    const mine = leases
      .list({ owner, protocol, state: 'active', limit: 10000 })
      .leases.filter((l) => (l.source === 'pcp' || l.source === 'natpmp') && l.internalAddress === internalAddress);
    for (const l of mine) {
      // another nonce (or NAT-PMP, which has none, before a PCP lease): not this client's to end
      if (l.nonce !== null && (base.source !== 'pcp' || l.nonce !== nonce)) continue;
      const r = await leases.release({ ...base, internalPort: l.internalPort });
      if (!r.ok) return r;
    }
    return { ok: true, lease: null };
  }

  /**
   * PEER for an IPv6 flow (RFC 6887 §12): portd is a pure firewall there, so PEER creates or extends the
   * pinhole for that one remote peer (§12.3: the mapping PEER would create is, without translation, the
   * internal endpoint itself): a family-6 lease, external = internal, with the remote filter = the peer's
   * whole address. The kernel filters on the remote address, not its port (docs/nftables.md), so the peer is
   * let in from any of its ports. Renewals, the nonce and lifetime 0 (delete) work as for MAP.
   */
  async function handlePinholePeer(
    req: PcpRequest & { opcode: 2 },
    from: string,
    s: { internalAddress: string; thirdParty: boolean; protocol: 'tcp' | 'udp'; processed: PcpOption[] },
  ): Promise<HandleResult> {
    const source = from.includes(':') && !from.includes('%') ? (canonicalIPv6(from) ?? from) : from;
    const p = req.peer;
    const remoteText = canonicalAddress(p.remoteAddress);
    // no NAT64 in portd: an IPv6 host's flow to an IPv4 peer cannot exist here, and nothing would be opened
    if (isIpv4(remoteText))
      return pcpError(
        req,
        ResultCode.NOT_AUTHORIZED,
        s.processed,
        `PEER from IPv6 ${s.internalAddress} to IPv4 ${remoteText}: portd does no NAT64`,
      );
    const remote = canonicalIPv6(remoteText);
    if (remote === null || isUnspecified(p.remoteAddress))
      return pcpError(req, ResultCode.MALFORMED_REQUEST, s.processed, 'PEER without a remote peer address');
    const nonce = nonceHex(p.nonce);
    const common = {
      family: 6 as const,
      source: 'pcp' as const,
      identity: 'internal' as const,
      protocol: s.protocol,
      owner: source,
      internalAddress: s.internalAddress,
      internalPort: p.internalPort,
      remoteAddress: remote,
      nonce,
      thirdPartyAllowed: s.thirdParty,
      actor: `pcp:${source}`,
    };
    const answer = (lifetime: number, lease: Lease | null, detail: string) =>
      pcpResult(
        {
          version: Version.PCP,
          opcode: Opcode.PEER,
          resultCode: ResultCode.SUCCESS,
          lifetime,
          epoch: deps.epoch(),
          // no translation: the assigned external endpoint is the internal one (§12.3)
          peer: {
            ...p,
            externalPort: lease?.externalPort ?? p.internalPort,
            externalAddress: lease?.externalAddress ?? s.internalAddress,
          },
          options: s.processed,
        },
        detail,
      );
    if (req.lifetime === 0) {
      const released = await leases.release(common);
      if (!released.ok) return pcpError(req, pcpCodeFor(released, false), s.processed, refusalDetail(released));
      return answer(0, released.lease, released.lease ? `deleted lease ${released.lease.id}` : 'nothing to delete');
    }
    const r = await leases.request({
      ...common,
      externalPort: p.internalPort,
      allowOtherPort: false,
      remotePrefix: 128,
      remotePort: null,
      lifetime: req.lifetime,
      description: `PCP PEER ${s.protocol.toUpperCase()} [${s.internalAddress}]:${p.internalPort} from [${remote}]`,
    } as Parameters<LeaseTableApi['request']>[0]);
    if (!r.ok) return pcpError(req, pcpCodeFor(r, false), s.processed, refusalDetail(r));
    return answer(r.lifetime ?? 0, r.lease, `${r.created ? 'granted' : 'renewed'} lease ${r.lease.id}`);
  }

  async function handlePeer(req: PcpRequest & { opcode: 2 }, source: string): Promise<HandleResult> {
    const p = req.peer;
    const s = subject(req, source, p);
    if (!s.ok) return s.result;
    if (s.family === 6) return handlePinholePeer(req, source, s);
    if (!conntrack) return pcpError(req, ResultCode.UNSUPP_OPCODE, s.processed, 'PEER without conntrack');
    if (!peerLimiter.take('peer')) {
      // RFC 6887 §7.4: NO_RESOURCES, a short lifetime error: the client may ask again in 30 s
      return {
        ...pcpError(req, ResultCode.NO_RESOURCES, s.processed, `over limits.peerLookupsPerSecond ${peerRate}`),
        limit: 'peerLookupsPerSecond',
      };
    }
    const q = {
      protocol: s.protocol,
      internalAddress: s.internalAddress,
      internalPort: p.internalPort,
      remoteAddress: p.remoteAddress,
      remotePort: p.remotePort,
    };
    let flow;
    try {
      flow = await conntrack.lookup(q);
    } catch (e) {
      return pcpError(req, ResultCode.NO_RESOURCES, s.processed, `conntrack lookup failed: ${(e as Error).message}`);
    }
    // no such flow: portd does not create implicit mappings ahead of traffic; NO_RESOURCES
    // (a short error) tells the client to retry once its first packet has created the flow
    if (!flow)
      return pcpError(
        req,
        ResultCode.NO_RESOURCES,
        s.processed,
        `no ${s.protocol} flow ${s.internalAddress}:${p.internalPort} → ${p.remoteAddress}:${p.remotePort}`,
      );
    let lifetime = 0;
    // lifetime 0: the flow is left to conntrack's own timeout (docs/pcp.md), so any hold ends
    if (req.lifetime === 0) conntrack.release?.(q);
    if (req.lifetime > 0) {
      lifetime = Math.min(pcpBounds.max, Math.max(pcpBounds.min, req.lifetime));
      // a PEER request extends a flow, never shortens it (RFC 6887 §12.3: the lifetime is a minimum):
      // a flow that conntrack keeps longer already is left as it is, and the longer time is reported
      if (flow.timeout !== null && flow.timeout >= lifetime) lifetime = Math.min(pcpBounds.max, flow.timeout);
      else {
        const ok = await conntrack.extend(q, lifetime).catch(() => false);
        if (!ok)
          return pcpError(
            req,
            ResultCode.NO_RESOURCES,
            s.processed,
            'flow could not be extended (it ended, or too many flows are held)',
          );
      }
    }
    return pcpResult(
      {
        version: Version.PCP,
        opcode: Opcode.PEER,
        resultCode: ResultCode.SUCCESS,
        lifetime,
        epoch: deps.epoch(),
        peer: { ...p, externalPort: flow.externalPort, externalAddress: flow.externalAddress },
        options: s.processed,
      },
      `flow via ${flow.externalAddress}:${flow.externalPort} kept ${lifetime}s`,
    );
  }

  async function handlePcp(b: Uint8Array, source: string): Promise<HandleResult> {
    if (!config.pcp.enabled) {
      // NAT-PMP-only gateway: RFC 6887 §9 — answer like a NAT-PMP server so PCP clients fall back
      return natPmpUnsupportedVersion(b);
    }
    let req: PcpRequest;
    try {
      req = decodePcpRequest(b, { source, opcodes });
    } catch (e) {
      if (!(e instanceof PcpDecodeError)) throw e;
      const res = errorResponseFor(e, deps.epoch());
      if (!res) return { ...PCP_DROP, detail: e.message };
      return { ...pcpResult(res, e.message), bad: true };
    }
    switch (req.opcode) {
      case Opcode.ANNOUNCE:
        // RFC 6887 §14.1: a success with lifetime 0 lets the client learn our epoch
        return pcpResult({
          version: Version.PCP,
          opcode: Opcode.ANNOUNCE,
          resultCode: ResultCode.SUCCESS,
          lifetime: 0,
          epoch: deps.epoch(),
          options: [],
        });
      case Opcode.MAP:
        return handleMap(req, source);
      case Opcode.PEER:
        return handlePeer(req, source);
    }
  }

  function natPmpUnsupportedVersion(b: Uint8Array): HandleResult {
    const response = encodeNatPmpResponse({
      opcode: (b[1] ?? 0) & 0x7f,
      resultCode: NatPmpResultCode.UNSUPPORTED_VERSION,
      epoch: deps.epoch(),
      headerOnly: true,
    });
    return { response, frontend: 'natpmp', result: 'UNSUPPORTED_VERSION', bad: true };
  }

  function natResult(res: Parameters<typeof encodeNatPmpResponse>[0], detail?: string, bad?: boolean): HandleResult {
    return {
      response: encodeNatPmpResponse(res),
      frontend: 'natpmp',
      result: NAT_PMP_RESULT_CODE_NAMES[res.resultCode] ?? String(res.resultCode),
      ...(detail ? { detail } : {}),
      ...(bad ? { bad } : {}),
    };
  }

  async function handleNatPmp(b: Uint8Array, source: string): Promise<HandleResult> {
    if (!config.natpmp.enabled) {
      // PCP-only: RFC 6887 §9 — a version we do not speak; the answer carries version 2
      return pcpResult(
        {
          version: Version.PCP,
          opcode: (b[1] ?? 0) & 0x7f,
          resultCode: ResultCode.UNSUPP_VERSION,
          lifetime: errorLifetime(ResultCode.UNSUPP_VERSION),
          epoch: deps.epoch(),
          options: [],
        },
        'NAT-PMP disabled',
      );
    }
    let req: NatPmpRequest;
    try {
      req = decodeNatPmpRequest(b);
    } catch (e) {
      if (!(e instanceof NatPmpDecodeError)) throw e;
      if (e.action === 'drop')
        return { response: null, frontend: 'natpmp', result: 'DROPPED', detail: e.message, bad: true };
      return natResult(
        { opcode: e.opcode, resultCode: e.resultCode, epoch: deps.epoch(), headerOnly: true },
        e.message,
        true,
      );
    }
    const owner = canonicalAddress(source);
    const ext = deps.reportedAddress?.() ?? leases.externalAddress();
    if (req.opcode === NatPmpOpcode.EXTERNAL_ADDRESS) {
      if (!isIpv4(ext) || ext === '0.0.0.0') {
        return natResult(
          {
            opcode: req.opcode,
            resultCode: NatPmpResultCode.NETWORK_FAILURE,
            epoch: deps.epoch(),
            externalAddress: '0.0.0.0',
          },
          'no external IPv4 address',
        );
      }
      return natResult({
        opcode: req.opcode,
        resultCode: NatPmpResultCode.SUCCESS,
        epoch: deps.epoch(),
        externalAddress: ext,
      });
    }
    const protocol = req.opcode === NatPmpOpcode.MAP_UDP ? 'udp' : 'tcp';
    const fail = (code: number, detail: string) =>
      natResult(
        {
          opcode: req.opcode,
          resultCode: code,
          epoch: deps.epoch(),
          internalPort: req.internalPort,
          externalPort: 0,
          lifetime: 0,
        },
        detail,
      );
    if (!isIpv4(owner)) return fail(NatPmpResultCode.NOT_AUTHORIZED, 'NAT-PMP is IPv4 only');
    const base = {
      source: 'natpmp' as const,
      identity: 'internal' as const,
      protocol,
      owner,
      internalAddress: owner,
      actor: `natpmp:${owner}`,
    } as const;

    if (req.lifetime === 0) {
      // RFC 6886 §3.4: delete; internal port 0 deletes all of this client's mappings for the protocol
      const r =
        req.internalPort === 0
          ? await releaseAll(protocol, owner, owner, base, null)
          : await leases.release({ ...base, internalPort: req.internalPort });
      if (!r.ok) return fail(natPmpCodeFor(r), refusalDetail(r));
      return natResult(
        {
          opcode: req.opcode,
          resultCode: NatPmpResultCode.SUCCESS,
          epoch: deps.epoch(),
          internalPort: req.internalPort,
          externalPort: 0,
          lifetime: 0,
        },
        r.lease ? `deleted lease ${r.lease.id}` : 'nothing to delete',
      );
    }
    if (req.internalPort === 0) return fail(NatPmpResultCode.NOT_AUTHORIZED, 'internal port 0 with a lifetime');
    const r = await leases.request({
      ...base,
      internalPort: req.internalPort,
      externalPort: req.externalPort === 0 ? undefined : req.externalPort,
      allowOtherPort: true,
      lifetime: req.lifetime,
      description: `NAT-PMP ${protocol.toUpperCase()} ${owner}:${req.internalPort}`,
    } as Parameters<LeaseTableApi['request']>[0]);
    if (!r.ok) return fail(natPmpCodeFor(r), refusalDetail(r));
    const up = deps.upstream ? await deps.upstream.chain(r.lease) : null;
    if (up?.kind === 'refused') return fail(natPmpCodeForUpstream(up.reason), up.detail);
    const mapped = up?.kind === 'mapped' ? up : null;
    return natResult(
      {
        opcode: req.opcode,
        resultCode: NatPmpResultCode.SUCCESS,
        epoch: deps.epoch(),
        internalPort: req.internalPort,
        externalPort: mapped ? mapped.externalPort : r.lease.externalPort,
        lifetime: mapped ? Math.min(r.lifetime ?? 0, mapped.lifetime) : (r.lifetime ?? 0),
      },
      `${r.created ? 'granted' : 'renewed'} lease ${r.lease.id}` +
        (mapped ? ` (public port ${mapped.externalPort})` : ''),
    );
  }

  return {
    /** handle one datagram from `source` (the packet's source address) */
    async handle(packet: Uint8Array, source: string): Promise<HandleResult> {
      const src = canonicalAddress(source);
      switch (classifyPacket(packet)) {
        case 'drop':
          return { ...PCP_DROP, detail: packet.length < 2 ? 'shorter than 2 octets' : 'R bit set' };
        case 'natpmp':
          return handleNatPmp(packet, src);
        case 'pcp':
          return handlePcp(packet, src);
      }
    },
    opcodes: opcodes as readonly number[],
  };
}
export type PcpHandler = ReturnType<typeof createPcpHandler>;
