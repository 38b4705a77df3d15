/**
 * RFC 6887 rules over real UDP on loopback, through the real lease table (memory dataplane).
 * Each test names the rule it checks; every assertion looks at response bytes, lease rows or
 * dataplane entries.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodePcpResponse,
  encodePcpRequest,
  nonceFromHex,
  nonceHex,
  ResultCode,
  Opcode,
} from '../../protocols/pcp/index.js';
import {
  EXTERNAL,
  mapRequest,
  NONCE_A,
  NONCE_B,
  startPcp,
  udpClient,
  type Harness,
  type UdpClient,
} from './pcp-helpers.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('PCP MAP through the lease table', () => {
  let h: Harness;
  let c: UdpClient;
  before(async () => {
    h = await startPcp({
      policy: {
        lifetime: {
          pcp: { min: 120, max: 86400 },
          natpmp: { min: 120, max: 86400 },
          upnp: { min: 1, max: 604800 },
          trigger: { min: 1, max: 86400 },
        },
      },
    });
    c = await udpClient();
  });
  after(async () => {
    c.close();
    await h.close();
  });

  test('create: success, assigned port on our external address, lease row and kernel entry', async () => {
    const r = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 5000, externalPort: 5000, lifetime: 3600 }), h.port),
    );
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.equal(r.opcode, Opcode.MAP);
    assert.equal(r.lifetime, 3600);
    assert.equal(r.map?.externalPort, 5000);
    assert.equal(r.map?.externalAddress, EXTERNAL);
    assert.equal(nonceHex(r.map!.nonce), NONCE_A, 'nonce copied');
    const lease = h.env.table.findByInternal('tcp', '127.0.0.1', 5000);
    assert.ok(lease);
    assert.equal(lease.source, 'pcp');
    assert.equal(lease.owner, '127.0.0.1');
    assert.equal(lease.nonce, NONCE_A);
    assert.ok(
      [...h.env.dataplane.entries.values()].some(
        (e) => e.externalPort === 5000 && e.internalPort === 5000 && e.protocol === 'tcp',
      ),
    );
  });

  test('lifetime is clamped to policy.lifetime.pcp and the granted value reported', async () => {
    const short = decodePcpResponse(await c.ask(mapRequest({ internalPort: 5001, lifetime: 10 }), h.port));
    assert.equal(short.lifetime, 120);
    const long = decodePcpResponse(await c.ask(mapRequest({ internalPort: 5002, lifetime: 3_600_000 }), h.port));
    assert.equal(long.lifetime, 86400);
  });

  test('same internal endpoint + same nonce renews the same lease (another suggestion does not matter)', async () => {
    const before = h.env.table.findByInternal('tcp', '127.0.0.1', 5000)!;
    const r = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 5000, externalPort: 0, lifetime: 7200 }), h.port),
    );
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.equal(r.map?.externalPort, 5000);
    assert.equal(r.lifetime, 7200);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 5000)!.id, before.id);
  });

  test('different nonce for an existing mapping → NOT_AUTHORIZED, mapping stays', async () => {
    const r = decodePcpResponse(await c.ask(mapRequest({ internalPort: 5000, nonce: NONCE_B }), h.port));
    assert.equal(r.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(r.lifetime, 1800, 'long lifetime error');
    const del = decodePcpResponse(await c.ask(mapRequest({ internalPort: 5000, nonce: NONCE_B, lifetime: 0 }), h.port));
    assert.equal(del.resultCode, ResultCode.NOT_AUTHORIZED, 'a restarted client cannot delete with a new nonce');
    assert.ok(h.env.table.findByInternal('tcp', '127.0.0.1', 5000));
  });

  test('lifetime 0 with the nonce deletes; deleting again (nothing there) succeeds', async () => {
    const r = decodePcpResponse(await c.ask(mapRequest({ internalPort: 5000, lifetime: 0 }), h.port));
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.equal(r.lifetime, 0);
    assert.equal(r.map?.externalPort, 5000);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 5000), null);
    assert.ok(![...h.env.dataplane.entries.values()].some((e) => e.externalPort === 5000 && e.protocol === 'tcp'));
    const again = decodePcpResponse(await c.ask(mapRequest({ internalPort: 5000, lifetime: 0 }), h.port));
    assert.equal(again.resultCode, ResultCode.SUCCESS);
  });

  test('suggested port taken → another port; with PREFER_FAILURE → CANNOT_PROVIDE_EXTERNAL', async () => {
    const upnp = await h.env.table.request({
      source: 'upnp',
      identity: 'external',
      protocol: 'udp',
      owner: '127.0.0.9',
      internalAddress: '127.0.0.9',
      internalPort: 7000,
      externalPort: 7000,
      allowOtherPort: false,
      lifetime: 3600,
    });
    assert.ok(upnp.ok);
    const r = decodePcpResponse(
      await c.ask(mapRequest({ protocol: 17, internalPort: 7000, externalPort: 7000 }), h.port),
    );
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.notEqual(r.map?.externalPort, 7000);
    const pf = decodePcpResponse(
      await c.ask(
        mapRequest({ protocol: 17, internalPort: 7001, externalPort: 7000, options: [{ kind: 'prefer_failure' }] }),
        h.port,
      ),
    );
    assert.equal(pf.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL);
    assert.equal(pf.lifetime, 30, 'short lifetime error');
    assert.deepEqual(pf.options, [{ kind: 'prefer_failure' }], 'processed option echoed');
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 7001), null);
  });

  test('PREFER_FAILURE with a suggested external address that is not ours → CANNOT_PROVIDE_EXTERNAL', async () => {
    const r = decodePcpResponse(
      await c.ask(
        mapRequest({
          internalPort: 7100,
          externalPort: 7100,
          externalAddress: '198.51.100.7',
          options: [{ kind: 'prefer_failure' }],
        }),
        h.port,
      ),
    );
    assert.equal(r.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL);
    const ok = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 7100, externalPort: 7100, externalAddress: '198.51.100.7' }), h.port),
    );
    assert.equal(ok.resultCode, ResultCode.SUCCESS);
    assert.equal(ok.map?.externalAddress, EXTERNAL, 'without PREFER_FAILURE the suggestion is only a hint');
  });

  test('reserved port with PREFER_FAILURE → CANNOT_PROVIDE_EXTERNAL; without it another port', async () => {
    const pf = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 22, externalPort: 22, options: [{ kind: 'prefer_failure' }] }), h.port),
    );
    assert.equal(pf.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL);
    const any = decodePcpResponse(await c.ask(mapRequest({ internalPort: 22, externalPort: 22 }), h.port));
    assert.equal(any.resultCode, ResultCode.SUCCESS);
    assert.notEqual(any.map?.externalPort, 22);
  });

  // RFC 6887 §13.3 against what the kernel does: the peer map matches one whole remote address, any remote port
  const filter = (remoteAddress: string, prefixLength = 128, remotePort = 0) => ({
    kind: 'filter' as const,
    prefixLength,
    remotePort,
    remoteAddress,
  });
  const peerEntry = (port: number) =>
    [...h.env.dataplane.entries.values()].find((e) => e.protocol === 'tcp' && e.internalPort === port);

  test('FILTER a.b.c.d/32 (prefix 128 in the IPv4-mapped field), remote port 0: honoured, echoed, in the kernel entry', async () => {
    const f = filter('198.51.100.5');
    const r = decodePcpResponse(await c.ask(mapRequest({ internalPort: 8000, options: [f] }), h.port));
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.deepEqual(r.options, [f]);
    const lease = h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!;
    assert.equal(lease.remoteAddress, '198.51.100.5');
    assert.equal(lease.remotePrefix, 32);
    assert.equal(lease.remotePort, null);
    assert.equal(peerEntry(8000)?.remoteAddress, '198.51.100.5', 'the dataplane matches the remote address');
    // a renewal with the same FILTER, or with none, keeps it
    for (const options of [[f], []]) {
      const again = decodePcpResponse(await c.ask(mapRequest({ internalPort: 8000, options }), h.port));
      assert.equal(again.resultCode, ResultCode.SUCCESS);
      assert.deepEqual(again.options, options);
      assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!.remoteAddress, '198.51.100.5');
    }
  });

  test('FILTER with a remote port, or a prefix shorter than /32, is not claimed: EXCESSIVE_REMOTE_PEERS, not echoed, nothing changes', async () => {
    const cases = [
      filter('198.51.100.5', 128, 443),
      filter('198.51.100.0', 120),
      filter('198.51.100.0', 96),
      filter('198.51.100.0', 120, 443),
    ];
    for (const f of cases) {
      // a new mapping is not made
      const fresh = decodePcpResponse(await c.ask(mapRequest({ internalPort: 8001, options: [f] }), h.port));
      assert.equal(
        fresh.resultCode,
        ResultCode.EXCESSIVE_REMOTE_PEERS,
        `${f.remoteAddress}/${f.prefixLength} port ${f.remotePort}`,
      );
      assert.equal(fresh.lifetime, 1800, 'a long lifetime error (RFC 6887 §7.4)');
      assert.deepEqual(fresh.options, [], 'the refused FILTER is not echoed');
      assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 8001), null);
      // an existing mapping keeps its filter and its expiry
      const before = h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!;
      h.env.clock.advance(1000);
      const renew = decodePcpResponse(
        await c.ask(
          mapRequest({
            internalPort: 8000,
            options: [{ kind: 'filter', prefixLength: 0, remotePort: 0, remoteAddress: '::' }, f],
          }),
          h.port,
        ),
      );
      assert.equal(renew.resultCode, ResultCode.EXCESSIVE_REMOTE_PEERS);
      const after = h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!;
      assert.equal(after.remoteAddress, '198.51.100.5');
      assert.equal(after.remotePort, null);
      assert.equal(after.expiresAt, before.expiresAt, 'not renewed');
      assert.equal(peerEntry(8000)?.remoteAddress, '198.51.100.5');
    }
  });

  test('FILTER peers add up (RFC 6887 §13.3): a second peer → EXCESSIVE_REMOTE_PEERS; prefix 0 then a peer replaces; the same peer twice is one', async () => {
    const two = decodePcpResponse(
      await c.ask(
        mapRequest({ internalPort: 8002, options: [filter('198.51.100.5'), filter('198.51.100.6')] }),
        h.port,
      ),
    );
    assert.equal(two.resultCode, ResultCode.EXCESSIVE_REMOTE_PEERS);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 8002), null);
    const same = decodePcpResponse(
      await c.ask(
        mapRequest({ internalPort: 8002, options: [filter('198.51.100.5'), filter('198.51.100.5')] }),
        h.port,
      ),
    );
    assert.equal(same.resultCode, ResultCode.SUCCESS);
    // the mapping at 8000 has 198.51.100.5: adding .7 would make two peers
    const add = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 8000, options: [filter('198.51.100.7')] }), h.port),
    );
    assert.equal(add.resultCode, ResultCode.EXCESSIVE_REMOTE_PEERS);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!.remoteAddress, '198.51.100.5');
    // prefix length 0 first removes the filters, then .7 is the one peer
    const swap = [
      { kind: 'filter' as const, prefixLength: 0, remotePort: 0, remoteAddress: '::' },
      filter('198.51.100.7'),
    ];
    const replaced = decodePcpResponse(await c.ask(mapRequest({ internalPort: 8000, options: swap }), h.port));
    assert.equal(replaced.resultCode, ResultCode.SUCCESS);
    assert.deepEqual(replaced.options, swap);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!.remoteAddress, '198.51.100.7');
    assert.equal(peerEntry(8000)?.remoteAddress, '198.51.100.7');
  });

  test('FILTER prefix length 0 removes the filter: the mapping is open to any peer again', async () => {
    const clear = { kind: 'filter' as const, prefixLength: 0, remotePort: 0, remoteAddress: '::' };
    const r = decodePcpResponse(await c.ask(mapRequest({ internalPort: 8000, options: [clear] }), h.port));
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.deepEqual(r.options, [clear]);
    const lease = h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!;
    assert.equal(lease.remoteAddress, null);
    assert.equal(lease.remotePrefix, null);
    assert.equal(peerEntry(8000)?.remoteAddress, null);
    // and a new filter can be set again
    const again = decodePcpResponse(
      await c.ask(mapRequest({ internalPort: 8000, options: [filter('198.51.100.9')] }), h.port),
    );
    assert.equal(again.resultCode, ResultCode.SUCCESS);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.1', 8000)!.remoteAddress, '198.51.100.9');
  });

  test('THIRD_PARTY is refused with NOT_AUTHORIZED unless pcp.thirdParty allows the requester', async () => {
    const r = decodePcpResponse(
      await c.ask(
        mapRequest({ internalPort: 8100, options: [{ kind: 'third_party', address: '127.0.0.50' }] }),
        h.port,
      ),
    );
    assert.equal(r.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(h.env.table.findByInternal('tcp', '127.0.0.50', 8100), null);
  });

  test('protocol 0 → NOT_AUTHORIZED; an unknown protocol → UNSUPP_PROTOCOL', async () => {
    const all = decodePcpResponse(await c.ask(mapRequest({ protocol: 0, internalPort: 0 }), h.port));
    assert.equal(all.resultCode, ResultCode.NOT_AUTHORIZED);
    const sctp = decodePcpResponse(await c.ask(mapRequest({ protocol: 132, internalPort: 9000 }), h.port));
    assert.equal(sctp.resultCode, ResultCode.UNSUPP_PROTOCOL);
  });

  test("internal port 0 + lifetime 0 deletes all of the client's mappings of that protocol", async () => {
    for (const p of [9100, 9101])
      assert.equal(decodePcpResponse(await c.ask(mapRequest({ protocol: 17, internalPort: p }), h.port)).resultCode, 0);
    const r = decodePcpResponse(await c.ask(mapRequest({ protocol: 17, internalPort: 0, lifetime: 0 }), h.port));
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 9100), null);
    assert.equal(h.env.table.findByInternal('udp', '127.0.0.1', 9101), null);
  });

  test('ANNOUNCE request is answered with SUCCESS, lifetime 0 and the epoch', async () => {
    h.env.clock.advance(42_000);
    const req = encodePcpRequest({ version: 2, opcode: 0, lifetime: 0, clientAddress: '127.0.0.1', options: [] });
    const r = decodePcpResponse(await c.ask(req, h.port));
    assert.equal(r.resultCode, ResultCode.SUCCESS);
    assert.equal(r.opcode, Opcode.ANNOUNCE);
    assert.equal(r.lifetime, 0);
    assert.ok(r.epoch >= 42, `epoch ${r.epoch} counts seconds since start`);
  });
});

describe('RFC 6887 §8.3 validation order over the wire', () => {
  let h: Harness;
  let c: UdpClient;
  before(async () => {
    h = await startPcp();
    c = await udpClient();
  });
  after(async () => {
    c.close();
    await h.close();
  });

  test('under 2 octets, R bit set, under 24 octets: silently dropped', async () => {
    c.send(hex('02'), h.port);
    assert.equal(await c.next(300), null);
    const r = Buffer.from(mapRequest());
    r[1] = 0x81;
    c.send(r, h.port);
    assert.equal(await c.next(300), null);
    c.send(Buffer.from(mapRequest()).subarray(0, 20), h.port);
    assert.equal(await c.next(300), null);
  });

  test('version 1 → UNSUPP_VERSION carrying version 2, whatever the length', async () => {
    const res = await c.ask(hex('0101'), h.port);
    assert.equal(res.length, 24);
    assert.equal(res[0], 2);
    assert.equal(res[1], 0x81);
    assert.equal(res[3], ResultCode.UNSUPP_VERSION);
  });

  test('not a multiple of 4 / over 1100 → MALFORMED_REQUEST', async () => {
    const odd = Buffer.concat([Buffer.from(mapRequest()), Buffer.alloc(2)]);
    assert.equal((await c.ask(odd, h.port))[3], ResultCode.MALFORMED_REQUEST);
    const big = Buffer.concat([Buffer.from(mapRequest()), Buffer.alloc(1104 - 60)]);
    assert.equal((await c.ask(big, h.port))[3], ResultCode.MALFORMED_REQUEST);
  });

  test('unknown opcode → UNSUPP_OPCODE (before the address check)', async () => {
    const r = Buffer.from(mapRequest({ client: '10.1.1.1' }));
    r[1] = 5;
    const res = decodePcpResponse(await c.ask(r, h.port));
    assert.equal(res.resultCode, ResultCode.UNSUPP_OPCODE);
    assert.equal(res.opcode, 5);
  });

  test('client address ≠ packet source → ADDRESS_MISMATCH', async () => {
    const res = decodePcpResponse(await c.ask(mapRequest({ client: '10.1.1.1', internalPort: 6000 }), h.port));
    assert.equal(res.resultCode, ResultCode.ADDRESS_MISMATCH);
    assert.equal(res.map?.internalPort, 6000, 'request fields copied');
    assert.equal(h.env.table.findByInternal('tcp', '10.1.1.1', 6000), null);
  });

  test('unknown mandatory option → UNSUPP_OPTION; unknown optional ignored and not echoed; malformed → MALFORMED_OPTION', async () => {
    const mand = decodePcpResponse(
      await c.ask(
        mapRequest({ internalPort: 6001, options: [{ kind: 'other', code: 99, data: new Uint8Array(4) }] }),
        h.port,
      ),
    );
    assert.equal(mand.resultCode, ResultCode.UNSUPP_OPTION);
    const opt = decodePcpResponse(
      await c.ask(
        mapRequest({ internalPort: 6002, options: [{ kind: 'other', code: 200, data: new Uint8Array(4) }] }),
        h.port,
      ),
    );
    assert.equal(opt.resultCode, ResultCode.SUCCESS);
    assert.deepEqual(opt.options, [], 'responses carry only processed options');
    const bad = Buffer.concat([Buffer.from(mapRequest({ internalPort: 6003 })), hex('01000008 0000000000000000')]);
    const mal = decodePcpResponse(await c.ask(bad, h.port));
    assert.equal(mal.resultCode, ResultCode.MALFORMED_OPTION);
  });

  test('bad input is counted in metrics', async () => {
    const text = await h.env.metrics.registry.getSingleMetricAsString('portd_bad_input_total');
    assert.match(text, /frontend="pcp",kind="MALFORMED_REQUEST"\} [1-9]/);
    assert.match(text, /kind="DROPPED"\} [1-9]/);
  });
});

describe('PCP policy-dependent answers', () => {
  test('THIRD_PARTY allowed by pcp.thirdParty maps for the named host, owned by the requester', async () => {
    const h = await startPcp({ pcp: { thirdParty: ['127.0.0.0/8'] }, policy: { secureMode: true } });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(
        await c.ask(
          mapRequest({ internalPort: 8200, options: [{ kind: 'third_party', address: '127.0.0.50' }] }),
          h.port,
        ),
      );
      assert.equal(r.resultCode, ResultCode.SUCCESS);
      assert.deepEqual(r.options, [{ kind: 'third_party', address: '127.0.0.50' }]);
      const lease = h.env.table.findByInternal('tcp', '127.0.0.50', 8200);
      assert.ok(lease);
      assert.equal(lease.owner, '127.0.0.1');
    } finally {
      c.close();
      await h.close();
    }
  });

  test('protocol 0 with allowAllProtocols → UNSUPP_PROTOCOL (no whole-host leases)', async () => {
    const h = await startPcp({ pcp: { allowAllProtocols: true } });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(await c.ask(mapRequest({ protocol: 0, internalPort: 0 }), h.port));
      assert.equal(r.resultCode, ResultCode.UNSUPP_PROTOCOL);
    } finally {
      c.close();
      await h.close();
    }
  });

  test('quota → USER_EX_QUOTA with the short lifetime', async () => {
    const h = await startPcp({ policy: { maxLeasesPerClient: 2 } });
    const c = await udpClient();
    try {
      for (const p of [1, 2])
        assert.equal(decodePcpResponse(await c.ask(mapRequest({ internalPort: 3000 + p }), h.port)).resultCode, 0);
      const r = decodePcpResponse(await c.ask(mapRequest({ internalPort: 3003 }), h.port));
      assert.equal(r.resultCode, ResultCode.USER_EX_QUOTA);
      assert.equal(r.lifetime, 30);
    } finally {
      c.close();
      await h.close();
    }
  });

  test('allow/deny rules refusing the client → NOT_AUTHORIZED', async () => {
    const h = await startPcp({
      policy: {
        rules: [
          {
            action: 'deny',
            extStart: 0,
            extEnd: 65535,
            address: '0.0.0.0',
            prefix: 0,
            intStart: 0,
            intEnd: 65535,
            text: 'deny 0-65535 0.0.0.0/0 0-65535',
          },
        ],
      },
    });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(
        await c.ask(
          mapRequest({ internalPort: 3100, externalPort: 3100, options: [{ kind: 'prefer_failure' }] }),
          h.port,
        ),
      );
      assert.equal(r.resultCode, ResultCode.NOT_AUTHORIZED);
    } finally {
      c.close();
      await h.close();
    }
  });

  test('secure mode: a mapping held by another client is NOT_AUTHORIZED', async () => {
    const h = await startPcp({ pcp: { thirdParty: ['127.0.0.2/32'] } });
    const a = await udpClient('127.0.0.1');
    const b = await udpClient('127.0.0.2');
    try {
      assert.equal(decodePcpResponse(await a.ask(mapRequest({ internalPort: 3200 }), h.port)).resultCode, 0);
      const r = decodePcpResponse(
        await b.ask(
          mapRequest({
            client: '127.0.0.2',
            internalPort: 3200,
            options: [{ kind: 'third_party', address: '127.0.0.1' }],
            nonce: NONCE_A,
          }),
          h.port,
        ),
      );
      // b may speak for others (thirdParty), so the table lets it renew; the nonce matches: the same mapping
      assert.equal(r.resultCode, ResultCode.SUCCESS);
      const r2 = decodePcpResponse(
        await b.ask(
          mapRequest({
            client: '127.0.0.2',
            internalPort: 3200,
            options: [{ kind: 'third_party', address: '127.0.0.1' }],
            nonce: NONCE_B,
          }),
          h.port,
        ),
      );
      assert.equal(r2.resultCode, ResultCode.NOT_AUTHORIZED, 'but not with another nonce');
    } finally {
      a.close();
      b.close();
      await h.close();
    }
  });
});

describe('PCP PEER', () => {
  const flow = { externalAddress: EXTERNAL, externalPort: 40001, timeout: 100 };
  function peerRequest(lifetime = 600) {
    return encodePcpRequest({
      version: 2,
      opcode: 2,
      lifetime,
      clientAddress: '127.0.0.1',
      options: [],
      peer: {
        nonce: nonceFromHex(NONCE_A),
        protocol: 6,
        internalPort: 40000,
        externalPort: 0,
        externalAddress: '0.0.0.0',
        remotePort: 80,
        remoteAddress: '198.51.100.5',
      },
    });
  }

  test("reports the flow's external endpoint from conntrack and extends it by the clamped lifetime", async () => {
    const extended: number[] = [];
    const h = await startPcp({
      conntrack: {
        async lookup(q) {
          return q.internalPort === 40000 && q.remoteAddress === '198.51.100.5' && q.remotePort === 80 ? flow : null;
        },
        async extend(_q, s) {
          extended.push(s);
          return true;
        },
      },
    });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(await c.ask(peerRequest(60), h.port));
      assert.equal(r.resultCode, ResultCode.SUCCESS);
      assert.equal(r.peer?.externalPort, 40001);
      assert.equal(r.peer?.externalAddress, EXTERNAL);
      assert.equal(r.peer?.remoteAddress, '198.51.100.5');
      assert.equal(r.lifetime, 120);
      assert.deepEqual(extended, [120]);
    } finally {
      c.close();
      await h.close();
    }
  });

  test('a flow conntrack keeps longer than asked is not shortened; the longer time is reported', async () => {
    const extended: number[] = [];
    const h = await startPcp({
      conntrack: {
        async lookup() {
          return { ...flow, timeout: 431_999 };
        },
        async extend(_q, s) {
          extended.push(s);
          return true;
        },
      },
    });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(await c.ask(peerRequest(600), h.port));
      assert.equal(r.resultCode, ResultCode.SUCCESS);
      assert.deepEqual(extended, [], 'conntrack not touched');
      assert.equal(r.lifetime, 86400, "the flow's own time, capped at policy.lifetime.pcp.max");
    } finally {
      c.close();
      await h.close();
    }
  });

  test('no such flow → NO_RESOURCES (short lifetime)', async () => {
    const h = await startPcp({
      conntrack: {
        async lookup() {
          return null;
        },
        async extend() {
          return false;
        },
      },
    });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(await c.ask(peerRequest(), h.port));
      assert.equal(r.resultCode, ResultCode.NO_RESOURCES);
      assert.equal(r.lifetime, 30);
    } finally {
      c.close();
      await h.close();
    }
  });

  test('pcp.peer: false → UNSUPP_OPCODE', async () => {
    const h = await startPcp({
      pcp: { peer: false },
      conntrack: {
        async lookup() {
          return flow;
        },
        async extend() {
          return true;
        },
      },
    });
    const c = await udpClient();
    try {
      const r = decodePcpResponse(await c.ask(peerRequest(), h.port));
      assert.equal(r.resultCode, ResultCode.UNSUPP_OPCODE);
    } finally {
      c.close();
      await h.close();
    }
  });
});
