import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import { encodeScpd, igdTree, serviceDescription, ServiceType } from '../../protocols/upnp/index.js';
import type { LeaseTableApi } from '../../src/leases/table-api.js';
import type { GrantResult, Lease, LeaseRequest, ReleaseRequest, ReleaseResult } from '../../src/leases/types.js';
import {
  createPinholeActionHandler,
  type PinholeCall,
  type PinholeDeps,
  type PinholeResult,
} from '../../src/frontends/upnp/pinhole-actions.js';

const HOST_A = '2001:db8:77::10';
const HOST_A_TEMP = '2001:db8:77::a:1';
const HOST_B = '2001:db8:77::20';

/** a lease table that grants everything and keeps pinholes by their five-tuple */
function fakeTable(refuse?: (r: LeaseRequest) => GrantResult | null) {
  const leases = new Map<string, Lease>();
  const requests: LeaseRequest[] = [];
  const releases: ReleaseRequest[] = [];
  let n = 0;
  const keyOf = (p: string, a: string, port: number, remote: string | null | undefined) =>
    `${p}/[${a}]:${port}/${remote ?? '*'}`;
  const api = {
    async request(r: LeaseRequest): Promise<GrantResult> {
      requests.push(r);
      const refused = refuse?.(r);
      if (refused) return refused;
      const key = keyOf(r.protocol, r.internalAddress, r.internalPort, r.remoteAddress);
      const old = leases.get(key);
      const lease: Lease = {
        id: old?.id ?? `l${++n}`,
        family: 6,
        source: 'upnp',
        protocol: r.protocol,
        externalAddress: r.internalAddress,
        externalPort: r.internalPort,
        externalPortEnd: r.internalPort,
        internalAddress: r.internalAddress,
        internalPort: r.internalPort,
        remoteAddress: r.remoteAddress ?? null,
        remotePrefix: r.remotePrefix ?? null,
        remotePort: r.remotePort ?? null,
        owner: old?.owner ?? r.owner,
        description: r.description ?? '',
        nonce: null,
        createdAt: 0,
        updatedAt: 0,
        expiresAt: (r.lifetime ?? 0) * 1000,
        requestedLifetime: r.lifetime,
        readOnly: false,
        rule: null,
        state: 'active',
        endedAt: null,
        endReason: null,
        renewCount: old ? old.renewCount + 1 : 0,
        lastRenewedAt: null,
      };
      leases.set(key, lease);
      return { ok: true, lease, created: !old, lifetime: r.lifetime };
    },
    async release(r: ReleaseRequest): Promise<ReleaseResult> {
      releases.push(r);
      for (const [k, l] of leases)
        if (l.protocol === r.protocol && l.internalAddress === r.internalAddress && l.internalPort === r.internalPort) {
          leases.delete(k);
          return { ok: true, lease: { ...l, state: 'ended' } };
        }
      return { ok: true, lease: null };
    },
  } as Partial<LeaseTableApi> as LeaseTableApi;
  return { api, leases, requests, releases };
}

function setup(opts: Partial<PinholeDeps> & { refuse?: (r: LeaseRequest) => GrantResult | null } = {}) {
  const t = fakeTable(opts.refuse);
  const ids = new Map<string, number>();
  const packets = new Map<string, number>();
  let status = { firewallEnabled: true, inboundPinholeAllowed: true };
  const h = createPinholeActionHandler({
    leases: t.api,
    log: pino({ level: 'silent' }),
    secureMode: true,
    directory: {
      idOf: (l) => {
        if (!ids.has(l.id)) ids.set(l.id, ids.size + 1);
        return ids.get(l.id)!;
      },
      leaseOf: (id) => {
        for (const [lid, v] of ids) if (v === id) return [...t.leases.values()].find((l) => l.id === lid) ?? null;
        return null;
      },
    },
    status: () => status,
    packets: async (l) => packets.get(l.id) ?? 0,
    outboundTimeout: (p) => (p === 'udp' ? 120 : 432000),
    sameHost: (a, b) => new Set([HOST_A, HOST_A_TEMP]).has(a) && new Set([HOST_A, HOST_A_TEMP]).has(b),
    ...opts,
  });
  const call = (action: string, args: Record<string, string>, client = HOST_A): Promise<PinholeResult> =>
    h.handle({ action, args: new Map(Object.entries(args)), client } satisfies PinholeCall);
  return {
    ...t,
    h,
    call,
    packets,
    setStatus: (s: typeof status) => {
      status = s;
    },
  };
}

const add = (over: Record<string, string> = {}) => ({
  RemoteHost: '',
  RemotePort: '0',
  InternalClient: HOST_A,
  InternalPort: '27015',
  Protocol: '17',
  LeaseTime: '3600',
  ...over,
});
const code = (r: PinholeResult) => (r.ok ? 'ok' : r.code);
const out = (r: PinholeResult, name: string) => (r.ok ? r.out.find(([k]) => k === name)?.[1] : undefined);

describe('UPnP WANIPv6FirewallControl:1 actions (src/frontends/upnp/pinhole-actions.ts)', () => {
  it('AddPinhole asks the table for a family-6 lease without translation and returns a UniqueID', async () => {
    const s = setup();
    const r = await s.call('AddPinhole', add({ RemoteHost: '2001:DB8:113::0002', RemotePort: '5000' }));
    assert.equal(code(r), 'ok');
    assert.equal(out(r, 'UniqueID'), 1);
    const req = s.requests[0]!;
    assert.equal(req.family, 6);
    assert.equal(req.protocol, 'udp');
    assert.equal(req.internalAddress, HOST_A);
    assert.equal(req.externalPort, 27015, 'external port = internal port');
    assert.equal(req.remoteAddress, '2001:db8:113::2', 'canonical text');
    assert.equal(req.remotePrefix, 128);
    assert.equal(req.remotePort, 5000);
    assert.equal(req.lifetime, 3600);
    assert.equal(req.owner, HOST_A);
  });

  it('AddPinhole for an existing five-tuple extends it and returns the same UniqueID (§2.4.3)', async () => {
    const s = setup();
    const a = await s.call('AddPinhole', add());
    const b = await s.call('AddPinhole', add({ LeaseTime: '7200' }));
    assert.equal(out(a, 'UniqueID'), out(b, 'UniqueID'));
    assert.equal(s.leases.size, 1);
    const c = await s.call('AddPinhole', add({ InternalPort: '27016' }));
    assert.notEqual(out(c, 'UniqueID'), out(a, 'UniqueID'));
  });

  it('answers the template errors for each bad argument', async () => {
    const s = setup();
    const cases: [Record<string, string>, number][] = [
      [{ InternalClient: '' }, 708],
      [{ InternalClient: '*' }, 708],
      [{ InternalClient: 'empty' }, 708],
      [{ InternalClient: 'fe80::10' }, 402], // link-local: never reachable from the WAN
      [{ InternalClient: 'ff02::1' }, 402],
      [{ InternalClient: '192.168.77.10' }, 402],
      [{ InternalClient: 'host.lan' }, 402],
      [{ InternalPort: '0' }, 706],
      [{ InternalPort: '65536' }, 402],
      [{ InternalPort: 'x' }, 402],
      [{ Protocol: '65535' }, 707],
      [{ Protocol: '1' }, 705],
      [{ Protocol: '132' }, 705],
      [{ Protocol: 'ICMP' }, 402],
      [{ RemoteHost: 'example.com' }, 402], // never resolved: no DNS query on a LAN client's behalf
      [{ RemoteHost: '203.0.113.5' }, 402],
      [{ RemotePort: '-1' }, 402],
      [{ LeaseTime: '0' }, 402],
      [{ LeaseTime: '86401' }, 402],
      [{ LeaseTime: '' }, 402],
    ];
    for (const [over, want] of cases)
      assert.equal(code(await s.call('AddPinhole', add(over))), want, JSON.stringify(over));
    assert.equal(s.requests.length, 0, 'nothing reached the table');
    // the bounds themselves are fine; `*` is any remote host
    assert.equal(code(await s.call('AddPinhole', add({ LeaseTime: '86400', RemoteHost: '*' }))), 'ok');
    assert.equal(code(await s.call('AddPinhole', add({ LeaseTime: '1', InternalPort: '1' }))), 'ok');
  });

  it('the table refusals become the template errors', async () => {
    const refusals: [GrantResult, number][] = [
      [{ ok: false, reason: 'not_authorized', detail: 'secure mode' }, 606],
      [{ ok: false, reason: 'quota', detail: 'per-host limit' }, 701],
      [{ ok: false, reason: 'capacity', detail: 'global limit' }, 701],
      [{ ok: false, reason: 'denied', detail: 'rule' }, 606],
      [{ ok: false, reason: 'unavailable', detail: 'database' }, 501],
    ];
    for (const [res, want] of refusals) {
      const s = setup({ refuse: () => res });
      assert.equal(code(await s.call('AddPinhole', add())), want, res.ok ? '' : res.reason);
    }
  });

  it('firewall off → 702 for every action but GetFirewallStatus; inbound off → 703 for add and update', async () => {
    const s = setup();
    const id = String(out(await s.call('AddPinhole', add()), 'UniqueID'));
    s.setStatus({ firewallEnabled: true, inboundPinholeAllowed: false });
    assert.equal(code(await s.call('AddPinhole', add({ InternalPort: '9' }))), 703);
    assert.equal(code(await s.call('UpdatePinhole', { UniqueID: id, NewLeaseTime: '60' })), 703);
    assert.equal(code(await s.call('DeletePinhole', { UniqueID: id })), 'ok', 'closing is still allowed');
    s.setStatus({ firewallEnabled: false, inboundPinholeAllowed: false });
    for (const a of ['AddPinhole', 'UpdatePinhole', 'DeletePinhole', 'GetPinholePackets', 'CheckPinholeWorking'])
      assert.equal(code(await s.call(a, { ...add(), UniqueID: id, NewLeaseTime: '60' })), 702, a);
    const st = await s.call('GetFirewallStatus', {});
    assert.equal(out(st, 'FirewallEnabled'), 0);
    assert.equal(out(st, 'InboundPinholeAllowed'), 0);
    assert.deepEqual(s.h.eventVars(), [
      ['FirewallEnabled', 0],
      ['InboundPinholeAllowed', 0],
    ]);
  });

  it('UpdatePinhole, DeletePinhole, GetPinholePackets and CheckPinholeWorking by UniqueID', async () => {
    const s = setup();
    const id = String(out(await s.call('AddPinhole', add()), 'UniqueID'));
    assert.equal(code(await s.call('UpdatePinhole', { UniqueID: id, NewLeaseTime: '600' })), 'ok');
    assert.equal(s.requests.at(-1)!.lifetime, 600);
    assert.equal(code(await s.call('UpdatePinhole', { UniqueID: id, NewLeaseTime: '0' })), 402);
    assert.equal(code(await s.call('UpdatePinhole', { UniqueID: '999', NewLeaseTime: '60' })), 704);
    assert.equal(code(await s.call('UpdatePinhole', { UniqueID: 'abc', NewLeaseTime: '60' })), 402);
    // no packet yet: 709; then the kernel counted some
    assert.equal(code(await s.call('CheckPinholeWorking', { UniqueID: id })), 709);
    assert.equal(out(await s.call('GetPinholePackets', { UniqueID: id }), 'PinholePackets'), 0);
    s.packets.set([...s.leases.values()][0]!.id, 2 ** 32 + 5);
    assert.equal(out(await s.call('CheckPinholeWorking', { UniqueID: id }), 'IsWorking'), 1);
    assert.equal(out(await s.call('GetPinholePackets', { UniqueID: id }), 'PinholePackets'), 5, 'ui4 wraps');
    assert.equal(code(await s.call('DeletePinhole', { UniqueID: id })), 'ok');
    assert.equal(s.leases.size, 0);
    assert.equal(code(await s.call('DeletePinhole', { UniqueID: id })), 704);
    assert.equal(code(await s.call('GetPinholePackets', { UniqueID: id })), 704);
  });

  it('secure mode: another host cannot update, delete or read a pinhole; the same host under another address can', async () => {
    const s = setup();
    const id = String(out(await s.call('AddPinhole', add()), 'UniqueID'));
    for (const a of ['UpdatePinhole', 'DeletePinhole', 'GetPinholePackets', 'CheckPinholeWorking'])
      assert.equal(code(await s.call(a, { UniqueID: id, NewLeaseTime: '60' }, HOST_B)), 606, a);
    assert.equal(s.leases.size, 1);
    // a privacy (temporary) address of host A: the policy's sameHost says it is A's
    assert.equal(code(await s.call('UpdatePinhole', { UniqueID: id, NewLeaseTime: '60' }, HOST_A_TEMP)), 'ok');
    assert.equal(s.requests.at(-1)!.owner, HOST_A, 'renewed under its owner');
    assert.equal(code(await s.call('DeletePinhole', { UniqueID: id }, HOST_A_TEMP)), 'ok');
    // without secure mode any LAN host may, as for IPv4 mappings
    const open = setup({ secureMode: false });
    const id2 = String(out(await open.call('AddPinhole', add()), 'UniqueID'));
    assert.equal(code(await open.call('DeletePinhole', { UniqueID: id2 }, HOST_B)), 'ok');
  });

  it('GetOutboundPinholeTimeout checks the tuple and answers the conntrack timeout of the protocol', async () => {
    const s = setup();
    const r = await s.call('GetOutboundPinholeTimeout', add({ Protocol: '6' }));
    assert.equal(out(r, 'OutboundPinholeTimeout'), 432000);
    assert.equal(out(await s.call('GetOutboundPinholeTimeout', add()), 'OutboundPinholeTimeout'), 120);
    // miniupnpc sends its word for the wildcard as it is here (upnpc -G empty …)
    const mini = await s.call('GetOutboundPinholeTimeout', add({ RemoteHost: 'empty' }));
    assert.equal(out(mini, 'OutboundPinholeTimeout'), 120);
    assert.equal(code(await s.call('GetOutboundPinholeTimeout', add({ Protocol: '50' }))), 705);
    assert.equal(code(await s.call('NoSuchAction', {})), 401);
  });

  it('the IGD:2 tree carries the service with its SCPD; IGD:1 never does', () => {
    const uuids = { igd: 'a', wanDevice: 'b', wanConnectionDevice: 'c' };
    const services = (g: 1 | 2, on: boolean) =>
      igdTree(g, uuids, `/igd${g}`, 'x', { ipv6Firewall: on }).devices[0]!.devices[0]!.services.map((sv) => sv.type);
    assert.deepEqual(services(2, true), [ServiceType.WAN_IP_CONNECTION, ServiceType.WAN_IPV6_FIREWALL_CONTROL]);
    assert.deepEqual(services(2, false), [ServiceType.WAN_IP_CONNECTION]);
    assert.deepEqual(services(1, true), [ServiceType.WAN_IP_CONNECTION]);
    const xml = encodeScpd(serviceDescription(ServiceType.WAN_IPV6_FIREWALL_CONTROL, 1));
    for (const a of [
      'GetFirewallStatus',
      'GetOutboundPinholeTimeout',
      'AddPinhole',
      'UpdatePinhole',
      'DeletePinhole',
      'GetPinholePackets',
      'CheckPinholeWorking',
    ])
      assert.match(xml, new RegExp(`<name>${a}</name>`));
    assert.match(xml, /<stateVariable sendEvents="yes"><name>FirewallEnabled<\/name><dataType>boolean/);
    assert.match(xml, /<name>A_ARG_TYPE_LeaseTime<\/name>.*?<minimum>1<\/minimum><maximum>86400<\/maximum>/);
  });
});
