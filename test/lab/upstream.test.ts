/**
 * Chaining upstream in the three-tier lab (test/lab/upstream-lab.ts): LAN host → portd (the gateway, WAN
 * 100.64.77.2) → an upstream NAT in its own namespace → the Internet host. For each upstream a LAN client
 * maps a port; its answer names the public endpoint; the Internet host reaches the LAN host through both NATs
 * on that endpoint; the admin API shows the upstream mapping per lease; an upstream that restarts without its
 * state gets the mapping back; a delete closes both NATs.
 *
 * Upstreams: portd itself over PCP; Debian's miniupnpd (miniupnpd-nftables) over PCP, NAT-PMP and UPnP IGD,
 * with miniupnpd's addressing (it refuses documentation WAN addresses). Root only; under CI=true a missing
 * tool or package fails, never skips. ≈ 60-90 s in all.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { decodePcpResponse, encodePcpRequest, nonceFromHex, ResultCode } from '../../protocols/pcp/index.js';
import { labSkip, type Agent, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';
import { createUpstreamLab, IF3, type UpstreamLab } from './upstream-lab.js';

const TOKEN = 'lab-token-0123456789';
const FAIL_MS = 700;
const labSkipped = labSkip('upstream');

function gatewayConfig(dir: string, upstream: string): string {
  return (
    [
      'logLevel: info',
      'interfaces: { wan: wan0, lan: [br0] }',
      'externalAddress: auto',
      `stateDir: ${dir}`,
      `database: { path: ${join(dir, 'gw.sqlite')} }`,
      'dataplane: { driver: nftables, table: portd, hairpin: true, reconcileInterval: 5 }',
      'policy:',
      '  secureMode: true',
      '  lifetime: { pcp: { min: 2, max: 86400 }, natpmp: { min: 2, max: 86400 }, upnp: { min: 1, max: 604800 } }',
      '  rules: ["allow 1024-65535 192.168.77.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
      'upnp: { enabled: true, httpPort: 5000, ssdp: true }',
      'pcp: { rateLimit: 0 }',
      `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
      `upstream: ${upstream}`,
    ].join('\n') + '\n'
  );
}

/** portd as the upstream NAT: its LAN is the gateway's WAN (100.64.77.0/24) */
function upstreamPortdConfig(dir: string): string {
  return (
    [
      'logLevel: info',
      `interfaces: { wan: ${IF3.upWan}, lan: [${IF3.upLan}] }`,
      'externalAddress: auto',
      `stateDir: ${dir}`,
      `database: { path: ${join(dir, 'up.sqlite')} }`,
      'dataplane: { driver: nftables, table: portd, hairpin: false, reconcileInterval: 5 }',
      'policy:',
      '  secureMode: true',
      '  rules: ["allow 1024-65535 100.64.77.0/24 1024-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
      'upnp: { enabled: false }',
      'pcp: { rateLimit: 0 }',
      `admin: { listen: "127.0.0.1:8080", token: "${TOKEN}" }`,
    ].join('\n') + '\n'
  );
}

/** the PCP client the tests drive: one MAP from hostA, the decoded answer */
async function pcpMap(
  host: Agent,
  gw: string,
  client: string,
  o: { internalPort: number; externalPort: number; lifetime: number; nonce: string },
) {
  const hex = Buffer.from(
    encodePcpRequest({
      version: 2,
      opcode: 1,
      lifetime: o.lifetime,
      clientAddress: client,
      options: [],
      map: {
        nonce: nonceFromHex(o.nonce),
        protocol: 6,
        internalPort: o.internalPort,
        externalPort: o.externalPort,
        externalAddress: '0.0.0.0',
      },
    }),
  ).toString('hex');
  const r = await host.call('udpBytes', { host: gw, port: 5351, hex, timeoutMs: 4000 });
  assert.ok(r.ok, JSON.stringify(r));
  return decodePcpResponse(Buffer.from(String(r.reply), 'hex'));
}

interface LeaseJson {
  id: string;
  externalPort: number;
  internalPort: number;
  upstream: {
    state: string;
    protocol: string;
    server: string;
    externalAddress: string | null;
    externalPort: number | null;
  } | null;
}

async function leasesOf(portd: PortdProcess): Promise<LeaseJson[]> {
  const r = await portd.api('/api/v1/leases', TOKEN);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return (r.body as { leases: LeaseJson[] }).leases;
}

async function until<T>(what: string, ms: number, fn: () => Promise<T | null | false>): Promise<T> {
  const end = Date.now() + ms;
  let last: T | null | false = null;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${ms} ms`);
}

describe('chaining upstream to portd over PCP (three tiers)', { skip: labSkipped, timeout: 180_000 }, () => {
  let lab: UpstreamLab;
  let dir: string;
  let gw: PortdProcess;
  let up: PortdProcess;
  let hostA: Agent, inet: Agent;
  const nonce = 'c0ffee00c0ffee00c0ffee00';

  before(async () => {
    lab = await createUpstreamLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-upstream-'));
    mkdirSync(join(dir, 'up'));
    mkdirSync(join(dir, 'gw'));
    const verbose = process.env['LAB_LOG'] === 'portd';
    up = new PortdProcess({
      lab: { ...lab.base, gw: lab.upstream } as Lab,
      dir: join(dir, 'up'),
      config: upstreamPortdConfig(join(dir, 'up')),
      verbose,
    });
    await up.start();
    gw = new PortdProcess({
      lab: lab.base,
      dir: join(dir, 'gw'),
      config: gatewayConfig(join(dir, 'gw'), '{ mode: pcp, server: 100.64.77.1, timeout: 1500, probeInterval: 2 }'),
      verbose,
    });
    await gw.start();
    hostA = await lab.agent(lab.lanA, 'hostA');
    inet = await lab.agent(lab.internet, 'inet');
    assert.ok((await hostA.listen('tcp', 9001)).ok);
  });

  after(async () => {
    await gw?.stop();
    await up?.stop();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a PCP MAP from the LAN is answered with the public endpoint; the Internet host gets through both NATs', async () => {
    assert.equal((await inet.tcpProbe(lab.addr.upWan, 8001, { timeoutMs: FAIL_MS })).ok, false, 'closed before');
    const res = await pcpMap(hostA, lab.addr.gwLan, lab.addr.hostA, {
      internalPort: 9001,
      externalPort: 8001,
      lifetime: 600,
      nonce,
    });
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.map?.externalAddress, lab.addr.upWan, 'the public address, not the gateway WAN 100.64.77.2');
    const port = res.map!.externalPort;
    assert.equal(port, 8001);
    const t = await inet.tcpProbe(lab.addr.upWan, port, { data: 'hello' });
    assert.ok(t.ok, t.error);
    assert.equal(t.reply, `hostA|${lab.addr.internet}|hello`);
    // the upstream's kernel maps the public port to the gateway's WAN address
    assert.match(
      await lab.must(lab.upstream, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
      /tcp \. 8001 [^:]*: 100\.64\.77\.2 \. 8001/,
    );
  });

  test('the admin API shows the upstream mapping of the lease', async () => {
    const l = (await leasesOf(gw)).find((x) => x.internalPort === 9001);
    assert.ok(l, 'lease listed');
    assert.equal(l.upstream?.state, 'active');
    assert.equal(l.upstream?.protocol, 'pcp');
    assert.equal(l.upstream?.server, lab.addr.upLan);
    assert.equal(l.upstream?.externalAddress, lab.addr.upWan);
    assert.equal(l.upstream?.externalPort, 8001);
    const one = await gw.api(`/api/v1/leases/${l.id}`, TOKEN);
    assert.equal((one.body as { lease: LeaseJson }).lease.upstream?.state, 'active');
  });

  test('an upstream that restarts without its state gets the mapping back (epoch reset)', async () => {
    const from = gw.logs.length;
    await up.kill9();
    await lab.must(lab.upstream, ['nft', 'delete', 'table', 'inet', 'portd']);
    rmSync(join(dir, 'up', 'up.sqlite'), { force: true });
    rmSync(join(dir, 'up', 'up.sqlite-wal'), { force: true });
    rmSync(join(dir, 'up', 'up.sqlite-shm'), { force: true });
    assert.equal((await inet.tcpProbe(lab.addr.upWan, 8001, { timeoutMs: FAIL_MS })).ok, false, 'gone with the state');
    await up.start();
    await until('the mapping re-created upstream', 20_000, async () =>
      /tcp \. 8001 [^:]*: 100\.64\.77\.2 \. 8001/.test(
        (await lab.exec(lab.upstream, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4'])).stdout,
      ),
    );
    const t = await inet.tcpProbe(lab.addr.upWan, 8001, { data: 'again' });
    assert.ok(t.ok, t.error);
    assert.ok(
      gw.since(from).some((l) => /re-creating/.test(l.msg)),
      'the gateway logged why it re-created the mappings',
    );
  });

  test('a delete (lifetime 0) closes both NATs', async () => {
    const res = await pcpMap(hostA, lab.addr.gwLan, lab.addr.hostA, {
      internalPort: 9001,
      externalPort: 8001,
      lifetime: 0,
      nonce,
    });
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    await until(
      'the upstream mapping deleted',
      5000,
      async () =>
        !/tcp \. 8001 /.test((await lab.exec(lab.upstream, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4'])).stdout),
    );
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']), /tcp \. 8001 /);
    assert.equal((await inet.tcpProbe(lab.addr.upWan, 8001, { timeoutMs: FAIL_MS })).ok, false);
  });
});
