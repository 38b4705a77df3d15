/**
 * On the wire (UPnP SOAP, PCP and NAT-PMP packets, the admin API, all on loopback, one real lease
 * table): admin-defined openings replace dynamic leases and stay theirs; the gateway's own listening
 * ports (a fake checker here; the real one is test/unit/local-ports.test.ts and test/lab/own-ports.test.ts)
 * and trigger ports are not handed to dynamic clients.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pino from 'pino';
import { createAdminServer, type AdminServer } from '../../src/admin/index.js';
import { validateConfig } from '../../src/config/index.js';
import type { Config } from '../../src/config/types.js';
import { createPcpServer } from '../../src/frontends/pcp/index.js';
import { createUpnpServer, generateUuids, type UpnpServer } from '../../src/frontends/upnp/index.js';
import type { Lease } from '../../src/leases/types.js';
import {
  decodeNatPmpResponse,
  decodePcpResponse,
  encodeNatPmpRequest,
  NatPmpResultCode,
  ResultCode,
} from '../../protocols/pcp/index.js';
import { makeTable, testPolicy } from '../helpers/leases.js';
import { mapRequest, NONCE_A, udpClient, type UdpClient } from './pcp-helpers.js';
import { errorCodeOf, field, IPC1, IPC2, soap } from './upnp-helpers.js';

const TOKEN = 'precedence-test-token-0123';
const log = pino({ level: process.env.TEST_LOG ?? 'silent' });
const lines: { level: number; msg: string; externalPort?: number }[] = [];
const tableLog = pino(
  { level: 'warn' },
  {
    write(s: string) {
      lines.push(JSON.parse(s) as (typeof lines)[number]);
    },
  },
);
// the gateway's own services: an SSH on 2222/tcp and a WireGuard on 51820/udp
const OWN = new Set(['tcp/2222', 'tcp/2223', 'udp/51820']);
// a trigger rule opening tcp 6113-6119
const triggerPort = (protocol: 'tcp' | 'udp', port: number) =>
  protocol === 'tcp' && port >= 6113 && port <= 6119 ? 'game' : null;

describe("precedence and the gateway's own ports on the wire", () => {
  let env: ReturnType<typeof makeTable>;
  let upnp: UpnpServer;
  let pcp: ReturnType<typeof createPcpServer>;
  let admin: AdminServer;
  let c: UdpClient;
  let pcpPort = 0;
  let ctl1 = '',
    ctl2 = '';

  before(async () => {
    const policy = testPolicy({ checkPortInUse: true });
    env = makeTable({ policy, portInUse: (p, port) => OWN.has(`${p}/${port}`), triggerPort, log: tableLog });
    const base = validateConfig({ upnp: { httpPort: 0, ssdp: false } }, 'test');
    const config: Config = { ...base, policy, pcp: { ...base.pcp, port: 0, rateLimit: 0 } };
    upnp = createUpnpServer({
      config,
      leases: env.table,
      log,
      metrics: env.metrics,
      clock: env.clock,
      uuids: generateUuids(),
      listen: { addresses: ['127.0.0.1/8'], httpPort: 0 },
      isLanClient: (a) => a.startsWith('127.'),
      presentationUrl: null,
    });
    await upnp.listen();
    const d = upnp.descriptionUrls()[0]!;
    const b = d.v1.replace(/\/igd1\/desc\.xml$/, '');
    ctl1 = `${b}/igd1/ctl/IPConn`;
    ctl2 = `${b}/igd2/ctl/IPConn`;
    pcp = createPcpServer({
      config,
      leases: env.table,
      log,
      metrics: env.metrics,
      clock: env.clock,
      listen: ['127.0.0.1'],
      conntrack: null,
      announce: null,
    });
    await pcp.start();
    pcpPort = pcp.addresses()[0]!.port;
    admin = createAdminServer({
      config: { admin: { listen: '127.0.0.1:0', token: null, tokenFile: null }, policy },
      leases: env.table,
      metrics: env.metrics,
      log,
      status: () => ({
        version: 't',
        startedAt: 0,
        pcpEpoch: 0,
        dataplane: { driver: 'memory', ...env.dataplane.health() },
        frontends: [],
        upnpDescriptionUrls: [],
      }),
      token: { value: TOKEN, name: 'ops' },
      readyz: async () => ({ ok: true }),
      clock: env.clock,
      requireAuth: true,
    });
    c = await udpClient();
  });
  after(async () => {
    c?.close();
    await admin?.app.close();
    await pcp?.close();
    await upnp?.close();
    await env?.dispose();
  });

  const add = (url: string, urn: string, port: number, proto = 'TCP', intPort = port, action = 'AddPortMapping') =>
    soap(url, urn, action, {
      NewRemoteHost: '',
      NewExternalPort: port,
      NewProtocol: proto,
      NewInternalPort: intPort,
      NewInternalClient: '127.0.0.1',
      NewEnabled: 1,
      NewPortMappingDescription: 'test',
      NewLeaseDuration: 3600,
    });
  const postStatic = (body: Record<string, unknown>) =>
    admin.app.inject({
      method: 'POST',
      url: '/api/v1/leases',
      headers: { authorization: `Bearer ${TOKEN}`, host: '127.0.0.1' },
      payload: body,
    });

  test("UPnP AddPortMapping on the gateway's own port → 718; AddAnyPortMapping gets another port", async () => {
    const r = await add(ctl1, IPC1, 2222);
    assert.equal(errorCodeOf(r.body), 718, r.body);
    assert.equal(env.table.findByExternal('tcp', 2222), null);
    const any = await add(ctl2, IPC2, 2222, 'TCP', 2222, 'AddAnyPortMapping');
    assert.equal(any.status, 200, any.body);
    const got = Number(field(any.body, 'NewReservedPort'));
    assert.ok(got > 0 && got !== 2222, any.body);
  });

  test("UPnP AddPortMapping on a trigger's port (nobody holds the trigger) → 718, 729 on v2", async () => {
    assert.equal(errorCodeOf((await add(ctl1, IPC1, 6115)).body), 718);
    assert.equal(errorCodeOf((await add(ctl2, IPC2, 6116)).body), 729);
    assert.equal(env.table.findByExternal('tcp', 6115), null);
  });

  test("PCP MAP for the gateway's own port → another port; with PREFER_FAILURE → CANNOT_PROVIDE_EXTERNAL", async () => {
    const r = decodePcpResponse(
      await c.ask(mapRequest({ protocol: 17, internalPort: 51820, externalPort: 51820 }), pcpPort),
    );
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.ok(r.map && r.map.externalPort !== 51820, JSON.stringify(r));
    const pf = decodePcpResponse(
      await c.ask(
        mapRequest({
          nonce: 'bb'.repeat(12),
          protocol: 17,
          internalPort: 51821,
          externalPort: 51820,
          options: [{ kind: 'prefer_failure' }],
        }),
        pcpPort,
      ),
    );
    assert.equal(pf.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL);
    // a trigger port likewise
    const t = decodePcpResponse(
      await c.ask(mapRequest({ nonce: 'cc'.repeat(12), protocol: 6, internalPort: 6113, externalPort: 6113 }), pcpPort),
    );
    assert.equal(t.resultCode, ResultCode.SUCCESS);
    assert.ok(t.map && (t.map.externalPort < 6113 || t.map.externalPort > 6119), JSON.stringify(t));
  });

  test("NAT-PMP for the gateway's own port → another port", async () => {
    const r = decodeNatPmpResponse(
      await c.ask(encodeNatPmpRequest({ opcode: 2, internalPort: 2223, externalPort: 2223, lifetime: 3600 }), pcpPort),
    );
    assert.equal(r.resultCode, NatPmpResultCode.SUCCESS);
    assert.ok('externalPort' in r && r.externalPort !== 2223 && r.externalPort > 0, JSON.stringify(r));
  });

  test('admin POST static on a UPnP-held port → 201, the UPnP lease ended as replaced; its renewal → 718 (729 on v2)', async () => {
    assert.equal((await add(ctl1, IPC1, 8080)).status, 200);
    const held = env.table.findByExternal('tcp', 8080)!;
    assert.equal(held.source, 'upnp');
    const r = await postStatic({
      protocol: 'tcp',
      externalPort: 8080,
      internalAddress: '192.168.77.20',
      internalPort: 80,
      description: 'web',
    });
    assert.equal(r.statusCode, 201, r.body);
    const { lease } = r.json() as { lease: Lease };
    const old = await admin.app.inject({
      url: `/api/v1/leases/${held.id}`,
      headers: { authorization: `Bearer ${TOKEN}`, host: '127.0.0.1' },
    });
    assert.equal(old.statusCode, 200);
    const body = old.json() as { lease: Lease; history: { type: string; reason: string | null }[] };
    assert.equal(body.lease.state, 'ended');
    assert.equal(body.lease.endReason, 'replaced');
    assert.deepEqual(
      body.history.map((h) => h.type),
      ['granted', 'replaced'],
    );
    assert.match(body.history[1]!.reason ?? '', new RegExp(`replaced by static lease ${lease.id}`));
    assert.deepEqual(
      [...env.dataplane.entries.values()].filter((e) => e.externalPort === 8080).map((e) => e.internalAddress),
      ['192.168.77.20'],
    );
    const again = await add(ctl1, IPC1, 8080);
    assert.equal(errorCodeOf(again.body), 718, again.body);
    assert.equal(errorCodeOf((await add(ctl2, IPC2, 8080)).body), 729);
    assert.equal(env.table.findByExternal('tcp', 8080)!.id, lease.id);
  });

  test("PCP: a replaced mapping's renewal gets another port; with PREFER_FAILURE CANNOT_PROVIDE_EXTERNAL", async () => {
    const m = decodePcpResponse(
      await c.ask(mapRequest({ nonce: NONCE_A, protocol: 17, internalPort: 9300, externalPort: 9300 }), pcpPort),
    );
    assert.equal(m.map?.externalPort, 9300);
    const r = await postStatic({
      protocol: 'udp',
      externalPort: 9300,
      internalAddress: '192.168.77.20',
      internalPort: 9300,
    });
    assert.equal(r.statusCode, 201, r.body);
    const pf = decodePcpResponse(
      await c.ask(
        mapRequest({
          nonce: NONCE_A,
          protocol: 17,
          internalPort: 9300,
          externalPort: 9300,
          options: [{ kind: 'prefer_failure' }],
        }),
        pcpPort,
      ),
    );
    assert.equal(pf.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL);
    const again = decodePcpResponse(
      await c.ask(mapRequest({ nonce: NONCE_A, protocol: 17, internalPort: 9300, externalPort: 9300 }), pcpPort),
    );
    assert.equal(again.resultCode, ResultCode.SUCCESS);
    assert.ok(again.map && again.map.externalPort !== 9300, JSON.stringify(again));
  });

  test("NAT-PMP: a replaced mapping's renewal gets another port, also once the forward is revoked", async () => {
    const m = decodeNatPmpResponse(
      await c.ask(encodeNatPmpRequest({ opcode: 1, internalPort: 9400, externalPort: 9400, lifetime: 3600 }), pcpPort),
    );
    assert.ok('externalPort' in m && m.externalPort === 9400);
    const r = await postStatic({
      protocol: 'udp',
      externalPort: 9400,
      internalAddress: '192.168.77.20',
      internalPort: 9400,
    });
    assert.equal(r.statusCode, 201, r.body);
    const id = (r.json() as { lease: Lease }).lease.id;
    const del = await admin.app.inject({
      method: 'DELETE',
      url: `/api/v1/leases/${id}`,
      headers: { authorization: `Bearer ${TOKEN}`, host: '127.0.0.1' },
    });
    assert.equal(del.statusCode, 200, del.body);
    const again = decodeNatPmpResponse(
      await c.ask(encodeNatPmpRequest({ opcode: 1, internalPort: 9400, externalPort: 9400, lifetime: 3600 }), pcpPort),
    );
    assert.equal(again.resultCode, NatPmpResultCode.SUCCESS);
    assert.ok('externalPort' in again && again.externalPort !== 9400, JSON.stringify(again));
  });

  test("admin POST static onto the gateway's own port → 201, with a warn line", async () => {
    const r = await postStatic({
      protocol: 'tcp',
      externalPort: 2222,
      internalAddress: '192.168.77.20',
      internalPort: 22,
    });
    assert.equal(r.statusCode, 201, r.body);
    const warn = lines.find((l) => l.level === 40 && l.externalPort === 2222);
    assert.ok(warn, JSON.stringify(lines));
    assert.match(warn.msg, /the gateway itself listens on this external port/);
  });
});
