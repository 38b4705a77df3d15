/**
 * Real UPnP clients against portd on loopback, through the real lease table (memory dataplane):
 * Debian's upnpc (miniupnpc 2.2), npm nat-upnp (IGD:1 only) and npm @achingbrain/nat-port-mapper
 * (IGD:2 only). A mapping made by one is listed by the others.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, before, test } from 'node:test';
import { upnpNat } from '@achingbrain/nat-port-mapper';
import { EXTERNAL, run, startUpnp, type UpnpHarness } from './upnp-helpers.js';

const require = createRequire(import.meta.url);
// nat-upnp is CommonJS without types: its device module runs SOAP against a description URL
const natUpnp = require('nat-upnp') as {
  createClient(): NatUpnpClient;
  device: { create(url: string): unknown };
};
interface NatUpnpClient {
  findGateway(cb: (err: Error | null, gateway?: unknown, address?: string) => void): void;
  portMapping(o: object, cb: (err: Error | null, r?: unknown) => void): void;
  portUnmapping(o: object, cb: (err: Error | null, r?: unknown) => void): void;
  getMappings(cb: (err: Error | null, r?: NatUpnpMapping[]) => void): void;
  externalIp(cb: (err: Error | null, ip?: string) => void): void;
  close(): void;
}
interface NatUpnpMapping {
  public: { port: number };
  private: { host: string; port: number };
  protocol: string;
  description: string;
  ttl: number;
}

const hasUpnpc = (await run('sh', ['-c', 'command -v upnpc'])).code === 0;

let h: UpnpHarness;
let natClient: NatUpnpClient;
before(async () => {
  h = await startUpnp();
  natClient = natUpnp.createClient();
  // skip SSDP (no multicast on loopback): hand the IGD:1 description URL to the library's own device code
  natClient.findGateway = (cb) => cb(null, natUpnp.device.create(h.descV1), '127.0.0.1');
});
after(async () => {
  natClient?.close();
  await h?.close();
});

const cb = <T>(fn: (cb: (e: Error | null, r?: T) => void) => void) =>
  new Promise<T>((resolve, reject) => fn((e, r) => (e ? reject(e) : resolve(r as T))));

function upnpcRows(stdout: string): { proto: string; ext: number; internal: string; desc: string; lease: number }[] {
  const rows = [];
  for (const m of stdout.matchAll(/^\s*\d+\s+(TCP|UDP)\s+(\d+)->([\d.]+:\d+)\s+'([^']*)'\s+'[^']*'\s+(\d+)/gm)) {
    rows.push({ proto: m[1]!, ext: Number(m[2]), internal: m[3]!, desc: m[4]!, lease: Number(m[5]) });
  }
  return rows;
}

const active = () => h.env.table.list({ state: 'active' }).leases;

test('upnpc -s on both description URLs', { skip: !hasUpnpc && 'upnpc not installed' }, async () => {
  for (const url of [h.descV1, h.descV2]) {
    const r = await run('upnpc', ['-u', url, '-s']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Found valid IGD/);
    assert.match(r.stdout, /Connection Type : IP_Routed/);
    assert.match(r.stdout, /Status : Connected/);
    assert.match(r.stdout, new RegExp(`ExternalIPAddress = ${EXTERNAL.replace(/\./g, '\\.')}`));
    // the test's WAN counters: 2^32 + 5 bytes sent wraps to 5 (ui4)
    assert.match(r.stdout, /Bytes:\s+Sent:\s+5\s+Recv:\s+1234/);
  }
});

test('upnpc -a / -l / -L / -d against IGD:2, and -a with lease 0 against IGD:1 is capped, not refused', {
  skip: !hasUpnpc && 'upnpc not installed',
}, async () => {
  let r = await run('upnpc', ['-u', h.descV2, '-e', 'upnpc-v2', '-a', '127.0.0.1', '8080', '18080', 'TCP', '3600']);
  assert.match(
    r.stdout,
    /external 203\.0\.113\.1:18080 TCP is redirected to internal 127\.0\.0\.1:8080 \(duration=3600\)/,
  );
  const lease = h.env.table.findByExternal('tcp', 18080);
  assert.equal(lease?.source, 'upnp');
  assert.equal(lease?.owner, '127.0.0.1');
  assert.equal(lease?.internalPort, 8080);
  assert.equal(lease?.description, 'upnpc-v2');
  assert.equal(h.env.dataplane.entries.size, 1);

  r = await run('upnpc', ['-u', h.descV1, '-a', '127.0.0.1', '8081', '18081', 'UDP', '0']);
  assert.match(
    r.stdout,
    /external 203\.0\.113\.1:18081 UDP is redirected to internal 127\.0\.0\.1:8081 \(duration=604800\)/,
  );
  const perm = h.env.table.findByExternal('udp', 18081)!;
  assert.equal(perm.requestedLifetime, 0, 'a v1 "permanent" request stays visible as such');
  assert.equal(perm.expiresAt, h.env.clock.now() + 604800 * 1000, 'capped at policy.lifetime.upnp.max');

  r = await run('upnpc', ['-u', h.descV1, '-l']);
  assert.deepEqual(
    upnpcRows(r.stdout)
      .map((x) => `${x.proto} ${x.ext} ${x.internal}`)
      .sort(),
    ['TCP 18080 127.0.0.1:8080', 'UDP 18081 127.0.0.1:8081'],
  );
  r = await run('upnpc', ['-u', h.descV2, '-L']);
  assert.deepEqual(
    upnpcRows(r.stdout).map((x) => `${x.proto} ${x.ext} ${x.desc} ${x.lease}`),
    ['TCP 18080 upnpc-v2 3600', 'UDP 18081 libminiupnpc 604800'],
  );

  r = await run('upnpc', ['-u', h.descV2, '-d', '18080', 'TCP']);
  assert.match(r.stdout, /UPNP_DeletePortMapping\(\) returned : 0/);
  r = await run('upnpc', ['-u', h.descV1, '-d', '18081', 'UDP']);
  assert.match(r.stdout, /UPNP_DeletePortMapping\(\) returned : 0/);
  assert.equal(active().length, 0);
  assert.equal(h.env.dataplane.entries.size, 0);
  // deleting again: 714 NoSuchEntryInArray
  r = await run('upnpc', ['-u', h.descV2, '-d', '18080', 'TCP']);
  assert.match(r.stdout, /714/);
});

test('upnpc -r maps ports for the calling host; repeating it renews instead of conflicting', {
  skip: !hasUpnpc && 'upnpc not installed',
}, async () => {
  for (let i = 0; i < 2; i++) {
    const r = await run('upnpc', ['-u', h.descV2, '-r', '9100', '19100', 'TCP', '9101', 'UDP']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /19100 TCP is redirected to internal 127\.0\.0\.1:9100/);
    assert.match(r.stdout, /9101 UDP is redirected to internal 127\.0\.0\.1:9101/);
  }
  assert.equal(active().filter((l) => [19100, 9101].includes(l.externalPort)).length, 2);
  for (const [port, proto] of [
    ['19100', 'TCP'],
    ['9101', 'UDP'],
  ] as const)
    await run('upnpc', ['-u', h.descV2, '-d', port, proto]);
  assert.equal(active().length, 0);
});

test('a mapping made by one client is listed by the others', { skip: !hasUpnpc && 'upnpc not installed' }, async () => {
  // nat-upnp (IGD:1, AddPortMapping on WANIPConnection:1)
  await cb((c) =>
    natClient.portMapping({ public: 19000, private: 9000, protocol: 'udp', ttl: 600, description: 'by-nat-upnp' }, c),
  );
  assert.equal(await cb<string>((c) => natClient.externalIp(c)), EXTERNAL);
  // nat-port-mapper (IGD:2, AddAnyPortMapping on WANIPConnection:2)
  const gw = await upnpNat({ autoRefresh: false }).getGateway(new URL(h.descV2));
  const m = await gw.map(7000, '127.0.0.1', {
    protocol: 'tcp',
    ttl: 7200_000,
    autoRefresh: false,
    description: 'by-nat-port-mapper',
  });
  assert.equal(m.externalPort, 7000);
  assert.equal(m.externalHost, EXTERNAL);
  // upnpc (IGD:1 description this time)
  await run('upnpc', ['-u', h.descV1, '-e', 'by-upnpc', '-a', '127.0.0.1', '8000', '18000', 'TCP', '1200']);

  const want = ['TCP 18000 by-upnpc', 'TCP 7000 by-nat-port-mapper', 'UDP 19000 by-nat-upnp'];
  const viaUpnpc = upnpcRows((await run('upnpc', ['-u', h.descV2, '-l'])).stdout)
    .map((x) => `${x.proto} ${x.ext} ${x.desc}`)
    .sort();
  assert.deepEqual(viaUpnpc, want);
  const viaList = upnpcRows((await run('upnpc', ['-u', h.descV2, '-L'])).stdout)
    .map((x) => `${x.proto} ${x.ext} ${x.desc}`)
    .sort();
  assert.deepEqual(viaList, want);
  const viaNat = (await cb<NatUpnpMapping[]>((c) => natClient.getMappings(c)))
    .map((x) => `${x.protocol.toUpperCase()} ${x.public.port} ${x.description}`)
    .sort();
  assert.deepEqual(viaNat, want);
  assert.equal(h.env.dataplane.entries.size, 3);

  // each deletes another's: nat-port-mapper's unmap sends an empty NewProtocol (QUIRKS.md)
  await gw.unmap(7000);
  assert.equal(h.env.table.findByExternal('tcp', 7000), null);
  await cb((c) => natClient.portUnmapping({ public: 18000, protocol: 'tcp' }, c));
  const r = await run('upnpc', ['-u', h.descV2, '-d', '19000', 'UDP']);
  assert.match(r.stdout, /returned : 0/);
  assert.equal(active().length, 0);
  assert.equal(h.env.dataplane.entries.size, 0);
});
