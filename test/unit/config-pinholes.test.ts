/**
 * Static IPv6 pinholes in the configuration (issue 15 item 7): `staticForwards` entries whose internal
 * address is a bracketed IPv6 one; errors name the key and say what is expected; the lease table opens
 * them as family-6 leases.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/index.js';
import { makeTable } from '../helpers/leases.js';

function problems(doc: unknown): string[] {
  try {
    validateConfig(doc);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.issues.map((i) => `${i.path}: ${i.message}`);
  }
  return [];
}
function hasProblem(doc: unknown, path: string, fragment: string | RegExp): void {
  const ps = problems(doc);
  const hit = ps.find(
    (p) => p.startsWith(`${path}: `) && (typeof fragment === 'string' ? p.includes(fragment) : fragment.test(p)),
  );
  assert.ok(hit, `expected a problem at ${path} mentioning ${String(fragment)}; got:\n${ps.join('\n')}`);
}
const sf = (...f: Record<string, unknown>[]): unknown => ({ staticForwards: f });

const toDispose: { dispose(): Promise<void> }[] = [];
after(async () => {
  for (const t of toDispose) await t.dispose();
});

describe('static pinholes in staticForwards', () => {
  test('"[address]:port": a family-6 forward with the canonical address and no translation', () => {
    const c = validateConfig(
      sf({ protocol: 'tcp', internal: '[2001:DB8:77:0::10]:443', remoteHost: '2001:db8:113:0::7', description: 'web' }),
    );
    assert.deepEqual(c.staticForwards, [
      {
        family: 6,
        protocol: 'tcp',
        externalPort: 443,
        externalPortEnd: 443,
        internalAddress: '2001:db8:77::10',
        internalPort: 443,
        remoteAddress: '2001:db8:113::7',
        description: 'web',
      },
    ]);
  });

  test('a range from externalPort, both protocols; reserved ports are the gateway’s, not the host’s', () => {
    const c = validateConfig(sf({ protocol: 'both', externalPort: '6000-6010', internal: '[fd00:77::10]' }));
    assert.deepEqual(
      c.staticForwards.map((f) => [f.family, f.protocol, f.externalPort, f.externalPortEnd, f.internalPort]),
      [
        [6, 'tcp', 6000, 6010, 6000],
        [6, 'udp', 6000, 6010, 6000],
      ],
    );
    // 443 is in policy.reservedPorts by default: an IPv4 forward of it is refused, a pinhole is not
    assert.equal(problems(sf({ protocol: 'tcp', internal: '[2001:db8:77::10]:443' })).length, 0);
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 443, internal: '192.168.1.2' }),
      'staticForwards[0].externalPort',
      'reserved',
    );
  });

  test('bad pinholes are refused with the key and the reason', () => {
    hasProblem(
      sf({ protocol: 'tcp', internal: '[fe80::10]:443' }),
      'staticForwards[0].internal',
      /link-local: routers do not forward it/,
    );
    hasProblem(sf({ protocol: 'tcp', internal: '[ff02::1]:443' }), 'staticForwards[0].internal', /multicast/);
    hasProblem(sf({ protocol: 'tcp', internal: '[::1]:443' }), 'staticForwards[0].internal', /loopback/);
    hasProblem(
      sf({ protocol: 'tcp', internal: '[2001:db8::zz]:443' }),
      'staticForwards[0].internal',
      'not an IPv6 address',
    );
    hasProblem(sf({ protocol: 'tcp', internal: '[2001:db8:77::10]' }), 'staticForwards[0].internal', 'needs a port');
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 8443, internal: '[2001:db8:77::10]:443' }),
      'staticForwards[0].internal',
      'no translation',
    );
    hasProblem(sf({ protocol: 'tcp', internal: '2001:db8:77::10' }), 'staticForwards[0].internal', 'in brackets');
    hasProblem(
      sf({ protocol: 'tcp', internal: '[2001:db8:77::10]:443', remoteHost: '203.0.113.7' }),
      'staticForwards[0].remoteHost',
      'IPv6 host address',
    );
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 8443, internal: '192.168.1.2', remoteHost: '2001:db8::7' }),
      'staticForwards[0].remoteHost',
      'IPv4 host',
    );
  });

  test('overlaps: only the same host’s ports for the same remote; never against IPv4 forwards or triggers', () => {
    assert.deepEqual(
      problems(
        sf(
          { protocol: 'tcp', externalPort: 8443, internal: '192.168.1.2:443' },
          { protocol: 'tcp', internal: '[2001:db8:77::10]:8443' },
          { protocol: 'tcp', internal: '[2001:db8:77::11]:8443' },
          { protocol: 'tcp', internal: '[2001:db8:77::10]:8443', remoteHost: '2001:db8:113::7' },
        ),
      ),
      [],
    );
    hasProblem(
      sf(
        { protocol: 'tcp', externalPort: '8000-8010', internal: '[2001:db8:77::10]' },
        { protocol: 'tcp', internal: '[2001:db8:77:0::10]:8005' },
      ),
      'staticForwards[1].externalPort',
      'overlaps tcp 8000-8010 of staticForwards[0]',
    );
    // a trigger may open the port number a pinhole uses: the pinhole holds no external port
    assert.deepEqual(
      problems({
        staticForwards: [{ protocol: 'tcp', internal: '[2001:db8:77::10]:6113' }],
        triggers: [
          { name: 'game', match: { protocol: 'udp', ports: '6112' }, open: [{ protocol: 'tcp', ports: '6113' }] },
        ],
      }),
      [],
    );
  });

  test('the lease table opens a configured pinhole as a read-only family-6 lease', async () => {
    const c = validateConfig(sf({ protocol: 'tcp', internal: '[2001:db8:77::10]:443', description: 'web' }));
    const t = makeTable();
    toDispose.push(t);
    const r = await t.table.syncStatic(c.staticForwards);
    assert.deepEqual(r, { added: 1, removed: 0, refused: [] });
    const [l] = t.table.list({ family: 6 }).leases;
    assert.ok(l);
    assert.deepEqual(
      [l.family, l.source, l.readOnly, l.internalAddress, l.externalAddress, l.internalPort, l.expiresAt],
      [6, 'static', true, '2001:db8:77::10', '2001:db8:77::10', 443, null],
    );
    // the same config again changes nothing; without it the pinhole goes
    assert.deepEqual(await t.table.syncStatic(c.staticForwards), { added: 0, removed: 0, refused: [] });
    assert.deepEqual(await t.table.syncStatic([]), { added: 0, removed: 1, refused: [] });
    assert.equal(t.dataplane.entries.size, 0);
  });
});
