/**
 * PCP PEER's global bounds (issue 14): every PEER request used to start its own `conntrack`
 * process, with nothing bounding them across clients. Now the conntrack CLI runs one process at a
 * time (a bounded queue), reuses a lookup's answer for about a second, shares identical lookups in
 * flight and does not run `-U` twice for a burst; the handler caps PEER at
 * limits.peerLookupsPerSecond (over it: NO_RESOURCES, a short error). A fake `conntrack` counts the
 * processes it would have run, and how many at once. The real kernel case is test/lab/pcp-peer.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import {
  decodePcpResponse,
  encodePcpRequest,
  IpProtocol,
  Opcode,
  ResultCode,
  Version,
} from '../../protocols/pcp/index.js';
import { ConntrackBusyError, createConntrackCli, type FlowQuery } from '../../src/frontends/pcp/conntrack.js';
import { createPcpHandler } from '../../src/frontends/pcp/handler.js';
import type { LeaseTableApi } from '../../src/leases/table-api.js';
import { testPolicy } from '../helpers/leases.js';

/** a `conntrack` that takes `ms` per run and counts runs, and runs at once */
function countingConntrack(ms = 2) {
  const flows = new Set<string>();
  let active = 0;
  const stats = { runs: 0, maxActive: 0, lists: 0, updates: 0 };
  let gate: Promise<void> | null = null;
  let open: () => void = () => {};
  const arg = (args: string[], name: string) => args[args.indexOf(name) + 1];
  const key = (src: string, sport: string, dst: string, dport: string) => `${src}:${sport}>${dst}:${dport}`;
  return {
    stats,
    add(q: FlowQuery) {
      flows.add(key(q.internalAddress, String(q.internalPort), q.remoteAddress, String(q.remotePort)));
    },
    /** hold every run until release() (to fill the queue) */
    block() {
      gate = new Promise((r) => {
        open = r;
      });
    },
    release() {
      open();
      gate = null;
    },
    async run(args: string[]) {
      stats.runs++;
      active++;
      stats.maxActive = Math.max(stats.maxActive, active);
      try {
        await new Promise((r) => setTimeout(r, ms));
        if (gate) await gate;
        const k = key(arg(args, '--orig-src')!, arg(args, '--sport')!, arg(args, '--orig-dst')!, arg(args, '--dport')!);
        if (args[0] === '-L') {
          stats.lists++;
          const [src, rest] = k.split(':');
          return flows.has(k)
            ? {
                code: 0,
                out:
                  `udp 17 30 src=${src} dst=${arg(args, '--orig-dst')} sport=${rest!.split('>')[0]} ` +
                  `dport=${arg(args, '--dport')} src=${arg(args, '--orig-dst')} dst=203.0.113.1 ` +
                  `sport=${arg(args, '--dport')} dport=62001 mark=0 use=1\nconntrack v1.4.7 (conntrack-tools): 1 ` +
                  'flow entries have been shown.\n',
              }
            : { code: 0, out: 'conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n' };
        }
        stats.updates++;
        return flows.has(k)
          ? { code: 0, out: 'conntrack v1.4.7 (conntrack-tools): 1 flow entries have been updated.\n' }
          : { code: 1, out: '0 flow entries have been updated.\n' };
      } finally {
        active--;
      }
    },
  };
}

function peerRequest(q: FlowQuery, lifetime = 600): Uint8Array {
  return encodePcpRequest({
    version: Version.PCP,
    opcode: Opcode.PEER,
    lifetime,
    clientAddress: q.internalAddress,
    options: [],
    peer: {
      nonce: new Uint8Array(12).fill(7),
      protocol: IpProtocol.UDP,
      internalPort: q.internalPort,
      externalPort: 0,
      externalAddress: '0.0.0.0',
      remotePort: q.remotePort,
      remoteAddress: q.remoteAddress,
    },
  });
}

function setup(opts: { peerLookupsPerSecond?: number; maxQueued?: number; ms?: number } = {}) {
  const ct = countingConntrack(opts.ms);
  let now = 1_000_000;
  const cli = createConntrackCli({
    run: (a) => ct.run(a),
    now: () => now,
    keepIntervalMs: 3_600_000,
    ...(opts.maxQueued ? { maxQueued: opts.maxQueued } : {}),
  });
  const handler = createPcpHandler({
    config: {
      pcp: { enabled: true, port: 0, peer: true, thirdParty: [], allowAllProtocols: false, rateLimit: 0, ipv6: false },
      natpmp: { enabled: true },
      policy: testPolicy(),
      limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: opts.peerLookupsPerSecond ?? 0 },
    },
    leases: { externalAddress: () => '203.0.113.1' } as unknown as LeaseTableApi,
    log: pino({ level: 'silent' }),
    conntrack: cli,
    epoch: () => 5,
    now: () => now,
  });
  return {
    ct,
    cli,
    handler,
    advance: (ms: number) => {
      now += ms;
    },
  };
}

/** flow i of a LAN host 192.168.1.(10 + i % hosts) */
const flow = (i: number, hosts = 50): FlowQuery => ({
  protocol: 'udp',
  internalAddress: `192.168.1.${10 + (i % hosts)}`,
  internalPort: 40000 + i,
  remoteAddress: '203.0.113.2',
  remotePort: 7000,
});

describe('PEER: conntrack bounded globally', () => {
  it('a burst of 200 PEER requests from 50 hosts (50 flows, each asked 4 times): one conntrack at a time, one -L and one -U per flow', async () => {
    const { ct, cli, handler } = setup();
    const flows = Array.from({ length: 50 }, (_, i) => flow(i));
    for (const f of flows) ct.add(f);
    const answers = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        handler.handle(peerRequest(flows[i % 50]!), flows[i % 50]!.internalAddress),
      ),
    );
    const codes = answers.map((a) => decodePcpResponse(a.response!).resultCode);
    assert.deepEqual([...new Set(codes)], [ResultCode.SUCCESS], 'every request answered SUCCESS');
    assert.equal(ct.stats.maxActive, 1, 'never two conntrack processes at once');
    assert.equal(ct.stats.lists, 50, 'one lookup per flow: the rest shared it or were answered from the cache');
    assert.equal(ct.stats.updates, 50, 'one -U per flow');
    assert.equal(cli.held(), 50);
    for (const a of answers) assert.equal(decodePcpResponse(a.response!).peer?.externalPort, 62001);
    cli.close();
  });

  it('over limits.peerLookupsPerSecond: NO_RESOURCES with a short lifetime, the limit named, no process started; the rate refills', async () => {
    const { ct, cli, handler, advance } = setup({ peerLookupsPerSecond: 10 });
    const flows = Array.from({ length: 40 }, (_, i) => flow(i, 40));
    for (const f of flows) ct.add(f);
    const first = await Promise.all(flows.slice(0, 30).map((f) => handler.handle(peerRequest(f), f.internalAddress)));
    const ok = first.filter((a) => decodePcpResponse(a.response!).resultCode === ResultCode.SUCCESS);
    const refused = first.filter((a) => decodePcpResponse(a.response!).resultCode === ResultCode.NO_RESOURCES);
    assert.equal(ok.length, 10);
    assert.equal(refused.length, 20);
    for (const a of refused) {
      assert.equal(decodePcpResponse(a.response!).lifetime, 30, 'a short lifetime error (RFC 6887 §7.4)');
      assert.equal(a.limit, 'peerLookupsPerSecond');
    }
    assert.equal(ct.stats.runs, 20, 'only the 10 admitted requests ran conntrack (-L and -U)');
    assert.equal(ct.stats.maxActive, 1);
    advance(1000);
    const later = await Promise.all(flows.slice(30).map((f) => handler.handle(peerRequest(f), f.internalAddress)));
    assert.equal(
      later.filter((a) => decodePcpResponse(a.response!).resultCode === ResultCode.SUCCESS).length,
      10,
      'a second later the rate allows 10 more',
    );
    cli.close();
  });

  it("a lookup's answer is reused for about a second, then the kernel is asked again", async () => {
    const { ct, cli, advance } = setup();
    const f = flow(1);
    ct.add(f);
    assert.equal((await cli.lookup(f))?.externalPort, 62001);
    assert.equal((await cli.lookup(f))?.externalPort, 62001);
    assert.equal(ct.stats.lists, 1);
    advance(999);
    await cli.lookup(f);
    assert.equal(ct.stats.lists, 1, 'still within the second');
    advance(2);
    await cli.lookup(f);
    assert.equal(ct.stats.lists, 2);
    // no flow is an answer too: cached, and looked up again after the second
    const none = flow(2);
    assert.equal(await cli.lookup(none), null);
    assert.equal(await cli.lookup(none), null);
    assert.equal(ct.stats.lists, 3);
    cli.close();
  });

  it('the queue is bounded: past maxQueued runs a lookup fails at once (the handler answers NO_RESOURCES)', async () => {
    const { ct, cli, handler } = setup({ maxQueued: 4, ms: 0 });
    const flows = Array.from({ length: 10 }, (_, i) => flow(i, 10));
    for (const f of flows) ct.add(f);
    ct.block();
    const results = flows.map((f) =>
      cli.lookup(f).then(
        () => 'ok',
        (e: unknown) => (e instanceof ConntrackBusyError ? 'busy' : String(e)),
      ),
    );
    const viaHandler = handler.handle(peerRequest(flow(20, 30)), flow(20, 30).internalAddress);
    await new Promise((r) => setTimeout(r, 20));
    assert.ok(ct.stats.runs <= 1, 'one run at a time even while blocked');
    ct.release();
    const out = await Promise.all(results);
    assert.equal(out.filter((x) => x === 'ok').length, 4);
    assert.equal(out.filter((x) => x === 'busy').length, 6);
    assert.equal(decodePcpResponse((await viaHandler).response!).resultCode, ResultCode.NO_RESOURCES);
    assert.equal(ct.stats.maxActive, 1);
    cli.close();
  });
});
