/**
 * Chaining upstream on loopback (src/upstream/): a real PCP front-end and lease table, the upstream manager
 * with its PCP client, and a scripted upstream PCP server on 127.0.0.1 that answers, refuses, stays silent,
 * answers late or resets its epoch. What the LAN client is told (public endpoint, the mapped error code,
 * "try later" within the bound) and what the upstream receives (MAP, renew with the same nonce, delete).
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { afterEach, beforeEach, describe, test } from 'node:test';
import pino from 'pino';
import {
  decodeNatPmpResponse,
  decodePcpRequest,
  decodePcpResponse,
  encodeNatPmpRequest,
  encodePcpResponse,
  NatPmpOpcode,
  NatPmpResultCode,
  Opcode,
  ResultCode,
  type PcpRequest,
} from '../../protocols/pcp/index.js';
import { createPcpClient } from '../../src/upstream/pcp-client.js';
import { createUpstreamManager, type UpstreamManager } from '../../src/upstream/manager.js';
import { mapRequest, startPcp, udpClient, type Harness, type UdpClient } from './pcp-helpers.js';

const PUBLIC = '198.51.100.7';
type Mode = 'ok' | 'not_authorized' | 'cannot_provide' | 'silent' | 'late';

/** a scripted upstream PCP server: records every request, answers per `mode` */
async function fakeUpstream() {
  const sock: Socket = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  const state = {
    mode: 'ok' as Mode,
    epoch: 1000,
    portShift: 1000,
    requests: [] as PcpRequest[],
    lateMs: 1500,
    /** when set, the lifetime every successful MAP is granted (else the one asked) */
    lifetime: null as number | null,
  };
  let closed = false;
  sock.on('message', (m, rinfo) => {
    let req: PcpRequest;
    try {
      req = decodePcpRequest(new Uint8Array(m));
    } catch {
      return;
    }
    state.requests.push(req);
    const reply = (resultCode: number) => {
      const base = { version: 2, opcode: req.opcode, resultCode, epoch: state.epoch, options: [] };
      const res =
        req.opcode === Opcode.MAP
          ? encodePcpResponse({
              ...base,
              lifetime:
                resultCode !== ResultCode.SUCCESS
                  ? 30
                  : req.lifetime > 0 && state.lifetime
                    ? state.lifetime
                    : req.lifetime,
              map: {
                ...req.map,
                externalPort: req.lifetime === 0 ? 0 : req.map.internalPort + state.portShift,
                externalAddress: PUBLIC,
              },
            })
          : encodePcpResponse({ ...base, lifetime: 0 });
      if (!closed) sock.send(res, rinfo.port, rinfo.address);
    };
    if (req.opcode === Opcode.ANNOUNCE) return reply(ResultCode.SUCCESS);
    if (state.mode === 'silent') return;
    if (state.mode === 'late') {
      setTimeout(() => reply(ResultCode.SUCCESS), state.lateMs);
      return;
    }
    reply(
      state.mode === 'not_authorized'
        ? ResultCode.NOT_AUTHORIZED
        : state.mode === 'cannot_provide'
          ? ResultCode.CANNOT_PROVIDE_EXTERNAL
          : ResultCode.SUCCESS,
    );
  });
  return {
    state,
    port: () => sock.address().port,
    maps: () => state.requests.filter((r): r is Extract<PcpRequest, { opcode: 1 }> => r.opcode === Opcode.MAP),
    close: () =>
      new Promise<void>((r) => {
        closed = true;
        sock.close(() => r());
      }),
  };
}

async function waitFor(what: string, ms: number, fn: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

describe('chaining leases upstream over PCP (loopback)', () => {
  let up: Awaited<ReturnType<typeof fakeUpstream>>;
  let h: Harness;
  let manager: UpstreamManager;
  let client: UdpClient;

  beforeEach(async () => {
    up = await fakeUpstream();
    // the manager is built first, the PCP front-end with it; the table comes from the front-end's harness
    let table: Harness['env']['table'] | null = null;
    const lazy = {
      chain: (l: Parameters<UpstreamManager['chain']>[0]) => manager.chain(l),
      recordFor: (id: string) => manager.recordFor(id),
    };
    h = await startPcp({ extra: { upstream: lazy } });
    table = h.env.table;
    manager = createUpstreamManager({
      config: { mode: 'pcp', server: '127.0.0.1', timeout: 400, probeInterval: 1 },
      table,
      connect: () => createPcpClient({ server: '127.0.0.1', port: up.port(), clientAddress: '127.0.0.1' }),
      log: pino({ level: process.env.TEST_LOG ?? 'silent' }),
      metrics: h.env.metrics,
      now: () => h.env.clock.now(),
    });
    await manager.start();
    client = await udpClient();
  });
  afterEach(async () => {
    client.close();
    await manager.close();
    await h.close();
    await up.close();
  });

  test('the client is told the upstream public endpoint; the lease records the upstream mapping', async () => {
    const res = decodePcpResponse(await client.ask(mapRequest({ internalPort: 5000, externalPort: 7000 }), h.port));
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.map?.externalAddress, PUBLIC);
    assert.equal(res.map?.externalPort, 8000, 'the port the upstream gave, not the local 7000');
    const m = up.maps()[0]!;
    assert.equal(m.map.internalPort, 7000, 'upstream forwards to the local lease port');
    assert.equal(m.clientAddress, '127.0.0.1');
    const lease = h.env.table.findByInternal('tcp', '127.0.0.1', 5000)!;
    const rec = h.env.table.upstreamOf(lease.id);
    assert.equal(rec?.state, 'active');
    assert.equal(rec?.externalAddress, PUBLIC);
    assert.equal(rec?.externalPort, 8000);
    assert.equal(rec?.epoch, 1000);
    assert.match(rec?.nonce ?? '', /^[0-9a-f]{24}$/);
    assert.match(
      await h.env.metrics.registry.metrics(),
      /portd_upstream_requests_total\{protocol="pcp",result="success"\} 1/,
    );
  });

  test('a renewal is answered from the record; a release deletes upstream with the same nonce', async () => {
    await client.ask(mapRequest({ internalPort: 5000, externalPort: 7000 }), h.port);
    const again = decodePcpResponse(await client.ask(mapRequest({ internalPort: 5000, externalPort: 7000 }), h.port));
    assert.equal(again.map?.externalPort, 8000);
    assert.equal(up.maps().length, 1, 'no second upstream request for a fresh mapping');
    await client.ask(mapRequest({ internalPort: 5000, externalPort: 7000, lifetime: 0 }), h.port);
    await waitFor('upstream delete', 2000, () => up.maps().length === 2);
    const del = up.maps()[1]!;
    assert.equal(del.lifetime, 0);
    assert.deepEqual(del.map.nonce, up.maps()[0]!.map.nonce);
  });

  for (const [mode, code] of [
    ['not_authorized', ResultCode.NOT_AUTHORIZED],
    ['cannot_provide', ResultCode.CANNOT_PROVIDE_EXTERNAL],
  ] as const) {
    test(`an upstream ${mode} refusal is the client's PCP result ${code}, and the local lease goes`, async () => {
      up.state.mode = mode;
      const res = decodePcpResponse(await client.ask(mapRequest({ internalPort: 5001, externalPort: 7001 }), h.port));
      assert.equal(res.resultCode, code);
      assert.equal(
        h.env.table.findByInternal('tcp', '127.0.0.1', 5001),
        null,
        'no local opening without its public half',
      );
      assert.equal((await h.env.dataplane.list()).length, 0, 'nothing in the (memory) kernel');
    });
  }

  test('a NAT-PMP client hears the upstream port, and an upstream refusal as NAT-PMP NOT_AUTHORIZED', async () => {
    const ok = decodeNatPmpResponse(
      await client.ask(
        encodeNatPmpRequest({ opcode: NatPmpOpcode.MAP_UDP, internalPort: 5002, externalPort: 7002, lifetime: 600 }),
        h.port,
      ),
    );
    assert.equal(ok.resultCode, NatPmpResultCode.SUCCESS);
    assert.equal('externalPort' in ok ? ok.externalPort : -1, 8002);
    up.state.mode = 'not_authorized';
    const no = decodeNatPmpResponse(
      await client.ask(
        encodeNatPmpRequest({ opcode: NatPmpOpcode.MAP_TCP, internalPort: 5003, externalPort: 7003, lifetime: 600 }),
        h.port,
      ),
    );
    assert.equal(no.resultCode, NatPmpResultCode.NOT_AUTHORIZED);
  });

  test('a silent upstream: the client is told to try later within the bound; a late answer chains the lease', async () => {
    up.state.mode = 'late';
    const t0 = Date.now();
    const res = decodePcpResponse(
      await client.ask(mapRequest({ internalPort: 5004, externalPort: 7004 }), h.port, 3000),
    );
    const ms = Date.now() - t0;
    assert.equal(res.resultCode, ResultCode.NO_RESOURCES, 'a short-lifetime error: try again');
    assert.ok(ms < 1000, `answered after ${ms} ms (bound 400 ms)`);
    const lease = h.env.table.findByInternal('tcp', '127.0.0.1', 5004);
    assert.ok(lease, 'the local lease stays while the upstream is asked');
    assert.equal(h.env.table.upstreamOf(lease.id)?.state, 'pending');
    await waitFor('late upstream answer recorded', 4000, () => h.env.table.upstreamOf(lease.id)?.state === 'active');
    // the retry is answered from the record, at once
    up.state.mode = 'silent';
    const retry = decodePcpResponse(await client.ask(mapRequest({ internalPort: 5004, externalPort: 7004 }), h.port));
    assert.equal(retry.resultCode, ResultCode.SUCCESS);
    assert.equal(retry.map?.externalPort, 8004);
  });

  test('the upstream mapping is renewed upstream at half its lifetime, with the same nonce', async () => {
    up.state.lifetime = 4; // the upstream grants 4 s whatever was asked
    const res = decodePcpResponse(await client.ask(mapRequest({ internalPort: 5007, externalPort: 7007 }), h.port));
    assert.equal(res.lifetime, 4, 'the client is told no more than the upstream mapping lives');
    await waitFor('a renewal upstream', 4000, () => up.maps().length >= 2);
    const [first, renew] = up.maps();
    assert.equal(renew!.map.internalPort, 7007);
    assert.ok(renew!.lifetime > 0);
    assert.deepEqual(renew!.map.nonce, first!.map.nonce);
  });

  test('a new WAN address re-creates every mapping from a new client', async () => {
    await client.ask(mapRequest({ internalPort: 5008, externalPort: 7008 }), h.port);
    assert.equal(up.maps().length, 1);
    await manager.wanAddressChanged();
    assert.equal(up.maps().length, 2);
    assert.equal(up.maps()[1]!.map.internalPort, 7008);
  });

  test('a static forward is chained too (no client waits: on its grant event); IPv6 would not be', async () => {
    const r = await h.env.table.request({
      source: 'static',
      identity: 'external',
      protocol: 'udp',
      owner: 'admin',
      internalAddress: '192.168.1.20',
      internalPort: 27015,
      externalPort: 27015,
      allowOtherPort: false,
      lifetime: null,
      thirdPartyAllowed: true,
      actor: 'admin:test',
    });
    assert.ok(r.ok);
    await waitFor('static chained', 3000, () => h.env.table.upstreamOf(r.lease.id)?.state === 'active');
    assert.equal(up.maps()[0]?.map.internalPort, 27015);
    assert.equal(up.maps()[0]?.lifetime, 3600, 'no expiry: an hour upstream, renewed at half');
  });

  test('an upstream epoch going backwards re-creates every mapping (same nonce)', async () => {
    await client.ask(mapRequest({ internalPort: 5005, externalPort: 7005 }), h.port);
    await client.ask(mapRequest({ internalPort: 5006, externalPort: 7006, nonce: 'aaaaaaaaaaaaaaaaaaaaaaaa' }), h.port);
    assert.equal(up.maps().length, 2);
    up.state.epoch = 3; // restarted: the next probe (every 1 s) sees it
    await waitFor('both mappings asked again', 4000, () => up.maps().length >= 4);
    const again = up.maps().slice(2);
    const ports = again.map((m) => m.map.internalPort).sort();
    assert.deepEqual(ports, [7005, 7006]);
    const firstNonce = Buffer.from(up.maps()[0]!.map.nonce).toString('hex');
    assert.ok(
      again.some((m) => Buffer.from(m.map.nonce).toString('hex') === firstNonce),
      'the same nonce',
    );
  });
});
