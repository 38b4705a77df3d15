/**
 * Hostile input against the PCP / NAT-PMP front-end (issue 9 §5): a million random and mutated
 * packets through the decoder, twenty thousand through the live server socket, requests from
 * outside the LAN, and a flood from one LAN host while another is served. Loopback only; every
 * loop is bounded in count and time. Seeds are fixed (PORTD_FUZZ_SEED replays another).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Worker } from 'node:worker_threads';
import {
  classifyPacket,
  decodeNatPmpRequest,
  decodePcpRequest,
  decodePcpResponse,
  encodePcpRequest,
  encodePcpResponse,
  errorResponseFor,
  isDecodeError,
  nonceFromHex,
  NatPmpDecodeError,
  PcpDecodeError,
  ResultCode,
} from '../../protocols/pcp/index.js';
import type { PcpRequest } from '../../protocols/pcp/index.js';
import { parseConfig } from '../../src/config/index.js';
import { createSystemClock } from '../../src/leases/clock.js';
import { startPortd } from '../../src/main.js';
import { captureLog, counter, fuzzSeed, mutateBytes, percentile, prng, until } from '../fuzz/mutate.js';
import type { ConntrackApi } from '../../src/frontends/pcp/index.js';
import { mapRequest, startPcp, udpClient } from './pcp-helpers.js';

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const fixtureFile = (f: string) =>
  (
    JSON.parse(readFileSync(new URL(`../fixtures/pcp/${f}`, import.meta.url), 'utf8')) as { packets: { hex: string }[] }
  ).packets.map((p) => hex(p.hex));

/**
 * PCP requests as RFC 6887 shapes them (no PCP client capture exists in the fixtures: natpmpc and nat-port-mapper speak
 * NAT-PMP only)
 */
function pcpSeeds(client: string): Uint8Array[] {
  const nonce = nonceFromHex('0102030405060708090a0b0c');
  const map = { nonce, protocol: 6, internalPort: 5000, externalPort: 5000, externalAddress: '0.0.0.0' };
  const reqs: PcpRequest[] = [
    { version: 2, opcode: 0, lifetime: 0, clientAddress: client, options: [] },
    { version: 2, opcode: 1, lifetime: 3600, clientAddress: client, options: [], map },
    {
      version: 2,
      opcode: 1,
      lifetime: 0,
      clientAddress: client,
      options: [],
      map: { ...map, protocol: 17, internalPort: 0 },
    },
    { version: 2, opcode: 1, lifetime: 7200, clientAddress: client, options: [{ kind: 'prefer_failure' }], map },
    {
      version: 2,
      opcode: 1,
      lifetime: 600,
      clientAddress: client,
      options: [{ kind: 'filter', prefixLength: 128, remotePort: 443, remoteAddress: '198.51.100.7' }],
      map,
    },
    {
      version: 2,
      opcode: 1,
      lifetime: 600,
      clientAddress: client,
      options: [
        { kind: 'third_party', address: '127.0.0.9' },
        { kind: 'other', code: 200, data: Uint8Array.from([1, 2, 3]) },
      ],
      map,
    },
    {
      version: 2,
      opcode: 2,
      lifetime: 600,
      clientAddress: client,
      options: [],
      peer: { ...map, remotePort: 443, remoteAddress: '198.51.100.7' },
    },
  ];
  return reqs.map(encodePcpRequest);
}

const natpmpSeeds = [...fixtureFile('natpmpc.json'), ...fixtureFile('nat-port-mapper.json')];

/** what the server does with a datagram, decoder side only: classify, decode, build the error answer */
function decodeLikeTheServer(b: Uint8Array, source: string): 'ok' | 'respond' | 'drop' {
  const kind = classifyPacket(b);
  if (kind === 'drop') return 'drop';
  try {
    if (kind === 'natpmp') decodeNatPmpRequest(b);
    else decodePcpRequest(b, { source, opcodes: [0, 1, 2] });
    return 'ok';
  } catch (e) {
    if (e instanceof NatPmpDecodeError) return e.action;
    if (!(e instanceof PcpDecodeError)) throw e; // the finding this suite exists for
    const res = errorResponseFor(e, 7);
    if (!res) return 'drop';
    const out = encodePcpResponse(res);
    // the answer is itself a well-formed response carrying the error's code
    if (out.length > 1100 || out.length % 4 !== 0) throw new Error(`error answer of ${out.length} octets`);
    if (decodePcpResponse(out).resultCode !== e.resultCode) throw new Error('error answer lost its result code');
    return 'respond';
  }
}

test('decoder fuzz: 1,000,000 random and mutated PCP/NAT-PMP packets give a request or a typed error, never anything else', (t) => {
  const seed = fuzzSeed(0x5eed_0009);
  const r = prng(seed);
  const seeds = [...pcpSeeds('127.0.0.1'), ...natpmpSeeds];
  const outcome = { ok: 0, respond: 0, drop: 0 };
  const untyped: string[] = [];
  const N = 1_000_000;
  const started = performance.now();
  // stack traces are half the cost of a decode error; the check is `instanceof`, and a failure is
  // reported with its packet (replay it with the seed), so they are off for the loop
  const stackTraceLimit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    for (let i = 0; i < N; i++) {
      let b: Uint8Array;
      const kind = i % 10;
      if (kind < 6)
        b = mutateBytes(r, r.pick(seeds), seeds); // 60 % mutated real packets
      else if (kind < 8) {
        b = r.bytes(r.int(140));
        if (b.length > 1) {
          b[0] = r.pick([0, 2, 2, 1, 3]);
          b[1] = r.int(4);
        }
      } // plausible headers, random rest
      else b = r.bytes(r.chance(0.02) ? 1100 + r.int(200) : r.int(64)); // pure noise, sometimes oversized
      try {
        outcome[decodeLikeTheServer(b, '127.0.0.1')]++;
      } catch (e) {
        if (untyped.length < 5) untyped.push(`${Buffer.from(b).toString('hex')}: ${String(e)}`);
      }
      // a decoded request re-encodes (what the handler echoes back must be encodable)
      if (i % 16 === 0 && classifyPacket(b) === 'pcp') {
        try {
          encodePcpRequest(decodePcpRequest(b, { opcodes: [0, 1, 2] }));
        } catch (e) {
          if (!isDecodeError(e) && untyped.length < 5)
            untyped.push(`re-encode ${Buffer.from(b).toString('hex')}: ${String(e)}`);
        }
      }
    }
  } finally {
    Error.stackTraceLimit = stackTraceLimit;
  }
  const ms = performance.now() - started;
  t.diagnostic(
    `seed ${seed}: ${N} packets in ${ms.toFixed(0)} ms; decoded ${outcome.ok}, error answers ${outcome.respond}, ` +
      `dropped ${outcome.drop}`,
  );
  assert.deepEqual(untyped, [], `untyped throws (seed ${seed})`);
  assert.equal(outcome.ok + outcome.respond + outcome.drop, N);
  // the mutations reach every path: valid requests, answered errors, silent drops
  assert.ok(outcome.ok > N / 50, `only ${outcome.ok} packets decoded`);
  assert.ok(outcome.respond > N / 10);
  assert.ok(outcome.drop > N / 50);
});

test('live fuzz: 20,000 mutated packets at the server socket: every one handled, no internal error, no lease lost, valid requests still answered', async (t) => {
  const seed = fuzzSeed(0x5eed_1009);
  const r = prng(seed);
  const h = await startPcp();
  const fuzzer = await udpClient('127.0.0.1');
  const bystander = await udpClient('127.0.0.8');
  try {
    // leases of another client that the fuzzing host must not be able to touch
    const sentinels = [];
    for (let i = 0; i < 5; i++) {
      const g = await h.env.table.request({
        source: 'pcp',
        identity: 'internal',
        protocol: i % 2 ? 'udp' : 'tcp',
        owner: '127.0.0.7',
        internalAddress: '127.0.0.7',
        internalPort: 7000 + i,
        externalPort: 17000 + i,
        allowOtherPort: false,
        lifetime: 3600,
        nonce: 'ab'.repeat(12),
        actor: 'pcp:127.0.0.7',
      });
      assert.ok(g.ok);
      sentinels.push(g.lease);
    }
    const seeds = [...pcpSeeds('127.0.0.1'), ...natpmpSeeds, ...pcpSeeds('127.0.0.7')];
    const N = 20_000;
    // 64 datagrams of up to 1400 octets fit the socket buffer: none is lost before the server sees it
    const WINDOW = 64;
    const total = () => counter(h.env.metrics, 'portd_requests_total');
    let sent = 0;
    const started = performance.now();
    while (sent < N) {
      const n = Math.min(WINDOW, N - sent);
      for (let i = 0; i < n; i++) {
        const b = r.chance(0.9) ? mutateBytes(r, r.pick(seeds), seeds, 1400) : r.bytes(r.int(200));
        fuzzer.send(b.length === 0 ? Uint8Array.of(0) : b, h.port);
      }
      sent += n;
      // wait for the server to handle the window, so no datagram is lost in a full socket buffer
      assert.ok(
        await until(async () => (await total()) >= sent, 5000, 2),
        `server stalled at ${await total()} of ${sent}`,
      );
    }
    const ms = performance.now() - started;
    assert.equal(await total(), N, 'every datagram was handled and counted once');
    assert.equal(await counter(h.env.metrics, 'portd_requests_total', { result: 'INTERNAL_ERROR' }), 0);
    const bad = await counter(h.env.metrics, 'portd_bad_input_total');
    t.diagnostic(`seed ${seed}: ${N} datagrams in ${ms.toFixed(0)} ms; ${bad} counted as bad input`);
    assert.ok(bad > N / 2, 'malformed datagrams are counted as bad input');

    for (const s of sentinels) {
      const now = h.env.table.get(s.id);
      assert.equal(now?.state, 'active', `lease ${s.id} still active`);
      assert.equal(now?.expiresAt, s.expiresAt, 'and not renewed or changed by the fuzzer');
      assert.equal(now?.externalPort, s.externalPort);
    }
    // the kernel side (memory dataplane) holds exactly the table's active leases: nothing half-applied
    assert.equal(await h.env.dataplane.count(), h.env.table.countActive().total);
    const answer = decodePcpResponse(
      await bystander.ask(mapRequest({ client: '127.0.0.8', internalPort: 8080 }), h.port),
    );
    assert.equal(answer.resultCode, ResultCode.SUCCESS);
  } finally {
    fuzzer.close();
    bystander.close();
    await h.close();
  }
});

test('WAN side: with the LAN set to 127.0.0.2/32, requests from 127.0.0.1 get silence, are counted and logged once', async () => {
  const cap = captureLog();
  const lan = (a: string) => a === '127.0.0.2';
  const h = await startPcp({ extra: { isLanClient: lan, log: cap.log } });
  const wan = await udpClient('127.0.0.1');
  const lanClient = await udpClient('127.0.0.2');
  try {
    const N = 50;
    for (let i = 0; i < N; i++) {
      wan.send(i % 2 ? mapRequest({ client: '127.0.0.1', internalPort: 6000 + i }) : Uint8Array.of(0, 0), h.port);
    }
    assert.ok(
      await until(
        async () => (await counter(h.env.metrics, 'portd_bad_input_total', { frontend: 'pcp', kind: 'not_lan' })) === N,
        3000,
      ),
    );
    assert.equal(await wan.next(300), null, 'nothing at all is answered to the WAN side');
    assert.equal(h.env.table.list({ owner: '127.0.0.1' }).total, 0, 'and nothing was granted');
    assert.equal(cap.matching(/outside the LAN/).length, 1, 'one log line for fifty packets');
    assert.equal(cap.matching(/outside the LAN/)[0]!['client'], '127.0.0.1');
    // the LAN client on the same socket is served
    const ok = decodePcpResponse(await lanClient.ask(mapRequest({ client: '127.0.0.2', internalPort: 6100 }), h.port));
    assert.equal(ok.resultCode, ResultCode.SUCCESS);
  } finally {
    wan.close();
    lanClient.close();
    await h.close();
  }
});

/** sends valid MAP requests from `from` as fast as it can for `ms`, in its own thread; counts answers */
function flood(port: number, from: string, ms: number): Promise<{ sent: number; answers: number }> {
  const packet = Buffer.from(mapRequest({ client: from, internalPort: 9000, nonce: '0a0b0c0d0e0f101112131415' }));
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const dgram = require('node:dgram');
    const s = dgram.createSocket('udp4');
    let sent = 0, answers = 0, inflight = 0;
    s.on('message', () => { answers++; });
    s.bind(0, workerData.from, () => {
      const end = Date.now() + workerData.ms;
      const pump = () => {
        if (Date.now() >= end) {
          setTimeout(() => { s.close(); parentPort.postMessage({ sent, answers }); }, 300);
          return;
        }
        while (inflight < 64) {
          inflight++;
          sent++;
          s.send(workerData.packet, workerData.port, '127.0.0.1', () => { inflight--; });
        }
        setImmediate(pump);
      };
      pump();
    });`;
  return new Promise((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { port, from, ms, packet } });
    w.once('message', (m: { sent: number; answers: number }) => {
      resolve(m);
      void w.terminate();
    });
    w.once('error', reject);
  });
}

/**
 * one MAP at a time from `client`, each retransmitted every 250 ms up to 7 times (RFC 6887 §8.1.1 with its 3 s
 * compressed); latencies in ms
 */
async function serve(
  c: Awaited<ReturnType<typeof udpClient>>,
  port: number,
  count: number,
  gapMs: number,
  basePort: number,
) {
  const latencies: number[] = [];
  let answered = 0;
  let retransmits = 0;
  for (let i = 0; i < count; i++) {
    const req = mapRequest({ client: c.address, internalPort: basePort + i, lifetime: 600 });
    const t0 = performance.now();
    let res: Buffer | null = null;
    // an answer is this request's only if it names its internal port: under load the answer to an earlier
    // retransmission arrives late, and counting it would hide a request the kernel dropped
    for (let attempt = 0; attempt < 8 && !res; attempt++) {
      if (attempt > 0) retransmits++;
      c.send(req, port);
      const until = performance.now() + 250;
      for (let left = 250; left > 0 && !res; left = until - performance.now()) {
        const b = await c.next(left);
        if (!b) break;
        if (decodePcpResponse(b).map?.internalPort === basePort + i) res = b;
      }
    }
    if (res && decodePcpResponse(res).resultCode === ResultCode.SUCCESS) {
      answered++;
      latencies.push(performance.now() - t0);
    }
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return { answered, latencies, retransmits };
}

function udpDrops(port: number): number {
  // /proc/net/udp: local_address is hex IP:port, the last column counts datagrams dropped on that socket
  const want = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/udp', 'utf8').split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols[1]?.endsWith(want)) return Number(cols.at(-1));
  }
  return -1;
}

test('flood: 127.0.0.5 floods MAP at full speed for 3 s; 127.0.0.6 is served throughout; the flood is rate-limited and logged once', async (t) => {
  const cap = captureLog();
  // rate limits run on real time here (the harness's fixed clock would never refill a bucket)
  const h = await startPcp({ pcp: { rateLimit: 100 }, extra: { clock: createSystemClock(), log: cap.log } });
  const good = await udpClient('127.0.0.6');
  try {
    const calm = await serve(good, h.port, 40, 5, 20000);
    const floodRun = flood(h.port, '127.0.0.5', 3000);
    await new Promise((r) => setTimeout(r, 200)); // the flood is under way
    const busy = await serve(good, h.port, 60, 30, 21000);
    const f = await floodRun;
    const limited = await counter(h.env.metrics, 'portd_rate_limited_total', { frontend: 'pcp' });
    const fig = (s: { latencies: number[] }) =>
      `p50 ${percentile(s.latencies, 50).toFixed(2)} ms, p99 ${percentile(s.latencies, 99).toFixed(2)} ms`;
    t.diagnostic(`calm: ${calm.answered}/40 answered, ${fig(calm)}`);
    t.diagnostic(`under flood: ${busy.answered}/60 answered, ${fig(busy)}, ${busy.retransmits} retransmits`);
    t.diagnostic(
      `flood: ${f.sent} sent in 3 s (${Math.round(f.sent / 3)}/s), ${f.answers} answered, ${limited} ` +
        `rate-limited, kernel socket drops ${udpDrops(h.port)}`,
    );
    assert.equal(calm.answered, 40);
    assert.equal(busy.answered, 60, 'every request of the other client was answered');
    assert.ok(f.sent > 1000, 'the flood really flooded');
    // the flooder gets at most a burst plus the rate for the time it flooded (100 + 100/s × 3.5 s)
    assert.ok(f.answers <= 450, `flooder answered ${f.answers} times`);
    assert.ok(
      limited >= f.sent - f.answers - udpDrops(h.port),
      'every datagram not answered was rate-limited (or dropped by the kernel)',
    );
    assert.ok(limited > 0);
    assert.equal(cap.matching(/over rate limit/).length, 1, 'one log line for the whole flood');
    assert.equal(cap.matching(/over rate limit/)[0]!['client'], '127.0.0.5');
    assert.equal(h.env.table.list({ owner: '127.0.0.6' }).total, 100, 'all of its leases exist');
  } finally {
    good.close();
    await h.close();
  }
});

test('global limit: 20 spoofed-looking sources, each under pcp.rateLimit, together over limits.pcpRequestsPerSecond: the excess dropped, counted, logged once; probes still answered', async () => {
  const cap = captureLog();
  // the harness's fixed clock never refills a bucket: per-client burst 100, global burst 2 x 200 = 400, probes a bucket
  // of their own
  const h = await startPcp({ pcp: { rateLimit: 100 }, limits: { pcpRequestsPerSecond: 200 }, extra: { log: cap.log } });
  const senders = await Promise.all(Array.from({ length: 20 }, (_, i) => udpClient(`127.0.0.${20 + i}`)));
  const probe = await udpClient('127.0.0.99');
  try {
    const handled = async () =>
      (await counter(h.env.metrics, 'portd_requests_total')) +
      (await counter(h.env.metrics, 'portd_global_limit_total'));
    let sent = 0;
    // 30 MAP requests from each of 20 hosts = 600 (each host under its 100): in rounds, so no datagram is lost in the
    // socket buffer
    for (let round = 0; round < 30; round++) {
      for (const s of senders)
        s.send(mapRequest({ client: s.address, internalPort: 10000 + round, lifetime: 600 }), h.port);
      sent += senders.length;
      assert.ok(
        await until(async () => (await handled()) >= sent, 5000, 2),
        `server stalled at ${await handled()} of ${sent}`,
      );
    }
    let answers = 0;
    for (const s of senders) while (await s.next(50)) answers++;
    assert.equal(answers, 400, 'the global burst (2 x limits.pcpRequestsPerSecond) is answered, the rest is silence');
    assert.equal(h.env.table.countActive().total, 400, 'and only that many reached the lease table');
    assert.equal(await counter(h.env.metrics, 'portd_global_limit_total', { limit: 'pcpRequestsPerSecond' }), 200);
    assert.equal(
      await counter(h.env.metrics, 'portd_rate_limited_total', { frontend: 'pcp' }),
      0,
      'no host was over its own rate',
    );
    const warn = cap.matching(/global limit reached \(limits\.pcpRequestsPerSecond 200\); dropping/);
    assert.equal(warn.length, 1, 'one warn line for 200 drops');
    assert.equal(warn[0]!['level'], 40);
    // a client discovering the gateway: PCP ANNOUNCE and the NAT-PMP external address are answered during the flood
    const ann = decodePcpResponse(
      await probe.ask(
        encodePcpRequest({ version: 2, opcode: 0, lifetime: 0, clientAddress: '127.0.0.99', options: [] }),
        h.port,
      ),
    );
    assert.equal(ann.resultCode, ResultCode.SUCCESS);
    const addr = await probe.ask(Uint8Array.of(0, 0), h.port);
    assert.equal(addr.length, 12);
    assert.equal(addr[3], 0, 'NAT-PMP result 0');
    // its MAP, which needs the lease table, waits for the global bucket like everyone's
    probe.send(mapRequest({ client: '127.0.0.99', internalPort: 12000 }), h.port);
    assert.equal(await probe.next(300), null);
    assert.equal(await counter(h.env.metrics, 'portd_global_limit_total', { limit: 'pcpRequestsPerSecond' }), 201);
  } finally {
    for (const s of senders) s.close();
    probe.close();
    await h.close();
  }
});

test('PEER flood from many hosts: over limits.peerLookupsPerSecond NO_RESOURCES (short), conntrack asked only for the admitted, counted and logged once', async () => {
  const cap = captureLog();
  let lookups = 0;
  const conntrack: ConntrackApi = {
    async lookup() {
      lookups++;
      return { externalAddress: '203.0.113.1', externalPort: 62001, timeout: 30 };
    },
    async extend() {
      return true;
    },
  };
  const h = await startPcp({ limits: { peerLookupsPerSecond: 10 }, conntrack, extra: { log: cap.log } });
  const hosts = await Promise.all(Array.from({ length: 20 }, (_, i) => udpClient(`127.0.0.${60 + i}`)));
  try {
    const codes: number[] = [];
    for (let round = 0; round < 2; round++) {
      for (const c of hosts) {
        const req = encodePcpRequest({
          version: 2,
          opcode: 2,
          lifetime: 600,
          clientAddress: c.address,
          options: [],
          peer: {
            nonce: nonceFromHex('0102030405060708090a0b0c'),
            protocol: 17,
            internalPort: 40000 + round,
            externalPort: 0,
            externalAddress: '0.0.0.0',
            remotePort: 7000,
            remoteAddress: '203.0.113.2',
          },
        });
        const r = decodePcpResponse(await c.ask(req, h.port));
        codes.push(r.resultCode);
        if (r.resultCode === ResultCode.NO_RESOURCES) assert.equal(r.lifetime, 30, 'a short lifetime error');
      }
    }
    assert.equal(codes.filter((c) => c === ResultCode.SUCCESS).length, 10);
    assert.equal(codes.filter((c) => c === ResultCode.NO_RESOURCES).length, 30);
    assert.equal(lookups, 10, 'conntrack was asked only for the admitted requests');
    assert.equal(await counter(h.env.metrics, 'portd_global_limit_total', { limit: 'peerLookupsPerSecond' }), 30);
    assert.equal(cap.matching(/global limit reached \(limits\.peerLookupsPerSecond 10\)/).length, 1);
  } finally {
    for (const c of hosts) c.close();
    await h.close();
  }
});

test("main.ts wiring: limits.pcpRequestsPerSecond from the configuration caps the running daemon's PCP server", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'portd-pcp-limit-'));
  const free = createSocket('udp4');
  await new Promise<void>((r) => free.bind(0, '127.0.0.1', r));
  const port = free.address().port;
  await new Promise<void>((r) => free.close(() => r()));
  const portd = await startPortd(
    parseConfig(`
interfaces: { wan: lo, lan: [lo] }
externalAddress: 192.0.2.1
listenAddresses: [127.0.0.1]
stateDir: ${dir}
database: { path: ${join(dir, 'portd.sqlite')} }
dataplane: { driver: memory }
policy: { rules: ["allow 1024-65535 127.0.0.0/8 1024-65535"] }
upnp: { enabled: false }
pcp: { port: ${port}, rateLimit: 0 }
admin: { listen: "127.0.0.1:0" }
limits: { pcpRequestsPerSecond: 5 }
`),
    pino({ level: 'silent' }),
  );
  const c = await udpClient('127.0.0.1');
  try {
    for (let i = 0; i < 30; i++)
      c.send(mapRequest({ client: '127.0.0.1', internalPort: 20000 + i, lifetime: 600 }), port);
    let answers = 0;
    while (await c.next(300)) answers++;
    // a burst of 2 x 5, and the odd token the real clock refills while the 30 arrive
    assert.ok(answers >= 10 && answers <= 12, `${answers} of 30 answered`);
    assert.equal(
      await counter(portd.metrics, 'portd_global_limit_total', { limit: 'pcpRequestsPerSecond' }),
      30 - answers,
    );
  } finally {
    c.close();
    await portd.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
