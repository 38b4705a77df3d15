/**
 * PCP PEER's conntrack side (src/frontends/pcp/conntrack.ts) against a fake `conntrack` tool:
 * the kernel resets a flow's timeout on every packet (nf_ct_refresh), so one `conntrack -U
 * --timeout` does not keep a PEER promise; the CLI holds each extended flow and lengthens it again
 * until the PEER lifetime ends, never shortening it. The real kernel case is test/lab/pcp-peer.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import {
  encodePcpRequest,
  IpProtocol,
  Opcode,
  ResultCode,
  Version,
  decodePcpResponse,
} from '../../protocols/pcp/index.js';
import {
  createConntrackCli,
  parseConntrackTuple,
  type ConntrackApi,
  type FlowQuery,
} from '../../src/frontends/pcp/conntrack.js';
import { createPcpHandler } from '../../src/frontends/pcp/handler.js';
import type { LeaseTableApi } from '../../src/leases/table-api.js';
import { testPolicy } from '../helpers/leases.js';

const Q: FlowQuery = {
  protocol: 'udp',
  internalAddress: '192.168.77.11',
  internalPort: 40000,
  remoteAddress: '203.0.113.2',
  remotePort: 7000,
};
const BANNER = (n: number, what: string) =>
  `conntrack v1.4.7 (conntrack-tools): ${n} flow entries have been ${what}.\n`;

/** a conntrack table in memory, answering the argument lists conntrack.ts runs */
function fakeConntrack() {
  const flows = new Map<string, { q: FlowQuery; timeout: number; extPort: number }>();
  const calls: string[][] = [];
  const key = (q: FlowQuery) =>
    `${q.protocol} ${q.internalAddress}:${q.internalPort} ${q.remoteAddress}:${q.remotePort}`;
  const line = (f: { q: FlowQuery; timeout: number; extPort: number }) =>
    `${f.q.protocol}      17 ${f.timeout} src=${f.q.internalAddress} dst=${f.q.remoteAddress} ` +
    `sport=${f.q.internalPort} dport=${f.q.remotePort} ` +
    `src=${f.q.remoteAddress} dst=203.0.113.1 sport=${f.q.remotePort} dport=${f.extPort} mark=0 use=1`;
  const arg = (args: string[], name: string) => {
    const i = args.indexOf(name);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const queryOf = (args: string[]): FlowQuery | null => {
    const p = arg(args, '-p');
    if (p !== 'udp' && p !== 'tcp') return null;
    return {
      protocol: p,
      internalAddress: arg(args, '--orig-src')!,
      remoteAddress: arg(args, '--orig-dst')!,
      internalPort: Number(arg(args, '--sport')),
      remotePort: Number(arg(args, '--dport')),
    };
  };
  return {
    flows,
    calls,
    add(q: FlowQuery, timeout: number, extPort = 62001) {
      flows.set(key(q), { q, timeout, extPort });
    },
    /** a packet passed: the kernel's UDP timeout again */
    packet(q: FlowQuery) {
      const f = flows.get(key(q));
      if (f) f.timeout = 30;
    },
    timeout(q: FlowQuery) {
      return flows.get(key(q))?.timeout;
    },
    updates() {
      return calls.filter((a) => a[0] === '-U').length;
    },
    async run(args: string[]) {
      calls.push(args);
      const q = queryOf(args);
      if (args[0] === '-L') {
        const shown = [...flows.values()].filter((f) => !q || key(f.q) === key(q));
        return {
          code: 0,
          out: shown.map(line).join('\n') + (shown.length ? '\n' : '') + BANNER(shown.length, 'shown'),
        };
      }
      if (args[0] === '-U' && q) {
        const f = flows.get(key(q));
        if (!f) return { code: 1, out: BANNER(0, 'updated') };
        f.timeout = Number(arg(args, '--timeout'));
        return { code: 0, out: BANNER(1, 'updated') };
      }
      return { code: 2, out: 'unexpected' };
    },
  };
}

function setup(opts: { maxHeld?: number } = {}) {
  const ct = fakeConntrack();
  let now = 1_000_000;
  const cli = createConntrackCli({ run: (a) => ct.run(a), now: () => now, keepIntervalMs: 3_600_000, ...opts });
  return {
    ct,
    cli,
    advance: (s: number) => {
      now += s * 1000;
    },
  };
}

describe('conntrack CLI: PEER holds survive traffic', () => {
  it("reads a flow's original tuple and timeout from a listing line", () => {
    assert.deepEqual(
      parseConntrackTuple(
        'udp      17 29 src=192.168.77.11 dst=203.0.113.2 sport=40000 dport=7000 src=203.0.113.2 dst=203.0.113.1 ' +
          'sport=7000 dport=62067 mark=0 use=1',
      ),
      { ...Q, timeout: 29 },
    );
    assert.equal(parseConntrackTuple(BANNER(1, 'shown')), null);
    assert.equal(parseConntrackTuple('icmp     1 29 src=192.168.77.11 dst=203.0.113.2 type=8 code=0 id=1'), null);
  });

  it('extend sets the timeout; after a packet reset it, a keeper pass sets what the hold has left', async () => {
    const { ct, cli, advance } = setup();
    ct.add(Q, 30);
    assert.equal(await cli.extend(Q, 900), true);
    assert.equal(ct.timeout(Q), 900);
    assert.equal(cli.held(), 1);
    advance(100);
    ct.packet(Q);
    assert.equal(ct.timeout(Q), 30);
    await cli.keep();
    assert.equal(ct.timeout(Q), 800);
    // a lookup reports the hold, whatever the kernel's timeout was reset to
    ct.packet(Q);
    assert.deepEqual(await cli.lookup(Q), { externalAddress: '203.0.113.1', externalPort: 62001, timeout: 800 });
    cli.close();
  });

  it('never shortens a flow: a timeout at or above the hold is left alone', async () => {
    const { ct, cli, advance } = setup();
    ct.add(Q, 30);
    await cli.extend(Q, 900);
    advance(10);
    const before = ct.updates();
    await cli.keep(); // 900 in the kernel ≥ 890 left
    assert.equal(ct.updates(), before);
    assert.equal(ct.timeout(Q), 900);
    cli.close();
  });

  it("the hold ends with its lifetime; the flow keeps conntrack's own timeout", async () => {
    const { ct, cli, advance } = setup();
    ct.add(Q, 30);
    await cli.extend(Q, 120);
    advance(121);
    ct.packet(Q);
    await cli.keep();
    assert.equal(cli.held(), 0);
    assert.equal(ct.timeout(Q), 30);
    assert.equal((await cli.lookup(Q))?.timeout, 30);
  });

  it('a flow that ended drops its hold; release drops it too', async () => {
    const { ct, cli } = setup();
    const other: FlowQuery = { ...Q, internalPort: 40001 };
    ct.add(Q, 30);
    ct.add(other, 30);
    await cli.extend(Q, 900);
    await cli.extend(other, 900);
    assert.equal(cli.held(), 2);
    ct.flows.clear(); // conntrack -F, or the flows closed
    ct.add(other, 30);
    await cli.keep();
    assert.equal(cli.held(), 1);
    cli.release(other);
    assert.equal(cli.held(), 0);
    ct.packet(other);
    await cli.keep();
    assert.equal(ct.timeout(other), 30, 'a released flow is not lengthened again');
  });

  it('a renewal with a shorter lifetime keeps the longer hold', async () => {
    const { ct, cli, advance } = setup();
    ct.add(Q, 30);
    await cli.extend(Q, 900);
    advance(100);
    ct.packet(Q);
    await cli.extend(Q, 300);
    ct.packet(Q);
    await cli.keep();
    assert.equal(ct.timeout(Q), 800);
    cli.close();
  });

  it('extend fails for a flow that does not exist, and beyond maxHeld without running the tool', async () => {
    const { ct, cli } = setup({ maxHeld: 1 });
    assert.equal(await cli.extend(Q, 900), false);
    assert.equal(cli.held(), 0);
    ct.add(Q, 30);
    const other: FlowQuery = { ...Q, internalPort: 40001 };
    ct.add(other, 30);
    assert.equal(await cli.extend(Q, 900), true);
    const before = ct.calls.length;
    assert.equal(await cli.extend(other, 900), false);
    assert.equal(ct.calls.length, before);
    assert.equal(ct.timeout(other), 30);
    cli.close();
  });

  it('"10 flow entries have been updated" is an update (not read as "0 flow entries")', async () => {
    const cli = createConntrackCli({
      run: async () => ({ code: 0, out: BANNER(10, 'updated') }),
      keepIntervalMs: 3_600_000,
    });
    assert.equal(await cli.extend(Q, 60), true);
    cli.close();
    const none = createConntrackCli({ run: async () => ({ code: 0, out: BANNER(0, 'updated') }) });
    assert.equal(await none.extend(Q, 60), false);
  });
});

describe('PCP handler: PEER lifetime 0 ends the hold', () => {
  it('answers SUCCESS with lifetime 0 and releases the flow', async () => {
    const released: FlowQuery[] = [];
    const conntrack: ConntrackApi = {
      async lookup() {
        return { externalAddress: '203.0.113.1', externalPort: 62001, timeout: 850 };
      },
      async extend() {
        throw new Error('lifetime 0 must not extend');
      },
      release(q) {
        released.push(q);
      },
    };
    const handler = createPcpHandler({
      config: {
        pcp: {
          enabled: true,
          port: 0,
          peer: true,
          thirdParty: [],
          allowAllProtocols: false,
          rateLimit: 0,
          ipv6: false,
        },
        natpmp: { enabled: true },
        policy: testPolicy(),
        limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0 },
      },
      leases: { externalAddress: () => '203.0.113.1' } as unknown as LeaseTableApi,
      log: pino({ level: 'silent' }),
      conntrack,
      epoch: () => 5,
      now: () => 0,
    });
    const req = encodePcpRequest({
      version: Version.PCP,
      opcode: Opcode.PEER,
      lifetime: 0,
      clientAddress: Q.internalAddress,
      options: [],
      peer: {
        nonce: new Uint8Array(12).fill(7),
        protocol: IpProtocol.UDP,
        internalPort: Q.internalPort,
        externalPort: 0,
        externalAddress: '0.0.0.0',
        remotePort: Q.remotePort,
        remoteAddress: Q.remoteAddress,
      },
    });
    const r = await handler.handle(req, Q.internalAddress);
    const res = decodePcpResponse(r.response!);
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.lifetime, 0);
    assert.equal(res.peer?.externalPort, 62001);
    assert.deepEqual(released, [Q]);
  });
});
