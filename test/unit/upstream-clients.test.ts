/**
 * The upstream clients' pieces that need no network: the epoch check (RFC 6887 §8.5), the default gateway
 * from /proc/net/route, the result-code tables, and the IGD description reader against hostile input.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { NatPmpResultCode, ResultCode } from '../../protocols/pcp/index.js';
import { defaultGateway } from '../../src/upstream/connect.js';
import { createEpochTracker } from '../../src/upstream/epoch.js';
import { refusalForNatPmp } from '../../src/upstream/natpmp-client.js';
import { refusalForPcp } from '../../src/upstream/pcp-client.js';
import { findControl, refusalForUpnp } from '../../src/upstream/upnp-client.js';

describe('upstream epoch check', () => {
  test('steady progress is not a reset; backwards or a jump is', () => {
    const e = createEpochTracker();
    assert.equal(e.lost(100, 0), false, 'the first answer sets the base');
    assert.equal(e.lost(110, 10_000), false);
    assert.equal(e.lost(109, 10_500), false, 'one second of slack (§8.5)');
    assert.equal(e.lost(3, 11_000), true, 'went backwards: the server restarted');
    assert.equal(e.lost(4, 12_000), false, 'the new base');
    assert.equal(e.lost(500, 13_000), true, 'ran ahead of our clock: a restart we missed');
  });
});

describe('default gateway of the WAN interface', () => {
  test('read from /proc/net/route (little-endian hex), only for that interface', () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-route-'));
    const f = join(dir, 'route');
    writeFileSync(
      f,
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n' +
        'br0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n' +
        'wan0\t004D4064\t00000000\t0001\t0\t0\t0\t00FFFFFF\n' +
        'wan0\t00000000\t014D4064\t0003\t0\t0\t0\t00000000\n',
    );
    assert.equal(defaultGateway('wan0', f), '100.64.77.1');
    assert.equal(defaultGateway('br0', f), '192.168.1.1');
    assert.equal(defaultGateway('eth9', f), null);
    assert.equal(defaultGateway('wan0', join(dir, 'missing')), null);
    rmSync(dir, { recursive: true, force: true });
  });
});

describe('upstream result codes → neutral refusals (docs/double-nat.md table)', () => {
  test('PCP', () => {
    assert.equal(refusalForPcp(ResultCode.NOT_AUTHORIZED), 'not_authorized');
    assert.equal(refusalForPcp(ResultCode.CANNOT_PROVIDE_EXTERNAL), 'cannot_provide_external');
    assert.equal(refusalForPcp(ResultCode.NO_RESOURCES), 'no_resources');
    assert.equal(refusalForPcp(ResultCode.USER_EX_QUOTA), 'no_resources');
    assert.equal(refusalForPcp(ResultCode.NETWORK_FAILURE), 'unavailable');
    assert.equal(refusalForPcp(ResultCode.UNSUPP_VERSION), 'not_authorized');
  });
  test('NAT-PMP', () => {
    assert.equal(refusalForNatPmp(NatPmpResultCode.NOT_AUTHORIZED), 'not_authorized');
    assert.equal(refusalForNatPmp(NatPmpResultCode.OUT_OF_RESOURCES), 'no_resources');
    assert.equal(refusalForNatPmp(NatPmpResultCode.NETWORK_FAILURE), 'unavailable');
  });
  test('UPnP', () => {
    assert.equal(refusalForUpnp(606), 'not_authorized');
    assert.equal(refusalForUpnp(718), 'cannot_provide_external');
    assert.equal(refusalForUpnp(729), 'cannot_provide_external');
    assert.equal(refusalForUpnp(728), 'no_resources');
    assert.equal(refusalForUpnp(501), 'unavailable');
    assert.equal(refusalForUpnp(402), 'not_authorized');
  });
});

describe('IGD description reader', () => {
  const base = new URL('http://100.64.77.1:5000/rootDesc.xml');
  const desc = (control: string, type = 'urn:schemas-upnp-org:service:WANIPConnection:1', pre = '') =>
    `<?xml version="1.0"?>${pre}<root xmlns="urn:schemas-upnp-org:device-1-0"><device><deviceList><device>` +
    `<serviceList><service><serviceType>${type}</serviceType><controlURL>${control}</controlURL></service>` +
    '</serviceList></device></deviceList></device></root>';

  test("finds the connection service's control URL, relative to the description", () => {
    const c = findControl(desc('/ctl/IPConn'), base);
    assert.equal(c?.control.href, 'http://100.64.77.1:5000/ctl/IPConn');
    assert.equal(c?.serviceType, 'urn:schemas-upnp-org:service:WANIPConnection:1');
    assert.equal(
      findControl(desc('/ppp', 'urn:schemas-upnp-org:service:WANPPPConnection:1'), base)?.serviceType,
      'urn:schemas-upnp-org:service:WANPPPConnection:1',
    );
  });

  test('hostile descriptions: a control URL elsewhere, a DOCTYPE, junk, no connection service', () => {
    assert.equal(findControl(desc('http://192.0.2.66/ctl'), base), null, 'no redirection to another host');
    assert.equal(findControl(desc('file:///etc/passwd'), base), null);
    assert.equal(findControl(desc('/ctl', undefined, '<!DOCTYPE x [<!ENTITY a "b">]>'), base), null);
    assert.equal(findControl('<root><unclosed>', base), null);
    assert.equal(findControl(desc('/ctl', 'urn:schemas-upnp-org:service:Layer3Forwarding:1'), base), null);
    assert.equal(findControl('\u0000'.repeat(100), base), null);
  });
});
