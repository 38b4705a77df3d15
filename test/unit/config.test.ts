import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import {
  ConfigError,
  DEFAULTS,
  configToDocument,
  describeConfig,
  loadConfig,
  parseConfig,
  parsePolicyRule,
  parsePortRanges,
  triggerContext,
  validateConfig,
  validateTrigger,
} from '../../src/config/index.js';
import { ErrorCode, PortdError } from '../../src/errors.js';
import { ipInCidr } from '../../src/common/net.js';
import { TRIGGER_PRESETS } from '../../src/config/trigger-presets.js';

const ROOT = new URL('../../', import.meta.url).pathname;

/** the issues a document produces, as "path: message" lines */
function problems(doc: unknown): string[] {
  try {
    validateConfig(doc);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.CONFIG_INVALID);
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

/** every dotted key path of a plain document (list items are not descended into) */
function keyPaths(o: Record<string, unknown>, base = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) => {
    const p = base ? `${base}.${k}` : k;
    return v !== null && typeof v === 'object' && !Array.isArray(v)
      ? [p, ...keyPaths(v as Record<string, unknown>, p)]
      : [p];
  });
}

describe('defaults', () => {
  test('an empty document gives the router defaults', () => {
    const c = validateConfig({});
    assert.equal(c.logLevel, 'info');
    assert.deepEqual(c.interfaces, { wan: 'eth0', lan: ['br-lan'] });
    assert.equal(c.externalAddress, 'auto');
    assert.equal(c.listenAddresses, null);
    assert.equal(c.stateDir, '/var/lib/portd');
    assert.deepEqual(c.database, {
      path: '/var/lib/portd/portd.sqlite',
      synchronous: 'normal',
      driver: 'sqlite',
      url: null,
    });
    assert.deepEqual(c.dataplane, {
      driver: 'nftables',
      table: 'portd',
      hairpin: true,
      reconcileInterval: 60,
      grace: 5,
      nftPath: 'nft',
      netlink: true,
      conntrackPath: 'conntrack',
    });
    assert.equal(c.policy.secureMode, true);
    assert.equal(c.policy.maxLeasesPerClient, 128);
    assert.deepEqual(c.policy.reservedPorts, [22, 53, 80, 443]);
    assert.deepEqual(c.policy.lifetime, {
      pcp: { min: 120, max: 86400 },
      natpmp: { min: 120, max: 86400 },
      upnp: { min: 1, max: 604800 },
      trigger: { min: 1, max: 86400 },
    });
    assert.equal(c.policy.historyRetention, 86400);
    assert.equal(c.policy.checkPortInUse, true);
    assert.deepEqual(c.limits, {
      maxActiveLeases: 16384,
      maxEndedLeases: 10000,
      historyPerLease: 32,
      pcpRequestsPerSecond: 2000,
      soapRequestsPerSecond: 500,
      ssdpSearchesPerSecond: 200,
      peerLookupsPerSecond: 50,
    });
    assert.equal(c.policy.rules.at(-1)?.text, 'deny 0-65535 0.0.0.0/0 0-65535');
    assert.deepEqual(c.upnp, {
      enabled: true,
      httpPort: 5000,
      ssdp: true,
      friendlyName: 'portd',
      manufacturer: 'portd',
      modelName: 'portd',
      notifyInterval: 900,
      ssdpMxDelay: false,
      listAllLeases: false,
      maxSubscriptions: 256,
      rateLimit: 50,
      ipv6: true,
    });
    assert.deepEqual(c.pcp, {
      enabled: true,
      port: 5351,
      peer: true,
      thirdParty: [],
      allowAllProtocols: false,
      rateLimit: 100,
      ipv6: true,
    });
    assert.deepEqual(c.natpmp, { enabled: true });
    assert.deepEqual(c.admin, { listen: '127.0.0.1:8080', token: null, tokenFile: null, allowedHosts: [] });
    assert.deepEqual(c.staticForwards, []);
    assert.deepEqual(c.triggers, []);
  });

  test('an empty YAML file and sections with everything commented out take the defaults', () => {
    assert.deepEqual(parseConfig(''), validateConfig({}));
    assert.deepEqual(parseConfig('upnp:\npolicy:\n  lifetime:\n'), validateConfig({}));
  });

  test('limits: an unknown key and a negative value are named by their path', () => {
    assert.throws(() => validateConfig({ limits: { maxLeases: 5 } }), /limits\.maxLeases/);
    assert.throws(() => validateConfig({ limits: { pcpRequestsPerSecond: -1 } }), /limits\.pcpRequestsPerSecond/);
    assert.equal(validateConfig({ limits: { maxActiveLeases: 0 } }).limits.maxActiveLeases, 0);
  });

  test('the defaults module and the schema agree', () => {
    assert.equal(validateConfig({}).upnp.httpPort, DEFAULTS.upnp.httpPort);
  });
});

describe('shipped files', () => {
  test('config/portd.yaml is the loopback default', () => {
    const c = loadConfig(join(ROOT, 'config/portd.yaml'));
    assert.equal(c.dataplane.driver, 'memory');
    assert.deepEqual(c.listenAddresses, ['127.0.0.1']);
    assert.equal(c.upnp.ssdp, false);
    assert.equal(c.externalAddress, '192.0.2.1');
    assert.equal(c.database.path, './var/portd.sqlite');
    assert.equal(c.stateDir, './var');
    assert.equal(c.admin.listen, '127.0.0.1:8080');
    assert.equal(c.upnp.httpPort, 5000);
    assert.equal(c.pcp.port, 5351);
    assert.equal(c.policy.secureMode, true);
    assert.deepEqual(
      c.policy.rules.map((r) => r.action),
      ['allow', 'deny'],
    );
    assert.equal(c.policy.rules[0]?.address, '127.0.0.0');
    assert.equal(c.policy.rules[0]?.prefix, 8);
    assert.deepEqual(c.policy.lifetime, validateConfig({}).policy.lifetime);
  });

  test('config/router.example.yaml loads, and its values are the defaults', () => {
    const c = loadConfig(join(ROOT, 'config/router.example.yaml'));
    const d = validateConfig({});
    const { staticForwards: _s, triggers: _t, ...rest } = c;
    const { staticForwards: _s2, triggers: _t2, ...restDefault } = d;
    assert.deepEqual(rest, restDefault);
    assert.ok(c.staticForwards.length >= 2);
    assert.ok(
      c.triggers.some((t) => t.preset !== null),
      'a trigger using a preset',
    );
    assert.ok(
      c.triggers.some((t) => t.preset === null),
      'a hand-written trigger',
    );
  });

  test('config/router.example.yaml spells out every key', () => {
    const example = parseYaml(readFileSync(join(ROOT, 'config/router.example.yaml'), 'utf8')) as Record<
      string,
      unknown
    >;
    const have = new Set(keyPaths(example));
    const missing = keyPaths(configToDocument(validateConfig({}))).filter((p) => !have.has(p));
    assert.deepEqual(missing, []);
  });

  test('docs/configuration.md documents every key', () => {
    const doc = readFileSync(join(ROOT, 'docs/configuration.md'), 'utf8');
    const keys = keyPaths(configToDocument(validateConfig({})));
    keys.push(
      'staticForwards[].protocol',
      'staticForwards[].externalPort',
      'staticForwards[].internal',
      'staticForwards[].remoteHost',
      'staticForwards[].description',
      'triggers[].name',
      'triggers[].preset',
      'triggers[].match.protocol',
      'triggers[].match.ports',
      'triggers[].open[].protocol',
      'triggers[].open[].ports',
      'triggers[].idleTimeout',
      'triggers[].maxLifetime',
      'triggers[].hosts',
      'triggers[].enabled',
    );
    const missing = keys.filter((k) => !doc.includes(`\`${k}\``));
    assert.deepEqual(missing, []);
  });
});

describe('errors name the key path and what is expected', () => {
  test('the issue example: a duration with a unit', () => {
    const ps = problems({ policy: { lifetime: { pcp: { max: '1h' } } } });
    assert.ok(ps[0]?.startsWith('policy.lifetime.pcp.max: must be an integer ≥ 1, got "1h"'), ps[0]);
  });

  const cases: [string, unknown, string, string | RegExp][] = [
    [
      'logLevel enum',
      { logLevel: 'verbose' },
      'logLevel',
      'must be one of fatal, error, warn, info, debug, trace, silent, got "verbose"',
    ],
    [
      'interface name',
      { interfaces: { wan: 'a very long interface name' } },
      'interfaces.wan',
      'network interface name',
    ],
    ['lan list item', { interfaces: { lan: ['br-lan', 7] } }, 'interfaces.lan[1]', 'got 7'],
    ['wan in lan (nftables)', { interfaces: { wan: 'eth0', lan: ['eth0'] } }, 'interfaces.lan', 'WAN interface'],
    ['external address', { externalAddress: '300.1.1.1' }, 'externalAddress', 'auto or a unicast IPv4'],
    ['listen addresses', { listenAddresses: ['127.0.0.1', 'localhost'] }, 'listenAddresses[1]', 'IP address'],
    ['synchronous', { database: { synchronous: 'off' } }, 'database.synchronous', 'normal, full'],
    ['database driver', { database: { driver: 'mysql' } }, 'database.driver', 'sqlite, postgres'],
    ['postgres without url', { database: { driver: 'postgres' } }, 'database.url', 'is required with'],
    ['database url scheme', { database: { driver: 'postgres', url: 'mysql://x/y' } }, 'database.url', 'postgresql://'],
    ['url with sqlite', { database: { url: 'postgresql://h/db' } }, 'database.url', 'applies only with'],
    ['driver', { dataplane: { driver: 'iptables' } }, 'dataplane.driver', 'nftables, memory'],
    ['table name', { dataplane: { table: 'port-d' } }, 'dataplane.table', 'nftables table name'],
    [
      'negative interval',
      { dataplane: { reconcileInterval: -1 } },
      'dataplane.reconcileInterval',
      'between 0 and 86400',
    ],
    ['boolean spelled yes', { dataplane: { hairpin: 'yes' } }, 'dataplane.hairpin', 'must be true or false, got "yes"'],
    [
      'min above max',
      { policy: { lifetime: { natpmp: { min: 500, max: 100 } } } },
      'policy.lifetime.natpmp.min',
      'must be ≤ max (100)',
    ],
    ['reserved port', { policy: { reservedPorts: [22, 70000] } }, 'policy.reservedPorts[1]', 'between 1 and 65535'],
    ['quota', { policy: { maxLeasesPerClient: 0 } }, 'policy.maxLeasesPerClient', 'integer ≥ 1, got 0'],
    ['rule', { policy: { rules: ['permit 1-2 10.0.0.0/8 1-2'] } }, 'policy.rules[0]', 'allow or deny'],
    [
      'rule host bits',
      { policy: { rules: ['allow 1024-65535 192.168.1.5/24 1024-65535'] } },
      'policy.rules[0]',
      'did you mean 192.168.1.0/24',
    ],
    ['http port', { upnp: { httpPort: 65536 } }, 'upnp.httpPort', 'between 0 and 65535, got 65536'],
    ['model name length', { upnp: { modelName: 'x'.repeat(40) } }, 'upnp.modelName', 'at most 31'],
    ['http port = admin port', { upnp: { httpPort: 8080 } }, 'upnp.httpPort', 'admin port'],
    ['third party cidr', { pcp: { thirdParty: ['192.168.1.0/33'] } }, 'pcp.thirdParty[0]', 'IPv4 network'],
    ['admin listen', { admin: { listen: '8080' } }, 'admin.listen', '"address:port"'],
    ['short token', { admin: { token: 'secret' } }, 'admin.token', 'at least 16 characters'],
    [
      'token and file',
      { admin: { token: 'x'.repeat(20), tokenFile: '/etc/portd/token' } },
      'admin.tokenFile',
      'not both',
    ],
    [
      'allowed host with a port',
      { admin: { allowedHosts: ['router.lan:8080'] } },
      'admin.allowedHosts.0',
      'host name like router.lan',
    ],
    ['allowed host a URL', { admin: { allowedHosts: ['http://router.lan'] } }, 'admin.allowedHosts.0', 'no scheme'],
    ['allowed hosts not a list', { admin: { allowedHosts: 'router.lan' } }, 'admin.allowedHosts', 'list of host names'],
    ['section type', { upnp: [1, 2] }, 'upnp', 'must be a mapping'],
    ['list type', { staticForwards: { protocol: 'tcp' } }, 'staticForwards', 'must be a list'],
  ];
  for (const [name, doc, path, fragment] of cases) {
    test(name, () => hasProblem(doc, path, fragment));
  }

  test('wan may equal lan with the memory driver (loopback)', () => {
    assert.deepEqual(problems({ interfaces: { wan: 'lo', lan: ['lo'] }, dataplane: { driver: 'memory' } }), []);
  });
});

describe('unknown keys', () => {
  test('are rejected with their path and a suggestion', () => {
    hasProblem({ upnp: { httpPrt: 5000 } }, 'upnp.httpPrt', 'unknown key (did you mean httpPort?)');
    hasProblem({ polcy: {} }, 'polcy', 'did you mean policy?');
    hasProblem({ policy: { lifetime: { pcp: { maximum: 5 } } } }, 'policy.lifetime.pcp.maximum', 'unknown key');
    hasProblem(
      {
        triggers: [
          { name: 'a', match: { protocol: 'udp', ports: '1' }, open: [{ protocol: 'tcp', ports: '2' }], idle: 5 },
        ],
      },
      'triggers[0].idle',
      'unknown key',
    );
    hasProblem(
      { staticForwards: [{ protocol: 'tcp', externalPort: 8443, internal: '192.168.1.2', remotehost: null }] },
      'staticForwards[0].remotehost',
      'did you mean remoteHost?',
    );
  });

  test('a key far from every allowed one gets no suggestion', () => {
    const ps = problems({ frobnicate: 1 });
    assert.equal(ps.length, 1);
    assert.ok(ps[0]?.startsWith('frobnicate: unknown key;'), ps[0]);
  });
});

test('every problem is collected, not just the first', () => {
  let err: unknown;
  try {
    parseConfig('logLevel: loud\nupnp:\n  httpPrt: 1\npcp:\n  port: "x"\npolicy:\n  maxLeasesPerClient: -3\n', {
      sourceName: 'test.yaml',
    });
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(
    err.issues.map((i) => i.path),
    ['logLevel', 'policy.maxLeasesPerClient', 'upnp.httpPrt', 'pcp.port'],
  );
  assert.match(err.message, /^test\.yaml: 4 problems\n/);
  assert.match(err.toUserString(), /PORTD_CONFIG_INVALID: test\.yaml: 4 problems/);
});

test('YAML syntax errors are CONFIG_PARSE with a line number; duplicate keys too', () => {
  for (const text of ['upnp:\n  httpPort: [5000\n', 'upnp: {}\nupnp: {}\n']) {
    assert.throws(
      () => parseConfig(text, { sourceName: 'bad.yaml' }),
      (e: unknown) => {
        assert.ok(e instanceof PortdError);
        assert.equal(e.code, ErrorCode.CONFIG_PARSE);
        assert.match(e.message, /^bad\.yaml: not valid YAML\n {2}- line \d+, column \d+: /);
        return true;
      },
    );
  }
});

test('a missing file is CONFIG_NOT_FOUND naming the path', () => {
  assert.throws(
    () => loadConfig('/nonexistent/portd.yaml'),
    (e: unknown) => {
      assert.ok(e instanceof PortdError);
      assert.equal(e.code, ErrorCode.CONFIG_NOT_FOUND);
      assert.match(e.message, /\/nonexistent\/portd\.yaml does not exist/);
      return true;
    },
  );
});

describe('policy rules', () => {
  test('parse like miniupnpd', () => {
    assert.deepEqual(parsePolicyRule('allow 1024-65535 192.168.0.0/24 1024-65535'), {
      action: 'allow',
      extStart: 1024,
      extEnd: 65535,
      address: '192.168.0.0',
      prefix: 24,
      intStart: 1024,
      intEnd: 65535,
      text: 'allow 1024-65535 192.168.0.0/24 1024-65535',
    });
    const single = parsePolicyRule('  deny   22 192.168.7.113   54321 ');
    assert.deepEqual(
      [single.action, single.extStart, single.extEnd, single.address, single.prefix, single.intStart, single.intEnd],
      ['deny', 22, 22, '192.168.7.113', 32, 54321, 54321],
    );
    const mask = parsePolicyRule('allow 0-65535 10.1.0.0/255.255.0.0 0-65535');
    assert.equal(mask.prefix, 16);
  });

  test('bad rules say what is wrong', () => {
    assert.throws(() => parsePolicyRule('allow 1024-65535 192.168.0.0/24'), /got 3 words/);
    assert.throws(
      () => parsePolicyRule('allow 2000-1000 192.168.0.0/24 1-2'),
      /external ports range "2000-1000" is reversed/,
    );
    assert.throws(() => parsePolicyRule('allow 1-2 192.168.0.0/24 1-70000'), /internal ports .*70000 is out of range/);
    assert.throws(() => parsePolicyRule('allow 1-2 fd00::/8 1-2'), /IPv4 network/);
  });

  test('an explicitly empty list means no rules', () => {
    assert.deepEqual(validateConfig({ policy: { rules: [] } }).policy.rules, []);
  });
});

test('port lists', () => {
  assert.deepEqual(parsePortRanges('6112'), [{ start: 6112, end: 6112 }]);
  assert.deepEqual(parsePortRanges('6112, 6120-6130'), [
    { start: 6112, end: 6112 },
    { start: 6120, end: 6130 },
  ]);
  assert.deepEqual(parsePortRanges([6112, '6120-6130']), [
    { start: 6112, end: 6112 },
    { start: 6120, end: 6130 },
  ]);
  assert.throws(() => parsePortRanges(''), /at least one port/);
  assert.throws(() => parsePortRanges('6112,6100-6120'), /overlap within the list/);
  assert.throws(() => parsePortRanges('0'), /out of range 1-65535/);
  assert.throws(() => parsePortRanges('61a2'), /must be a port/);
});

describe('static forwards', () => {
  const sf = (f: Record<string, unknown>, extra: Record<string, unknown> = {}): unknown => ({
    staticForwards: [f],
    ...extra,
  });

  test('a single port with an internal port', () => {
    const c = validateConfig(
      sf({ protocol: 'tcp', externalPort: 8443, internal: '192.168.1.20:443', description: 'nas' }),
    );
    assert.deepEqual(c.staticForwards, [
      {
        protocol: 'tcp',
        externalPort: 8443,
        externalPortEnd: 8443,
        internalAddress: '192.168.1.20',
        internalPort: 443,
        remoteAddress: null,
        description: 'nas',
      },
    ]);
  });

  test('a range maps 1:1; without an internal port the ports stay; both = two forwards', () => {
    const c = validateConfig(
      sf({ protocol: 'both', externalPort: '8000-8010', internal: '192.168.1.20', remoteHost: '203.0.113.7' }),
    );
    assert.deepEqual(
      c.staticForwards.map((f) => [
        f.protocol,
        f.externalPort,
        f.externalPortEnd,
        f.internalPort,
        f.remoteAddress,
        f.description,
      ]),
      [
        ['tcp', 8000, 8010, 8000, '203.0.113.7', ''],
        ['udp', 8000, 8010, 8000, '203.0.113.7', ''],
      ],
    );
    const shifted = validateConfig(sf({ protocol: 'udp', externalPort: '8000-8010', internal: '192.168.1.20:9000' }));
    assert.equal(shifted.staticForwards[0]?.internalPort, 9000);
  });

  test('bad forwards are rejected with the key', () => {
    hasProblem(
      sf({ protocol: 'tcp', externalPort: '8010-8000', internal: '192.168.1.20' }),
      'staticForwards[0].externalPort',
      'reversed',
    );
    hasProblem(
      sf({ protocol: 'tcp', externalPort: '8000-8010', internal: '192.168.1.20:65530' }),
      'staticForwards[0].internal',
      'past port 65535',
    );
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 8443, internal: 'nas.lan:443' }),
      'staticForwards[0].internal',
      'IPv4 LAN address',
    );
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 8443, internal: '224.0.0.1' }),
      'staticForwards[0].internal',
      'unicast',
    );
    hasProblem(
      sf({ protocol: 'tpc', externalPort: 8443, internal: '192.168.1.2' }),
      'staticForwards[0].protocol',
      'did you mean tcp?',
    );
    hasProblem(sf({ protocol: 'tcp', internal: '192.168.1.2' }), 'staticForwards[0].externalPort', 'is required');
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 443, internal: '192.168.1.2' }),
      'staticForwards[0].externalPort',
      'reserved port 443',
    );
    hasProblem(
      sf({ protocol: 'tcp', externalPort: 8443, internal: '192.168.1.2', remoteHost: 'example.com' }),
      'staticForwards[0].remoteHost',
      'IPv4 host',
    );
  });

  test('a reserved port can be forwarded once it is removed from reservedPorts', () => {
    const c = validateConfig(
      sf({ protocol: 'tcp', externalPort: 443, internal: '192.168.1.2' }, { policy: { reservedPorts: [22, 53] } }),
    );
    assert.equal(c.staticForwards[0]?.externalPort, 443);
  });

  test('overlapping forwards of one protocol are rejected', () => {
    hasProblem(
      {
        staticForwards: [
          { protocol: 'tcp', externalPort: '8000-8010', internal: '192.168.1.2' },
          { protocol: 'udp', externalPort: 8005, internal: '192.168.1.3' },
          { protocol: 'both', externalPort: 8010, internal: '192.168.1.4' },
        ],
      },
      'staticForwards[2].externalPort',
      'overlaps tcp 8000-8010 of staticForwards[0]',
    );
    assert.equal(
      problems({
        staticForwards: [
          { protocol: 'tcp', externalPort: 8000, internal: '192.168.1.2' },
          { protocol: 'udp', externalPort: 8000, internal: '192.168.1.3' },
        ],
      }).length,
      0,
    );
  });
});

describe('triggers', () => {
  const rule = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
    name: 'game',
    match: { protocol: 'udp', ports: '6112' },
    open: [{ protocol: 'tcp', ports: '6113-6119' }],
    ...over,
  });

  test('a hand-written rule', () => {
    const c = validateConfig({
      triggers: [
        rule({
          hosts: ['192.168.1.0/24', '192.168.2.7'],
          maxLifetime: 7200,
          match: { protocol: 'both', ports: '6112,6120-6130' },
        }),
      ],
    });
    assert.deepEqual(c.triggers[0], {
      name: 'game',
      preset: null,
      match: {
        protocol: 'both',
        ports: [
          { start: 6112, end: 6112 },
          { start: 6120, end: 6130 },
        ],
      },
      open: [{ protocol: 'tcp', ports: { start: 6113, end: 6119 } }],
      idleTimeout: 600,
      maxLifetime: 7200,
      hosts: ['192.168.1.0/24', '192.168.2.7/32'],
      enabled: true,
    });
  });

  test('open entries with both protocols and several ranges expand', () => {
    const c = validateConfig({ triggers: [rule({ open: [{ protocol: 'both', ports: '7000,7100-7101' }] })] });
    assert.deepEqual(
      c.triggers[0]?.open.map((o) => `${o.protocol} ${o.ports.start}-${o.ports.end}`),
      ['tcp 7000-7000', 'tcp 7100-7101', 'udp 7000-7000', 'udp 7100-7101'],
    );
  });

  test('empty, reversed and missing ranges are rejected with the key', () => {
    hasProblem({ triggers: [rule({ open: [] })] }, 'triggers[0].open', 'non-empty list');
    hasProblem(
      { triggers: [rule({ open: [{ protocol: 'tcp', ports: '' }] })] },
      'triggers[0].open[0].ports',
      'at least one port',
    );
    hasProblem(
      { triggers: [rule({ open: [{ protocol: 'tcp', ports: '6119-6113' }] })] },
      'triggers[0].open[0].ports',
      'reversed',
    );
    hasProblem({ triggers: [rule({ match: { protocol: 'udp' } })] }, 'triggers[0].match.ports', 'is required');
    hasProblem(
      { triggers: [rule({ match: { protocol: 'icmp', ports: '1' } })] },
      'triggers[0].match.protocol',
      'tcp, udp, both',
    );
    hasProblem({ triggers: [rule({ name: 'bad name!' })] }, 'triggers[0].name', 'letters, digits');
    assert.deepEqual(problems({ triggers: [rule({ open: ['tcp 6113'] })] }), [
      'triggers[0].open[0]: must be a mapping like { protocol: tcp, ports: "6113-6119" }, got "tcp 6113"',
    ]);
    hasProblem(
      { triggers: [{ match: { protocol: 'udp', ports: '1' }, open: [{ protocol: 'tcp', ports: '2' }] }] },
      'triggers[0].name',
      'is required',
    );
  });

  test('open ranges that hit reserved ports are rejected', () => {
    hasProblem(
      { triggers: [rule({ open: [{ protocol: 'tcp', ports: '20-25' }] })] },
      'triggers[0].open[0].ports',
      'tcp 20-25 includes reserved port 22 (policy.reservedPorts)',
    );
  });

  test('open ranges overlapping between rules, within a rule, or with a static forward are rejected', () => {
    hasProblem(
      {
        triggers: [
          rule(),
          rule({
            name: 'other',
            match: { protocol: 'udp', ports: '7000' },
            open: [{ protocol: 'tcp', ports: '6119-6125' }],
          }),
        ],
      },
      'triggers[1].open[0].ports',
      'overlaps tcp 6113-6119 opened by trigger "game"',
    );
    hasProblem(
      {
        triggers: [
          rule({
            open: [
              { protocol: 'tcp', ports: '7000-7010' },
              { protocol: 'both', ports: '7005' },
            ],
          }),
        ],
      },
      'triggers[0].open[1].ports',
      'overlaps tcp 7000-7010 at triggers[0].open[0] of the same rule',
    );
    hasProblem(
      { staticForwards: [{ protocol: 'tcp', externalPort: 6115, internal: '192.168.1.2' }], triggers: [rule()] },
      'triggers[0].open[0].ports',
      'overlaps static forward tcp 6115',
    );
    // different protocols do not overlap
    assert.deepEqual(
      problems({
        triggers: [
          rule(),
          rule({
            name: 'other',
            match: { protocol: 'udp', ports: '7000' },
            open: [{ protocol: 'udp', ports: '6113-6119' }],
          }),
        ],
      }),
      [],
    );
  });

  test('two rules may not match the same outbound port', () => {
    hasProblem(
      {
        triggers: [
          rule(),
          rule({
            name: 'other',
            match: { protocol: 'both', ports: '6100-6200' },
            open: [{ protocol: 'tcp', ports: '9000' }],
          }),
        ],
      },
      'triggers[1].match.ports',
      'matched by trigger "game"',
    );
  });

  test('names are unique', () => {
    hasProblem(
      { triggers: [rule(), rule({ match: { protocol: 'tcp', ports: '1' }, open: [{ protocol: 'udp', ports: '2' }] })] },
      'triggers[1].name',
      'already named "game"',
    );
  });

  test('timing within policy.lifetime.trigger', () => {
    hasProblem({ triggers: [rule({ idleTimeout: 0 })] }, 'triggers[0].idleTimeout', 'between 1 and 86400');
    hasProblem(
      { policy: { lifetime: { trigger: { min: 1, max: 300 } } }, triggers: [rule({ idleTimeout: 600 })] },
      'triggers[0].idleTimeout',
      'between 1 and 300, got 600',
    );
    // defaults (600 s, or a preset's) are clamped into the bounds rather than rejected
    const c = validateConfig({
      policy: { lifetime: { trigger: { min: 1, max: 300 } } },
      triggers: [rule(), { preset: 'irc-ident' }],
    });
    assert.deepEqual(
      c.triggers.map((t) => t.idleTimeout),
      [300, 300],
    );
    hasProblem({ triggers: [rule({ idleTimeout: 600, maxLifetime: 60 })] }, 'triggers[0].maxLifetime', '≥ idleTimeout');
  });

  test('presets resolve, and a rule may override them', () => {
    for (const [name, p] of Object.entries(TRIGGER_PRESETS)) {
      const c = validateConfig({ triggers: [{ preset: name }] });
      const t = c.triggers[0]!;
      assert.equal(t.name, name);
      assert.equal(t.preset, name);
      assert.equal(t.match.protocol, p.match.protocol);
      assert.equal(t.idleTimeout, p.idleTimeout);
      assert.ok(t.open.length >= p.open.length);
      assert.ok(p.source.length > 20, `${name} cites a source`);
    }
    const c = validateConfig({
      triggers: [
        {
          preset: 'battlenet',
          name: 'sc-host',
          idleTimeout: 900,
          match: { ports: '6112,6200' },
          hosts: ['192.168.1.50'],
        },
      ],
    });
    const t = c.triggers[0]!;
    assert.equal(t.name, 'sc-host');
    assert.equal(t.preset, 'battlenet');
    assert.equal(t.idleTimeout, 900);
    assert.deepEqual(t.match, {
      protocol: 'tcp',
      ports: [
        { start: 6112, end: 6112 },
        { start: 6200, end: 6200 },
      ],
    });
    assert.deepEqual(
      t.open.map((o) => o.protocol),
      ['tcp', 'udp'],
    );
    hasProblem({ triggers: [{ preset: 'battlenett' }] }, 'triggers[0].preset', 'did you mean battlenet?');
  });

  test('presets that share ports cannot be combined', () => {
    hasProblem(
      { triggers: [{ preset: 'quicktime' }, { preset: 'realaudio' }] },
      'triggers[1].open[0].ports',
      'opened by trigger "quicktime"',
    );
  });

  test('validateTrigger serves the admin API with the same checks', () => {
    const config = validateConfig({ triggers: [rule()] });
    const ctx = triggerContext(config, config.triggers);
    const ok = validateTrigger(
      { name: 'api-rule', match: { protocol: 'tcp', ports: [4000] }, open: [{ protocol: 'udp', ports: '4001-4002' }] },
      'body',
      ctx,
    );
    assert.ok(ok.ok);
    assert.equal(ok.value.name, 'api-rule');
    assert.ok(Object.isFrozen(ok.value.open[0]));
    const bad = validateTrigger(
      { name: 'game', match: { protocol: 'udp', ports: '6112' }, open: [{ protocol: 'tcp', ports: '80' }] },
      'body',
      ctx,
    );
    assert.ok(!bad.ok);
    assert.deepEqual(bad.issues.map((i) => i.path).sort(), ['body.match.ports', 'body.name', 'body.open[0].ports']);
    const top = validateTrigger(
      { name: 'x', match: { protocol: 'tcp', ports: '9' }, open: [{ protocol: 'tcp', ports: 'a' }] },
      '',
      ctx,
    );
    assert.ok(!top.ok);
    assert.equal(top.issues[0]?.path, 'open[0].ports');
  });
});

test('the config is deep-frozen: mutation throws', () => {
  const c = validateConfig({
    triggers: [{ preset: 'irc-ident' }],
    staticForwards: [{ protocol: 'tcp', externalPort: 8443, internal: '192.168.1.2' }],
  });
  assert.throws(() => {
    (c as { logLevel: string }).logLevel = 'debug';
  }, TypeError);
  assert.throws(() => {
    (c.upnp as { httpPort: number }).httpPort = 1;
  }, TypeError);
  assert.throws(() => {
    (c.policy.reservedPorts as number[]).push(1);
  }, TypeError);
  assert.throws(() => {
    (c.policy.rules[0] as { action: string }).action = 'deny';
  }, TypeError);
  assert.throws(() => {
    (c.triggers[0]!.open[0]!.ports as { start: number }).start = 1;
  }, TypeError);
  assert.throws(() => {
    (c.staticForwards as unknown[]).pop();
  }, TypeError);
  assert.equal(c.upnp.httpPort, 5000);
});

test('describeConfig prints YAML that parses back to the same config; the token is redacted', () => {
  const c = loadConfig(join(ROOT, 'config/router.example.yaml'));
  assert.deepEqual(parseConfig(describeConfig(c)), c);
  const withToken = validateConfig({ admin: { token: 'abcdefghijklmnopqrstuvwxyz' } });
  assert.match(describeConfig(withToken), /token: <redacted>/);
  assert.doesNotMatch(describeConfig(withToken), /abcdefghijklmnop/);
  assert.deepEqual(parseConfig(describeConfig(withToken, { redact: false })), withToken);
});

test('relative paths are kept as written (resolved against the working directory)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'portd-config-'));
  const file = join(dir, 'p.yaml');
  writeFileSync(file, 'database:\n  path: ./var/x.sqlite\nstateDir: ./var\n');
  const c = loadConfig(file);
  assert.equal(c.database.path, './var/x.sqlite');
  assert.equal(c.stateDir, './var');
});

test('ipInCidr', () => {
  assert.equal(ipInCidr('192.168.1.77', '192.168.1.0/24'), true);
  assert.equal(ipInCidr('192.168.2.1', '192.168.1.0/24'), false);
  assert.equal(ipInCidr('10.1.2.3', '0.0.0.0/0'), true);
  assert.equal(ipInCidr('192.168.1.5', '192.168.1.5'), true);
  assert.equal(ipInCidr('::ffff:192.168.1.5', '192.168.1.0/24'), true);
  assert.equal(ipInCidr('fd00::1', 'fd00::/8'), true);
  assert.equal(ipInCidr('fe80::1', 'fd00::/8'), false);
  assert.equal(ipInCidr('192.168.1.5', 'fd00::/8'), false);
  assert.equal(ipInCidr('not-an-ip', '0.0.0.0/0'), false);
  assert.equal(ipInCidr('10.0.0.1', 'garbage'), false);
});
