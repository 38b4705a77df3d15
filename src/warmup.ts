/**
 * The request paths run before `portd ready`, against scratch state, so V8 has compiled them when the first
 * client comes (the `warmup` key: how many PCP MAPs, and as many SOAP AddPortMapping; 0 = none, the default).
 * Why it exists: over the first 2,000 PCP MAPs after a cold start portd spent 1,220 µs of CPU per request at
 * concurrency 1 against 640 µs once warm, 715 against 190 at concurrency 32. Why it is off by default: on the
 * bench it did not lower that figure (the cold cost is mostly outside the code it warms: the SQLite commit,
 * UDP sends, the netlink batch and the nftables driver), and it cost 1-3 s more to ready and 4-9 MiB of idle RSS
 * (docs/benchmarks.md, "Cold start").
 *
 * What runs: PCP and NAT-PMP requests (decode → policy → lease grant, renewal and release → encode) and UPnP
 * SOAP actions (parse → handler → XML answer) through the same factories the front-ends use, on a lease table of
 * its own: a `:memory:` database, the memory dataplane, its own metrics registry, a logger that writes nowhere.
 * Nothing of it reaches the real table, the kernel, the metrics or the log, and all of it is closed before this
 * returns; V8 keeps only what it compiled (code and type feedback are shared by every instance a factory makes).
 */
import { Writable } from 'node:stream';
import type { Config } from './config/types.js';
import { createMemoryDataplane } from './dataplane/memory.js';
import { createPcpHandler } from './frontends/pcp/index.js';
import { createActionHandler } from './frontends/upnp/actions.js';
import { buildDeviceSet } from './frontends/upnp/devices.js';
import { generateUuids } from './frontends/upnp/index.js';
import { createSystemClock } from './leases/clock.js';
import { createLeaseTable } from './leases/table.js';
import { createLogger } from './logger.js';
import { createMetrics } from './metrics.js';
import { createPolicy } from './policy/policy.js';
import { encodeNatPmpRequest, encodePcpRequest } from '../protocols/pcp/index.js';
import { ServiceType, decodeSoapRequest, encodeSoapFault, encodeSoapResponse } from '../protocols/upnp/index.js';

export interface WarmupOptions {
  readonly config: Config;
  /**
   * PCP MAPs to run (half of them are then renewed or deleted), and as many UPnP AddPortMapping when UPnP is on
   * (a quarter of them deleted); 0 = no warm-up
   */
  readonly requests: number;
  /** stop early past this much wall time (a slow machine must not hold `portd ready` back for long) */
  readonly budgetMs: number;
}

export interface WarmupResult {
  readonly pcp: number;
  readonly soap: number;
  /** of those, the ones answered with success (the rest took the refusal paths: a check that the paths ran) */
  readonly succeeded: number;
  readonly ms: number;
}

/** RFC 2544's benchmarking network: scratch client addresses that are nobody's */
const client = (i: number) => `198.18.${(i >> 8) & 0xff}.${i & 0xff}`;
const CLIENTS = 64;
/** as many requests in flight as a busy LAN sends: the writer then gathers them into ticks of many jobs */
const BURST = 32;

export async function warmUp(opts: WarmupOptions): Promise<WarmupResult> {
  const t0 = performance.now();
  const { config } = opts;
  // only the paths of the front-ends that will run
  if (opts.requests <= 0 || !(config.pcp.enabled || config.natpmp.enabled || config.upnp.enabled))
    return { pcp: 0, soap: 0, succeeded: 0, ms: 0 };
  const sink = new Writable({
    write(_chunk, _encoding, done) {
      done();
    },
  });
  const log = createLogger('info', { destination: sink });
  const clock = createSystemClock();
  const policy = createPolicy({ ...config.policy, rules: [], maxLeasesPerClient: 1 << 30 });
  const leases = createLeaseTable({
    database: { path: ':memory:' },
    dataplane: createMemoryDataplane(),
    policy,
    clock,
    log,
    metrics: createMetrics(),
    externalAddress: '192.0.2.1',
    grace: config.dataplane.grace,
    historyRetention: config.policy.historyRetention,
    portInUse: () => false,
    triggerPort: () => null,
    maxActiveLeases: 0,
    // ended leases leave the scratch table soon (the prune path runs too)
    maxEndedLeases: BURST,
  });
  const handler = createPcpHandler({
    config: {
      pcp: { ...config.pcp, thirdParty: [] },
      natpmp: config.natpmp,
      policy: config.policy,
      limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0 },
    },
    leases,
    log,
    conntrack: null,
    epoch: () => Math.floor((clock.now() - t0) / 1000),
    now: () => clock.now(),
  });
  const lifetime = Math.min(3600, config.policy.lifetime.pcp.max);
  const map = (i: number, life: number) =>
    encodePcpRequest({
      version: 2,
      opcode: 1,
      lifetime: life,
      clientAddress: client(i % CLIENTS),
      options: [],
      map: {
        nonce: nonce(i),
        protocol: i % 2 === 0 ? 6 : 17,
        internalPort: 10_000 + (i >> 1),
        externalPort: 10_000 + (i >> 1),
        externalAddress: '0.0.0.0',
      },
    });
  let answered = 0;
  const pcp = async (i: number, life: number) => {
    if ((await handler.handle(map(i, life), client(i % CLIENTS))).result === 'SUCCESS') answered++;
  };
  let pcpDone = 0;
  let soapDone = 0;
  let soapOk = 0;
  const over = () => performance.now() - t0 > opts.budgetMs;
  try {
    // rounds of BURST mappings: made one at a time (one job per writer tick) or all at once (ticks of many jobs),
    // half of them renewed, then all deleted, so the scratch table never holds more than BURST leases (its memory
    // goes back to the allocator in small pieces: a large scratch table left idle RSS several MiB higher)
    const pcpCount = config.pcp.enabled ? opts.requests : 0;
    for (let i = 0; i < pcpCount && !over(); i += BURST) {
      const n = Math.min(BURST, pcpCount - i);
      const each = (f: (k: number) => Promise<void>) => Promise.all(Array.from({ length: n }, (_, k) => f(k)));
      if ((i / BURST) % 2 === 0) for (let k = 0; k < n; k++) await pcp(i + k, lifetime);
      else await each((k) => pcp(i + k, lifetime));
      await each((k) => (k % 2 === 0 ? pcp(i + k, lifetime) : Promise.resolve()));
      await each((k) => pcp(i + k, 0));
      pcpDone += n + Math.ceil(n / 2) + n;
    }
    const made = opts.requests;
    // NAT-PMP (RFC 6886 §3.3) shares the handler and the table: a few hundred of its MAPs, each deleted again
    const natPmpCount = config.natpmp.enabled ? Math.min(made / 4, 256) : 0;
    for (let i = 0; i < natPmpCount && !over(); i++) {
      for (const life of [lifetime, 0]) {
        const packet = encodeNatPmpRequest({
          opcode: 2,
          internalPort: 40_000 + i,
          externalPort: 40_000 + i,
          lifetime: life,
        });
        if ((await handler.handle(packet, client(CLIENTS + (i % CLIENTS)))).result === 'SUCCESS') answered++;
        pcpDone++;
      }
    }
    if (config.upnp.enabled) soapDone = await soap(opts.requests, over);
  } finally {
    await leases.close();
  }
  return { pcp: pcpDone, soap: soapDone, succeeded: answered + soapOk, ms: Math.round(performance.now() - t0) };

  /** what the UPnP control URL does with a request once fastify has its body: parse, act, answer */
  async function soap(count: number, stop: () => boolean): Promise<number> {
    const info = { friendlyName: 'warm-up', manufacturer: 'portd', modelName: 'portd', presentationURL: null };
    const devices = buildDeviceSet(generateUuids(), info, 1);
    const actions = createActionHandler({
      config,
      leases,
      log,
      now: () => clock.now(),
      startedAt: clock.now(),
      connectionStatus: () => 'Connected',
      wanStats: () => ({ bytesSent: 0, bytesReceived: 0, packetsSent: 0, packetsReceived: 0 }),
      linkBitRates: { up: 1, down: 1 },
    });
    const endpoints = [...devices.control.values()].filter((e) => e.service.type === ServiceType.WAN_IP_CONNECTION);
    let n = 0;
    for (let i = 0; i < count && !stop(); i++) {
      const ep = endpoints[i % endpoints.length]!;
      const urn = `urn:schemas-upnp-org:service:WANIPConnection:${ep.service.version}`;
      // every other request deletes the mapping the one before it made
      const del = i % 2 === 1;
      const j = del ? i - 1 : i;
      const port = 20_000 + j;
      const host = client(2 * CLIENTS + (j % CLIENTS));
      const args = del
        ? `<NewRemoteHost></NewRemoteHost><NewExternalPort>${port}</NewExternalPort><NewProtocol>TCP</NewProtocol>`
        : `<NewRemoteHost></NewRemoteHost><NewExternalPort>${port}</NewExternalPort><NewProtocol>TCP</NewProtocol>` +
          `<NewInternalPort>${port}</NewInternalPort><NewInternalClient>${host}</NewInternalClient>` +
          '<NewEnabled>1</NewEnabled><NewPortMappingDescription>warm-up</NewPortMappingDescription>' +
          '<NewLeaseDuration>3600</NewLeaseDuration>';
      const action = del ? 'DeletePortMapping' : 'AddPortMapping';
      const body =
        '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
        's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">' +
        `<s:Body><u:${action} xmlns:u="${urn}">${args}</u:${action}></s:Body></s:Envelope>`;
      const call = decodeSoapRequest(body, `"${urn}#${action}"`);
      const res = await actions.handle({
        endpoint: ep,
        version: call.version,
        action: call.action,
        args: call.args,
        client: host,
      });
      if (res.ok) {
        encodeSoapResponse(call.serviceUrn, call.action, res.out);
        soapOk++;
      } else encodeSoapFault(res.code);
      n++;
    }
    return n;
  }
}

/** a distinct 12-byte nonce per mapping (RFC 6887 §11.1) */
function nonce(i: number): Uint8Array {
  const b = new Uint8Array(12);
  new DataView(b.buffer).setUint32(8, i + 1);
  return b;
}
