import type { UpstreamChain, UpstreamRefusal } from '../../leases/upstream.js';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import {
  ServiceType,
  UpnpErrorCode,
  defaultConnectionService,
  encodePortListing,
  type PortListingEntry,
  type SoapValue,
} from '../../../protocols/upnp/index.js';
import type { Config } from '../../config/types.js';
import type { L4Protocol } from '../../common/net-types.js';
import type { LeaseTableApi } from '../../leases/table-api.js';
import type { Lease, Refusal } from '../../leases/types.js';
import type { Endpoint } from './devices.js';
import type { PinholeActionHandler } from './pinhole-actions.js';

export interface WanStats {
  readonly bytesSent: number;
  readonly bytesReceived: number;
  readonly packetsSent: number;
  readonly packetsReceived: number;
}

export interface ActionDeps {
  readonly config: Config;
  readonly leases: LeaseTableApi;
  readonly log: Logger;
  readonly now: () => number;
  /** epoch ms the service started (GetStatusInfo NewUptime) */
  readonly startedAt: number;
  readonly connectionStatus: () => 'Connected' | 'Disconnected';
  readonly wanStats: () => WanStats | Promise<WanStats>;
  readonly linkBitRates: { readonly up: number; readonly down: number };
  /** WANIPv6FirewallControl:1, when the IGD:2 root has it */
  readonly pinholes?: PinholeActionHandler;
  /** the address GetExternalIPAddress reports (dataplane/wan-status.ts; docs/double-nat.md); default the WAN's */
  readonly reportedAddress?: () => string;
  /** behind another NAT: IPv4 grants are chained upstream (src/upstream/) */
  readonly upstream?: UpstreamChain;
}

export interface ActionCall {
  readonly endpoint: Endpoint;
  /** the service version the client speaks (from its action's namespace) */
  readonly version: number;
  readonly action: string;
  readonly args: ReadonlyMap<string, string>;
  /** the HTTP client's address: the owner of what it maps */
  readonly client: string;
}

export type ActionResult =
  | { readonly ok: true; readonly out: readonly (readonly [string, SoapValue])[] }
  | { readonly ok: false; readonly code: UpnpErrorCode; readonly detail: string };

const ok = (out: readonly (readonly [string, SoapValue])[] = []): ActionResult => ({ ok: true, out });
const fail = (code: UpnpErrorCode, detail: string): ActionResult => ({ ok: false, code, detail });

/** a UPnP ui2 port; null when not a decimal number in range */
function parsePort(v: string | undefined): number | null {
  if (v === undefined) return null;
  const t = v.trim();
  if (!/^\d{1,5}$/.test(t)) return null;
  const n = Number(t);
  return n <= 65535 ? n : null;
}

function parseProtocol(v: string | undefined): L4Protocol | null {
  const t = (v ?? '').trim().toUpperCase();
  return t === 'TCP' ? 'tcp' : t === 'UDP' ? 'udp' : null;
}

/** UDA 1.1 §2.5 boolean: 0/1, false/true, no/yes */
function parseBool(v: string | undefined, dflt: boolean): boolean | null {
  const t = (v ?? '').trim().toLowerCase();
  if (t === '') return dflt;
  if (t === '1' || t === 'true' || t === 'yes') return true;
  if (t === '0' || t === 'false' || t === 'no') return false;
  return null;
}

/** NewRemoteHost: '' or '*' is the wildcard (null); otherwise one IPv4 address */
function parseRemoteHost(v: string | undefined): string | null | 'invalid' {
  const t = (v ?? '').trim();
  if (t === '' || t === '*') return null;
  return isIPv4(t) ? t : 'invalid';
}

function parseUi4(v: string | undefined): number | null {
  const t = (v ?? '').trim();
  if (t === '') return 0;
  if (!/^\d{1,10}$/.test(t)) return null;
  const n = Number(t);
  return n <= 0xffffffff ? n : null;
}

const UI4 = 2 ** 32;

/**
 * The IGD actions, translated into lease requests and back. Error choices follow the specs and
 * miniupnpd where the specs leave room; each is listed in docs/upnp.md.
 */
export function createActionHandler(deps: ActionDeps) {
  const { config, leases, log } = deps;
  const secure = config.policy.secureMode;
  const visible = (l: Lease | null): l is Lease =>
    l !== null && l.state === 'active' && l.family !== 6 && (config.upnp.listAllLeases || l.source === 'upnp');
  const listSource = config.upnp.listAllLeases ? undefined : ('upnp' as const);

  const remaining = (l: Lease): number =>
    l.expiresAt === null ? 0 : Math.max(0, Math.ceil((l.expiresAt - deps.now()) / 1000));

  function entryOf(l: Lease): PortListingEntry {
    return {
      remoteHost: l.remoteAddress ?? '',
      externalPort: l.externalPort,
      protocol: l.protocol === 'tcp' ? 'TCP' : 'UDP',
      internalPort: l.internalPort,
      internalClient: l.internalAddress,
      enabled: true,
      description: l.description,
      leaseTime: remaining(l),
    };
  }

  /** the count GENA reports as PortMappingNumberOfEntries */
  function numberOfEntries(): number {
    // from the table's in-memory counts: read on every GENA event
    // WANIPConnection lists IPv4 mappings; pinholes are WANIPv6FirewallControl's, by UniqueID
    return leases.activeCount(listSource, 4);
  }

  /** refusal → UPnP error; v2 = the client speaks WANIPConnection:2 */
  function refusal(r: Refusal, v2: boolean, op: 'add' | 'addAny'): ActionResult {
    switch (r.reason) {
      case 'conflict':
        // the unified table knows who holds the port: a v2 client learns it is PCP, a trigger or a static forward
        return v2 && r.holder.source !== 'upnp'
          ? fail(UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS, `port held by ${r.holder.source}`)
          : fail(UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY, `port held by ${r.holder.source} lease of ${r.holder.owner}`);
      case 'not_authorized':
        return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, r.detail);
      case 'denied':
      case 'reserved':
        // miniupnpd: a port the permission rules refuse is a 718 for AddPortMapping (the client tries another),
        // 606 for AddAnyPortMapping (no other port would do either)
        return op === 'addAny'
          ? fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, r.detail)
          : fail(UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY, r.detail);
      case 'in_use':
        // the gateway itself listens there (miniupnpd's CHECK_PORTINUSE answers 718 too): the client tries another port
        return fail(UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY, r.detail);
      case 'quota':
      case 'capacity':
      case 'no_port':
        return v2 ? fail(UpnpErrorCode.NO_PORT_MAPS_AVAILABLE, r.detail) : fail(UpnpErrorCode.ACTION_FAILED, r.detail);
      case 'invalid':
        return fail(UpnpErrorCode.INVALID_ARGS, r.detail);
      case 'unavailable':
        return fail(UpnpErrorCode.ACTION_FAILED, r.detail);
    }
  }

  /** an upstream refusal → UPnP error (docs/double-nat.md, "Chaining upstream") */
  function upstreamRefusal(r: UpstreamRefusal, v2: boolean, detail: string): ActionResult {
    switch (r) {
      case 'not_authorized':
        return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, detail);
      case 'cannot_provide_external':
        return fail(UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY, detail);
      case 'no_resources':
        return v2 ? fail(UpnpErrorCode.NO_PORT_MAPS_AVAILABLE, detail) : fail(UpnpErrorCode.ACTION_FAILED, detail);
      case 'unavailable':
        return fail(UpnpErrorCode.ACTION_FAILED, detail);
    }
  }

  async function addPortMapping(call: ActionCall, any: boolean): Promise<ActionResult> {
    const a = call.args;
    const v2 = call.version >= 2;
    const remote = parseRemoteHost(a.get('NewRemoteHost'));
    if (remote === 'invalid') return fail(UpnpErrorCode.INVALID_ARGS, 'NewRemoteHost is not an IPv4 address');
    const extText = (a.get('NewExternalPort') ?? '').trim();
    let ext: number | null;
    if (extText === '*') ext = 0;
    else {
      ext = parsePort(extText);
      if (ext === null) return fail(UpnpErrorCode.INVALID_ARGS, 'NewExternalPort is not a port number');
    }
    if (ext === 0 && !any)
      return fail(UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_EXT_PORT, 'NewExternalPort must not be 0');
    const protocol = parseProtocol(a.get('NewProtocol'));
    if (!protocol) return fail(UpnpErrorCode.INVALID_ARGS, 'NewProtocol must be TCP or UDP');
    const intPort = parsePort(a.get('NewInternalPort'));
    if (intPort === null) return fail(UpnpErrorCode.INVALID_ARGS, 'NewInternalPort is not a port number');
    if (intPort === 0)
      return v2
        ? fail(UpnpErrorCode.WILD_CARD_NOT_PERMITTED_IN_INT_PORT, 'NewInternalPort must not be 0')
        : fail(UpnpErrorCode.INVALID_ARGS, 'NewInternalPort must not be 0');
    // an empty NewInternalClient means the caller itself (miniupnpd does the same, miniupnp issue #236)
    const internal = (a.get('NewInternalClient') ?? '').trim() || call.client;
    if (!isIPv4(internal)) return fail(UpnpErrorCode.INVALID_ARGS, 'NewInternalClient is not an IPv4 address');
    if (parseBool(a.get('NewEnabled'), true) === null)
      return fail(UpnpErrorCode.INVALID_ARGS, 'NewEnabled is not a boolean');
    const lifetime = parseUi4(a.get('NewLeaseDuration'));
    if (lifetime === null) return fail(UpnpErrorCode.INVALID_ARGS, 'NewLeaseDuration is not a number');
    // control characters would travel to the admin's terminal and logs: each becomes a space
    const description = (a.get('NewPortMappingDescription') ?? '')
      .slice(0, 256)
      // biome-ignore lint/suspicious/noControlCharactersInRegex: replacing control characters is the point
      .replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ');
    // secure mode: a client may map ports only to itself; the lease table checks it too
    if (secure && internal !== call.client)
      return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, `${call.client} may not map ports to ${internal} (secure mode)`);
    const res = await leases.request({
      source: 'upnp',
      identity: 'external',
      protocol,
      owner: call.client,
      internalAddress: internal,
      internalPort: intPort,
      externalPort: ext,
      allowOtherPort: any,
      remoteAddress: remote,
      remotePrefix: remote === null ? null : 32,
      // 0 = "permanent" (v1) / "as long as possible" (v2): the policy caps it at lifetime.upnp.max, requestedLifetime
      // keeps 0
      lifetime,
      description,
      actor: `upnp:${call.client}`,
    });
    if (!res.ok) return refusal(res, v2, any ? 'addAny' : 'add');
    // behind another NAT: the mapping is also made upstream (src/upstream/); the client's port is the public one
    const up = deps.upstream ? await deps.upstream.chain(res.lease) : null;
    if (up?.kind === 'refused') return upstreamRefusal(up.reason, v2, up.detail);
    if (up?.kind === 'mapped' && !any && up.externalPort !== res.lease.externalPort) {
      // AddPortMapping names its external port: another public one would be a lie (AddAnyPortMapping may say it)
      await leases.revoke(res.lease.id, 'upstream', `the upstream gave port ${up.externalPort}`, { sticky: false });
      return fail(UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY, `the upstream NAT gave port ${up.externalPort}, not ${ext}`);
    }
    // the lease table logs the decision at info (`lease granted`, with actor upnp:<client>); this line adds
    // the UPnP side (action, requested vs granted lifetime) for debugging, like PCP's `request answered`
    log.debug(
      {
        client: call.client,
        action: call.action,
        protocol,
        externalPort: res.lease.externalPort,
        internal: `${internal}:${intPort}`,
        lifetime: res.lifetime,
        requested: lifetime,
        created: res.created,
        leaseId: res.lease.id,
      },
      res.created ? 'upnp mapping granted' : 'upnp mapping renewed',
    );
    return any ? ok([['NewReservedPort', up?.kind === 'mapped' ? up.externalPort : res.lease.externalPort]]) : ok();
  }

  async function releaseOne(call: ActionCall, l: Lease): Promise<ActionResult> {
    const res = await leases.release({
      source: 'upnp',
      identity: 'external',
      protocol: l.protocol,
      owner: call.client,
      externalPort: l.externalPort,
      // without secure mode any LAN client may delete any UPnP mapping (as with miniupnpd); never another mechanism's
      remoteAddress: l.remoteAddress,
      thirdPartyAllowed: !secure && l.source === 'upnp',
      actor: `upnp:${call.client}`,
    });
    if (!res.ok) {
      if (res.reason === 'not_authorized') return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, res.detail);
      if (res.reason === 'conflict')
        return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, `mapping held by ${res.holder.source}`);
      if (res.reason === 'invalid') return fail(UpnpErrorCode.INVALID_ARGS, res.detail);
      return fail(UpnpErrorCode.ACTION_FAILED, res.detail);
    }
    if (res.lease === null) return fail(UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY, 'no such mapping');
    log.debug(
      { client: call.client, protocol: l.protocol, externalPort: l.externalPort, leaseId: l.id },
      'upnp mapping released',
    );
    return ok();
  }

  const mayTouch = (call: ActionCall, l: Lease) =>
    !secure || l.owner === call.client || l.internalAddress === call.client;

  async function deletePortMapping(call: ActionCall): Promise<ActionResult> {
    const a = call.args;
    const remote = parseRemoteHost(a.get('NewRemoteHost'));
    if (remote === 'invalid') return fail(UpnpErrorCode.INVALID_ARGS, 'NewRemoteHost is not an IPv4 address');
    const ext = parsePort(a.get('NewExternalPort'));
    if (ext === null || ext === 0) return fail(UpnpErrorCode.INVALID_ARGS, 'NewExternalPort is not a port number');
    const protoText = (a.get('NewProtocol') ?? '').trim();
    const protocol = parseProtocol(protoText);
    if (protoText !== '' && !protocol) return fail(UpnpErrorCode.INVALID_ARGS, 'NewProtocol must be TCP or UDP');
    // QUIRKS.md: an empty NewProtocol means whichever protocol this client holds on that port
    const protocols: L4Protocol[] = protocol ? [protocol] : ['tcp', 'udp'];
    const found = protocols.map((p) => leases.findByExternal(p, ext, remote)).filter(visible);
    if (found.length === 0) return fail(UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY, `no mapping on external port ${ext}`);
    const mine = found.filter((l) => mayTouch(call, l));
    if (mine.length === 0)
      return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, `mapping on port ${ext} belongs to another client`);
    let last: ActionResult = ok();
    for (const l of mine) {
      const r = await releaseOne(call, l);
      if (!r.ok) last = r;
    }
    return last;
  }

  function getSpecific(call: ActionCall): ActionResult {
    const a = call.args;
    const remote = parseRemoteHost(a.get('NewRemoteHost'));
    if (remote === 'invalid') return fail(UpnpErrorCode.INVALID_ARGS, 'NewRemoteHost is not an IPv4 address');
    const ext = parsePort(a.get('NewExternalPort'));
    if (ext === null || ext === 0) return fail(UpnpErrorCode.INVALID_ARGS, 'NewExternalPort is not a port number');
    const protocol = parseProtocol(a.get('NewProtocol'));
    if (!protocol) return fail(UpnpErrorCode.INVALID_ARGS, 'NewProtocol must be TCP or UDP');
    const l = leases.findByExternal(protocol, ext, remote);
    if (!visible(l)) return fail(UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY, `no mapping on ${protocol} port ${ext}`);
    const e = entryOf(l);
    return ok([
      ['NewInternalPort', e.internalPort],
      ['NewInternalClient', e.internalClient],
      ['NewEnabled', 1],
      ['NewPortMappingDescription', e.description],
      ['NewLeaseDuration', e.leaseTime],
    ]);
  }

  function getGeneric(call: ActionCall): ActionResult {
    const t = (call.args.get('NewPortMappingIndex') ?? '').trim();
    if (!/^\d{1,5}$/.test(t)) return fail(UpnpErrorCode.INVALID_ARGS, 'NewPortMappingIndex is not a number');
    const { leases: page } = leases.list({
      state: 'active',
      family: 4,
      source: listSource,
      sort: 'createdAt',
      order: 'asc',
      offset: Number(t),
      limit: 1,
    });
    const l = page[0];
    if (!l) return fail(UpnpErrorCode.SPECIFIED_ARRAY_INDEX_INVALID, `no entry at index ${t}`);
    const e = entryOf(l);
    return ok([
      ['NewRemoteHost', e.remoteHost],
      ['NewExternalPort', e.externalPort],
      ['NewProtocol', e.protocol],
      ['NewInternalPort', e.internalPort],
      ['NewInternalClient', e.internalClient],
      ['NewEnabled', 1],
      ['NewPortMappingDescription', e.description],
      ['NewLeaseDuration', e.leaseTime],
    ]);
  }

  /** shared by GetListOfPortMappings and DeletePortMappingRange (v2) */
  function inRange(
    call: ActionCall,
  ): { ok: true; protocol: L4Protocol; manage: boolean; list: Lease[] } | ActionResult {
    const a = call.args;
    const start = parsePort(a.get('NewStartPort'));
    const end = parsePort(a.get('NewEndPort'));
    if (start === null || end === null)
      return fail(UpnpErrorCode.INVALID_ARGS, 'NewStartPort/NewEndPort are not port numbers');
    const protocol = parseProtocol(a.get('NewProtocol'));
    if (!protocol) return fail(UpnpErrorCode.INVALID_ARGS, 'NewProtocol must be TCP or UDP');
    const manage = parseBool(a.get('NewManage'), false);
    if (manage === null) return fail(UpnpErrorCode.INVALID_ARGS, 'NewManage is not a boolean');
    if (start > end) return fail(UpnpErrorCode.INCONSISTENT_PARAMETERS, 'NewStartPort is above NewEndPort');
    // from the table's memory (port map, or the client's own leases), in external-port order; no table scan.
    // In secure mode a client's leases all point at itself (owner = internal address), so its own leases
    // are exactly what it may list without NewManage
    const own = !manage && secure;
    const list = leases
      .listExternalRange(protocol, start, end, {
        ...(listSource ? { source: listSource } : {}),
        ...(own ? { owner: call.client } : {}),
      })
      .filter((l) => manage || l.internalAddress === call.client || l.owner === call.client);
    return { ok: true, protocol, manage, list };
  }

  async function handle(call: ActionCall): Promise<ActionResult> {
    const { endpoint } = call;
    const type = endpoint.service.type;
    if (!endpoint.description.actions.some((x) => x.name === call.action)) {
      return fail(UpnpErrorCode.INVALID_ACTION, `${type}:${endpoint.service.version} has no action ${call.action}`);
    }
    if (type === ServiceType.WAN_IP_CONNECTION) {
      switch (call.action) {
        case 'GetExternalIPAddress':
          return ok([['NewExternalIPAddress', deps.reportedAddress?.() ?? leases.externalAddress()]]);
        case 'GetStatusInfo':
          return ok([
            ['NewConnectionStatus', deps.connectionStatus()],
            ['NewLastConnectionError', 'ERROR_NONE'],
            ['NewUptime', Math.max(0, Math.floor((deps.now() - deps.startedAt) / 1000))],
          ]);
        case 'GetConnectionTypeInfo':
          return ok([
            ['NewConnectionType', 'IP_Routed'],
            ['NewPossibleConnectionTypes', 'IP_Routed'],
          ]);
        case 'GetNATRSIPStatus':
          return ok([
            ['NewRSIPAvailable', 0],
            ['NewNATEnabled', 1],
          ]);
        // a LAN device must never change or drop the WAN link
        case 'SetConnectionType':
        case 'RequestConnection':
        case 'RequestTermination':
        case 'ForceTermination':
          log.info({ client: call.client, action: call.action }, 'upnp refused WAN link control');
          return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, `${call.action} is not allowed from the LAN`);
        case 'AddPortMapping':
          return addPortMapping(call, false);
        case 'AddAnyPortMapping':
          return addPortMapping(call, true);
        case 'DeletePortMapping':
          return deletePortMapping(call);
        case 'GetSpecificPortMappingEntry':
          return getSpecific(call);
        case 'GetGenericPortMappingEntry':
          return getGeneric(call);
        case 'GetListOfPortMappings': {
          const r = inRange(call);
          if (!('list' in r)) return r;
          const n = parseUi4(call.args.get('NewNumberOfPorts'));
          if (n === null) return fail(UpnpErrorCode.INVALID_ARGS, 'NewNumberOfPorts is not a number');
          // 0 = as many as the gateway is willing to return
          const entries = r.list.slice(0, n === 0 ? 1000 : Math.min(n, 1000)).map(entryOf);
          if (entries.length === 0) return fail(UpnpErrorCode.PORT_MAPPING_NOT_FOUND, 'no mapping in that range');
          return ok([['NewPortListing', { cdata: encodePortListing(entries) }]]);
        }
        case 'DeletePortMappingRange': {
          const r = inRange(call);
          if (!('list' in r)) return r;
          const targets = r.list.filter((l) => mayTouch(call, l));
          if (r.list.length === 0) return fail(UpnpErrorCode.PORT_MAPPING_NOT_FOUND, 'no mapping in that range');
          if (targets.length === 0)
            return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, 'mappings in that range belong to other clients');
          let failed: ActionResult | null = null;
          for (const l of targets) {
            const x = await releaseOne(call, l);
            if (!x.ok && x.code !== UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY) failed = x;
          }
          return failed ?? ok();
        }
      }
    } else if (type === ServiceType.WAN_COMMON_INTERFACE_CONFIG) {
      switch (call.action) {
        case 'GetCommonLinkProperties':
          return ok([
            ['NewWANAccessType', 'Ethernet'],
            ['NewLayer1UpstreamMaxBitRate', deps.linkBitRates.up],
            ['NewLayer1DownstreamMaxBitRate', deps.linkBitRates.down],
            ['NewPhysicalLinkStatus', deps.connectionStatus() === 'Connected' ? 'Up' : 'Down'],
          ]);
        case 'GetTotalBytesSent':
        case 'GetTotalBytesReceived':
        case 'GetTotalPacketsSent':
        case 'GetTotalPacketsReceived': {
          const s = await deps.wanStats();
          const [name, v] =
            call.action === 'GetTotalBytesSent'
              ? ['NewTotalBytesSent', s.bytesSent]
              : call.action === 'GetTotalBytesReceived'
                ? ['NewTotalBytesReceived', s.bytesReceived]
                : call.action === 'GetTotalPacketsSent'
                  ? ['NewTotalPacketsSent', s.packetsSent]
                  : ['NewTotalPacketsReceived', s.packetsReceived];
          // ui4 counters wrap (WANCommonInterfaceConfig:1 §2.2)
          return ok([[name, Math.floor(v) % UI4]]);
        }
      }
    } else if (type === ServiceType.WAN_IPV6_FIREWALL_CONTROL) {
      if (!deps.pinholes) return fail(UpnpErrorCode.INVALID_ACTION, 'no IPv6 firewall control here');
      return deps.pinholes.handle({ action: call.action, args: call.args, client: call.client });
    } else if (type === ServiceType.LAYER3_FORWARDING) {
      switch (call.action) {
        case 'GetDefaultConnectionService':
          return ok([['NewDefaultConnectionService', defaultConnectionService(endpoint.root)]]);
        case 'SetDefaultConnectionService':
          return fail(UpnpErrorCode.ACTION_NOT_AUTHORIZED, 'the default connection cannot be changed from the LAN');
      }
    }
    return fail(UpnpErrorCode.INVALID_ACTION, `unknown action ${call.action}`);
  }

  return { handle, numberOfEntries };
}
export type ActionHandler = ReturnType<typeof createActionHandler>;
