/**
 * `portd doctor`'s checks, each over fixed facts (good and bad): status, what was found, what to do. The
 * firewall facts are real `nft -j list ruleset` captures (test/fixtures/nft-ruleset/, see capture.ts there).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { CapabilitySets } from '../../src/capabilities.js';
import { validateConfig } from '../../src/config/index.js';
import { ipv4ToInt } from '../../src/common/net.js';
import {
  checkCapabilities,
  checkConntrackTable,
  checkConntrackTool,
  checkDaemon,
  checkDatabase,
  checkForwardChain,
  checkForwarding,
  checkFrontends,
  checkIptables,
  checkNetlink,
  checkNft,
  checkStateDir,
  checkWanAddress,
  parseVersion,
  runChecks,
} from '../../src/doctor/checks.js';
import { buildReport, formatReport } from '../../src/doctor/index.js';
import type { DoctorFacts } from '../../src/doctor/types.js';
import { classifyAddress } from '../../src/common/address-kind.js';

const DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'nft-ruleset');
const ruleset = (name: string) => ({
  json: (JSON.parse(readFileSync(join(DIR, `${name}.json`), 'utf8')) as { ruleset: unknown }).ruleset,
});

const NET_ADMIN = 1n << 12n;
const caps = (euid: number, effective: bigint, ambient: bigint): CapabilitySets => ({
  effective,
  permitted: effective,
  inheritable: ambient,
  bounding: (1n << 41n) - 1n,
  ambient,
  euid,
});

const rawConfig = {
  interfaces: { wan: 'wan0', lan: ['br0'] },
  stateDir: '/var/lib/portd',
  database: { path: '/var/lib/portd/portd.sqlite' },
  admin: { listen: '127.0.0.1:8080' },
};

/** a healthy gateway; each test changes one thing */
function facts(over: Partial<DoctorFacts> = {}, config: Record<string, unknown> = {}): DoctorFacts {
  const dir = { path: '/var/lib/portd', exists: true, isDirectory: true, mode: 0o700, uid: 998, writable: true };
  const file = (path: string) => ({ path, exists: true, isDirectory: false, mode: 0o600, uid: 998, writable: true });
  return {
    configPath: '/etc/portd/portd.yaml',
    config: validateConfig({ ...rawConfig, ...config }),
    sysctl: {
      ipv4Forward: '1',
      ipv6Forward: '0',
      rpFilterAll: '0',
      rpFilterWan: '0',
      conntrackCount: '10',
      conntrackMax: '262144',
    },
    wan: { addresses: ['81.2.0.1'] },
    lanAddresses: { br0: ['192.168.77.1'] },
    ruleset: ruleset('debian-mark-accept'),
    nftVersion: { code: 0, stdout: 'nftables v1.0.6 (Lester Gooch #5)\n', stderr: '' },
    nftCheck: { code: 0, stdout: '', stderr: '' },
    conntrackVersion: { code: 0, stdout: 'conntrack v1.4.7 (conntrack-tools)\n', stderr: '' },
    netlink: true,
    kernel: '6.1.0-28-amd64',
    capabilities: caps(0, NET_ADMIN, 0n),
    euid: 0,
    iptables: null,
    files: {
      databaseDir: dir,
      database: file('/var/lib/portd/portd.sqlite'),
      wal: file('/var/lib/portd/portd.sqlite-wal'),
      stateDir: dir,
      stateParent: null,
      databaseParent: null,
      adminToken: file('/var/lib/portd/admin-token'),
    },
    lock: { pid: 4242, alive: true, capabilities: caps(998, NET_ADMIN, NET_ADMIN) },
    // the running portd's own sockets on the LAN address
    sockets: [
      { protocol: 'tcp', port: 5000, ipv4: ipv4ToInt('192.168.77.1') },
      { protocol: 'udp', port: 5351, ipv4: ipv4ToInt('192.168.77.1') },
      { protocol: 'udp', port: 1900, ipv4: ipv4ToInt('192.168.77.1') },
      { protocol: 'tcp', port: 8080, ipv4: ipv4ToInt('127.0.0.1') },
      { protocol: 'tcp', port: 22, ipv4: 0 },
    ],
    daemon: {
      reachable: true,
      httpStatus: 200,
      body: {
        version: '0.1.0',
        externalAddress: '81.2.0.1',
        leases: { total: 3 },
        dataplane: { driver: 'nftables', ok: true },
      },
    },
    ...over,
  };
}

describe('portd doctor checks', () => {
  test('a healthy gateway: nothing to warn about, exit 0', () => {
    const all = runChecks(facts());
    assert.deepEqual(
      all.filter((c) => c.status === 'warn' || c.status === 'fail'),
      [],
    );
    const r = buildReport('/etc/portd/portd.yaml', all);
    assert.equal(r.ok, true);
    assert.match(formatReport(r), /^ok +forwarding +IPv4 forwarding is on/m);
  });

  test('forwarding off: fail with the sysctl to run and to keep', () => {
    const c = checkForwarding(facts({ sysctl: { ...facts().sysctl, ipv4Forward: '0' } }));
    assert.equal(c.status, 'fail');
    assert.match(c.fix!, /sysctl -w net\.ipv4\.ip_forward=1.*\/etc\/sysctl\.d\//);
    assert.equal(checkForwarding(facts()).status, 'ok');
    // the memory driver forwards nothing: not a failure there
    assert.equal(
      checkForwarding(facts({ sysctl: { ...facts().sysctl, ipv4Forward: '0' } }, { dataplane: { driver: 'memory' } }))
        .status,
      'info',
    );
    const r = buildReport('x', [c]);
    assert.equal(r.ok, false);
    assert.match(formatReport(r), /^fail +forwarding .* → sysctl -w/m);
  });

  test('conntrack table nearly full: warn with a new maximum', () => {
    const c = checkConntrackTable(
      facts({ sysctl: { ...facts().sysctl, conntrackCount: '960', conntrackMax: '1000' } }),
    );
    assert.equal(c.status, 'warn');
    assert.match(c.fix!, /nf_conntrack_max=2000/);
    assert.equal(checkConntrackTable(facts()).status, 'ok');
  });

  describe('the WAN address', () => {
    const wan = (a: string[], config = {}) => checkWanAddress(facts({ wan: { addresses: a } }, config));
    test('public: ok', () => {
      const c = wan(['81.2.0.1']);
      assert.equal(c.status, 'ok');
      assert.match(c.message, /81\.2\.0\.1 is public/);
    });
    test('RFC 1918: double NAT warning with what it means and what to do', () => {
      const c = wan(['192.168.1.23']);
      assert.equal(c.status, 'warn');
      assert.match(c.message, /private \(192\.168\.0\.0\/16, RFC 1918\).*double NAT.*upstream router forwards/);
      assert.match(c.fix!, /DMZ/);
    });
    test('RFC 6598 shared space: carrier-grade NAT warning', () => {
      const c = wan(['100.64.77.2']);
      assert.equal(c.status, 'warn');
      assert.match(c.message, /RFC 6598.*carrier-grade NAT.*cannot reach any mapped port/);
      assert.match(c.fix!, /public IPv4 address/);
    });
    test('no address, no interface, link-local: fail', () => {
      assert.equal(wan([]).status, 'fail');
      assert.equal(checkWanAddress(facts({ wan: { error: 'Device "eth9" does not exist.' } })).status, 'fail');
      assert.equal(wan(['169.254.3.4']).status, 'fail');
    });
    test('a fixed externalAddress that is not on the interface: warn', () => {
      const c = wan(['81.2.0.1'], { externalAddress: '81.2.0.99' });
      assert.equal(c.status, 'warn');
      assert.match(c.message, /only packets sent to 81\.2\.0\.99 are forwarded/);
      assert.match(c.fix!, /externalAddress: auto/);
    });
    test('classifyAddress edges', () => {
      assert.equal(classifyAddress('100.63.255.255').kind, 'public');
      assert.equal(classifyAddress('100.64.0.0').kind, 'shared');
      assert.equal(classifyAddress('100.127.255.255').kind, 'shared');
      assert.equal(classifyAddress('172.31.0.1').kind, 'private');
      assert.equal(classifyAddress('172.32.0.1').kind, 'public');
    });
  });

  describe("the firewall's forward chain", () => {
    test('the coexistence rule or ct status dnat: ok, naming the accepting rule', () => {
      const c = checkForwardChain(facts());
      assert.equal(c.status, 'ok');
      assert.match(c.message, /table inet filter chain forward accepts them \(rule "ct mark & 0x100 == 0x100 accept"/);
      const d = checkForwardChain(facts({ ruleset: ruleset('debian-dnat-accept') }));
      assert.equal(d.status, 'ok');
      assert.match(d.message, /ct status dnat accept/);
      assert.match(d.message, /not there yet/); // that capture has no portd table
    });
    test('policy drop without the accept: fail with the exact rule to insert', () => {
      const c = checkForwardChain(facts({ ruleset: ruleset('debian-no-accept') }));
      assert.equal(c.status, 'fail');
      assert.match(
        c.message,
        /table inet filter chain forward \(priority 0\) drops portd's forwarded flows.*policy drop/,
      );
      assert.match(c.fix!, /^nft insert rule inet filter forward ct mark and 0x100 == 0x100 accept/);
    });
    test('an explicit drop after an accept for one port: fail, the drop rule named', () => {
      const c = checkForwardChain(facts({ ruleset: ruleset('explicit-drop') }));
      assert.equal(c.status, 'fail');
      assert.match(c.message, /table ip filter chain gateway_forward .*rule "iifname "wan0" drop" \(handle 4\)/);
      assert.match(c.fix!, /nft insert rule ip filter gateway_forward ct mark and 0x100 == 0x100 accept/);
    });
    test('a chain before portd sets the mark: the fix is ct status dnat, and why', () => {
      const c = checkForwardChain(facts({ ruleset: ruleset('mark-accept-too-early') }));
      assert.equal(c.status, 'fail');
      assert.match(c.message, /runs before portd's forward chain \(priority -1\) sets mark 0x100/);
      assert.match(c.fix!, /nft insert rule inet early forward ct status dnat accept/);
    });
    test('fw4: ok with its dnat accept; without it, the drop in drop_to_lan', () => {
      assert.equal(checkForwardChain(facts({ ruleset: ruleset('fw4-dnat') })).status, 'ok');
      const c = checkForwardChain(facts({ ruleset: ruleset('fw4-no-dnat') }));
      assert.equal(c.status, 'fail');
      assert.match(c.message, /in chain drop_to_lan/);
      assert.match(c.fix!, /nft insert rule inet fw4 forward ct mark and 0x100 == 0x100 accept/);
    });
    test('no firewall but portd: ok; an unreadable ruleset: warn', () => {
      assert.match(
        checkForwardChain(facts({ ruleset: ruleset('accept-all') })).message,
        /no forward chain besides portd's/,
      );
      const unreadable = checkForwardChain(
        facts({
          ruleset: { error: 'Operation not permitted (you must be root)\nnetlink: Error: cache initialization failed' },
        }),
      );
      assert.equal(unreadable.status, 'warn');
      assert.match(unreadable.message, /\(you must be root\) netlink: Error/); // one line
      assert.match(unreadable.fix!, /run portd doctor as root/);
    });
  });

  describe('iptables (a note)', () => {
    const ipt = (version: string, stdout: string) =>
      checkIptables(facts({ iptables: { version, forward: { code: 0, stdout, stderr: '' } } }));
    // `iptables -S FORWARD` text as iptables 1.8.9 prints it (written by hand: iptables is not installed here)
    test('legacy FORWARD policy DROP without a DNAT accept: warn with the rule', () => {
      const c = ipt('iptables v1.8.9 (legacy)', '-P FORWARD DROP\n-A FORWARD -i br0 -o eth0 -j ACCEPT\n');
      assert.equal(c.status, 'warn');
      assert.match(c.fix!, /iptables -I FORWARD -m conntrack --ctstatus DNAT -j ACCEPT/);
    });
    test('legacy with the accept, or nf_tables: info only', () => {
      assert.equal(
        ipt('iptables v1.8.9 (legacy)', '-P FORWARD DROP\n-A FORWARD -m conntrack --ctstatus DNAT -j ACCEPT\n').status,
        'info',
      );
      const n = ipt('iptables v1.8.9 (nf_tables)', '-P FORWARD DROP\n');
      assert.equal(n.status, 'info');
      assert.match(n.message, /analysed with the nft ruleset/);
    });
  });

  describe('tools', () => {
    test('nft: ok; missing, too old, refusing the table: fail; older than tested: warn', () => {
      assert.equal(checkNft(facts()).status, 'ok');
      assert.match(checkNft(facts()).message, /nft 1\.0\.6, kernel 6\.1\.0-28-amd64; nft -c accepts/);
      const missing = checkNft(
        facts({ nftVersion: { code: -1, stdout: '', stderr: '', error: 'cannot start nft: spawn nft ENOENT' } }),
      );
      assert.equal(missing.status, 'fail');
      assert.match(missing.fix!, /apt-get install nftables/);
      assert.equal(
        checkNft(facts({ nftVersion: { code: 0, stdout: 'nftables v0.9.0 (Fearless Fosdick)', stderr: '' } })).status,
        'fail',
      );
      assert.equal(
        checkNft(facts({ nftVersion: { code: 0, stdout: 'nftables v0.9.8 (E.D.S.)', stderr: '' } })).status,
        'warn',
      );
      const refused = checkNft(
        facts({
          nftCheck: { code: 1, stdout: '', stderr: 'Error: Could not process rule: No such file or directory\n' },
        }),
      );
      assert.equal(refused.status, 'fail');
      assert.match(refused.message, /refuses portd's table \(nft -c\): Error: Could not process rule/);
    });
    test('conntrack: missing is a warning, a failure with triggers; old: warn', () => {
      const gone = { code: -1, stdout: '', stderr: '', error: 'spawn conntrack ENOENT' };
      assert.equal(checkConntrackTool(facts({ conntrackVersion: gone })).status, 'warn');
      const withTriggers = checkConntrackTool(
        facts(
          { conntrackVersion: gone },
          {
            triggers: [
              { name: 'g', match: { protocol: 'udp', ports: '6112' }, open: [{ protocol: 'tcp', ports: '6113' }] },
            ],
          },
        ),
      );
      assert.equal(withTriggers.status, 'fail');
      assert.match(withTriggers.message, /port triggers never fire/);
      assert.equal(
        checkConntrackTool(
          facts({ conntrackVersion: { code: 0, stdout: 'conntrack v1.4.6 (conntrack-tools)', stderr: '' } }),
        ).status,
        'warn',
      );
      assert.equal(checkConntrackTool(facts()).status, 'ok');
    });
    test('netlink: ok, or a warning with the reason', () => {
      assert.equal(checkNetlink(facts()).status, 'ok');
      const c = checkNetlink(facts({ netlink: 'no FFI for netlink sockets (koffi: not found)' }));
      assert.equal(c.status, 'warn');
      assert.match(c.message, /koffi: not found/);
    });
    test('parseVersion', () => {
      assert.deepEqual(parseVersion('nftables v1.0.6 (Lester Gooch #5)'), [1, 0, 6]);
      assert.deepEqual(parseVersion('conntrack v1.4.7 (conntrack-tools)'), [1, 4, 7]);
      assert.equal(parseVersion('nope'), null);
    });
  });

  describe('capabilities', () => {
    test('the running portd without ambient CAP_NET_ADMIN: fail with the hint', () => {
      const c = checkCapabilities(facts({ lock: { pid: 77, alive: true, capabilities: caps(998, NET_ADMIN, 0n) } }));
      assert.equal(c.status, 'fail');
      assert.match(c.message, /the running portd \(pid 77\).*not ambient/);
      assert.match(c.fix!, /AmbientCapabilities=CAP_NET_ADMIN/);
    });
    test('doctor as a plain user, no portd running: warn', () => {
      const c = checkCapabilities(facts({ lock: null, capabilities: caps(1000, 0n, 0n), euid: 1000 }));
      assert.equal(c.status, 'warn');
      assert.match(c.message, /CAP_NET_ADMIN is missing/);
    });
    test('root, or the unit as granted: ok', () => {
      assert.equal(checkCapabilities(facts()).status, 'ok');
      assert.match(
        checkCapabilities(facts()).message,
        /the running portd \(pid 4242\) runs as uid 998 with CAP_NET_ADMIN effective and ambient/,
      );
    });
  });

  describe('database and state directory', () => {
    const f0 = facts();
    test('writable 0600 in a 0700 directory, held by a running portd: ok, and it says so', () => {
      const c = checkDatabase(f0);
      assert.equal(c.status, 'ok');
      assert.match(c.message, /portd\.sqlite is writable, mode 0600; in use by the running portd \(pid 4242/);
    });
    test('world-readable database: warn with chmod', () => {
      const c = checkDatabase(facts({ files: { ...f0.files, database: { ...f0.files.database, mode: 0o644 } } }));
      assert.equal(c.status, 'warn');
      assert.match(c.message, /mode 0644, open to every user/);
      assert.match(c.fix!, /chmod 600 \/var\/lib\/portd\/portd\.sqlite/);
    });
    test('not writable by the user: fail with chown', () => {
      const c = checkDatabase(
        facts({ euid: 998, files: { ...f0.files, database: { ...f0.files.database, writable: false, uid: 0 } } }),
      );
      assert.equal(c.status, 'fail');
      assert.match(c.message, /not writable by uid 998 \(owner uid 0\)/);
      assert.match(c.fix!, /chown portd:/);
    });
    test('owned by root while portd runs as another user: warn', () => {
      const c = checkDatabase(facts({ files: { ...f0.files, database: { ...f0.files.database, uid: 0 } } }));
      assert.equal(c.status, 'warn');
      assert.match(c.message, /owned by uid 0, but portd runs as uid 998/);
    });
    test('missing directory: ok when it can be made, fail when not; a stale lock is a note', () => {
      const missing = { path: '/var/lib/portd', exists: false };
      const ok = checkDatabase(
        facts({
          lock: { pid: 99999, alive: false, capabilities: null },
          files: {
            ...f0.files,
            databaseDir: missing,
            database: { path: f0.files.database.path, exists: false },
            databaseParent: { path: '/var/lib', exists: true, isDirectory: true, mode: 0o755, uid: 0, writable: true },
          },
        }),
      );
      assert.equal(ok.status, 'ok');
      assert.match(ok.message, /does not exist yet: portd creates it.*stale lock file \(pid 99999 is gone\)/);
      const bad = checkStateDir(
        facts({
          euid: 998,
          files: {
            ...f0.files,
            stateDir: missing,
            stateParent: { path: '/var/lib', exists: true, isDirectory: true, mode: 0o755, uid: 0, writable: false },
          },
        }),
      );
      assert.equal(bad.status, 'fail');
      assert.match(bad.fix!, /install -d -m 0700 -o portd \/var\/lib\/portd/);
    });
    test('state directory 0755: warn', () => {
      const c = checkStateDir(facts({ files: { ...f0.files, stateDir: { ...f0.files.stateDir, mode: 0o755 } } }));
      assert.equal(c.status, 'warn');
      assert.match(c.fix!, /chmod 700 \/var\/lib\/portd/);
    });
  });

  describe('front-ends closed from the WAN', () => {
    const ids = (cs: { id: string }[]) => cs.map((c) => c.id);
    test('on the LAN address: ok, every front-end listed', () => {
      const cs = checkFrontends(facts());
      assert.deepEqual(ids(cs), ['frontend-upnp', 'frontend-ssdp', 'frontend-pcp', 'frontend-admin']);
      for (const c of cs) assert.equal(c.status, 'ok', c.message);
    });
    test('on 0.0.0.0 with no input drop: fail, naming listenAddresses', () => {
      const cs = checkFrontends(facts({ ruleset: ruleset('input-open') }, { listenAddresses: ['0.0.0.0'] }));
      const upnp = cs.find((c) => c.id === 'frontend-upnp')!;
      assert.equal(upnp.status, 'fail');
      assert.match(upnp.message, /bound to 0\.0\.0\.0\) and no input chain drops tcp port 5000 from wan0/);
      assert.match(upnp.fix!, /set listenAddresses to the LAN addresses only \(or null: the addresses of br0\)/);
    });
    test("on 0.0.0.0 but portd's input chain drops the port: warn (defence in depth holds, the binding is still wrong)", () => {
      const cs = checkFrontends(facts({ ruleset: ruleset('accept-all') }, { listenAddresses: ['0.0.0.0'] }));
      const pcp = cs.find((c) => c.id === 'frontend-pcp')!;
      assert.equal(pcp.status, 'warn');
      assert.match(
        pcp.message,
        new RegExp(
          'the input chain drops it now \\(table inet portd chain input, ' +
            'rule "iifname "wan0" udp dport \\{ 1900, 5351 \\} drop"\\)',
        ),
      );
    });
    test('on the WAN address; the admin API on a wildcard: fail with the key to change', () => {
      const cs = checkFrontends(
        facts(
          { ruleset: ruleset('input-open') },
          { listenAddresses: ['81.2.0.1'], admin: { listen: '0.0.0.0:8080', token: 'x'.repeat(24) } },
        ),
      );
      assert.equal(cs.find((c) => c.id === 'frontend-pcp')!.status, 'fail');
      const admin = cs.find((c) => c.id === 'frontend-admin')!;
      assert.equal(admin.status, 'fail');
      assert.match(admin.fix!, /set admin\.listen to 127\.0\.0\.1:8080/);
    });
  });

  describe('front-end ports held by sockets now', () => {
    const notRunning = { lock: null, daemon: { reachable: false as const, error: 'ECONNREFUSED' } };
    test('portd stopped, another program on 0.0.0.0 udp 5351: fail, portd could not bind', () => {
      const cs = checkFrontends(facts({ ...notRunning, sockets: [{ protocol: 'udp', port: 5351, ipv4: 0 }] }));
      const pcp = cs.find((c) => c.id === 'frontend-pcp')!;
      assert.equal(pcp.status, 'fail');
      assert.match(pcp.message, /another program already listens on udp 0\.0\.0\.0 port 5351 .*portd cannot bind it/);
      assert.match(pcp.fix!, /ss -ulpn sport = :5351.*pcp\.port/);
      assert.equal(cs.find((c) => c.id === 'frontend-upnp')!.status, 'ok');
    });
    test('portd running, a socket on 0.0.0.0 for its port (another configuration): exposed', () => {
      const cs = checkFrontends(
        facts({ ruleset: ruleset('input-open'), sockets: [{ protocol: 'tcp', port: 5000, ipv4: 0 }] }),
      );
      const upnp = cs.find((c) => c.id === 'frontend-upnp')!;
      assert.equal(upnp.status, 'fail');
      assert.match(upnp.message, /bound to 0\.0\.0\.0 \(a socket there now\)/);
    });
    test("portd's own sockets on the LAN address: ok", () => {
      for (const c of checkFrontends(facts())) assert.equal(c.status, 'ok', c.message);
    });
  });

  describe('a running portd', () => {
    test('running with its table: ok, with what its status says', () => {
      const c = checkDaemon(facts());
      assert.equal(c.status, 'ok');
      assert.match(
        c.message,
        /portd is running \(pid 4242\), version 0\.1\.0, 3 active leases.*table inet portd is present/,
      );
    });
    test('running without its table: fail', () => {
      const c = checkDaemon(facts({ ruleset: ruleset('debian-dnat-accept') }));
      assert.equal(c.status, 'fail');
      assert.match(c.fix!, /flush ruleset/);
    });
    test('not running: info', () => {
      const c = checkDaemon(
        facts({ lock: null, daemon: { reachable: false, error: 'http://127.0.0.1:8080: ECONNREFUSED' } }),
      );
      assert.equal(c.status, 'info');
      assert.match(c.message, /not running \(admin API: http:\/\/127\.0\.0\.1:8080: ECONNREFUSED\)/);
    });
    test('dataplane not ok: fail', () => {
      const c = checkDaemon(
        facts({
          daemon: {
            reachable: true,
            httpStatus: 200,
            body: { dataplane: { ok: false, driver: 'nftables', detail: 'table missing' } },
          },
        }),
      );
      assert.equal(c.status, 'fail');
      assert.match(c.message, /NOT ok \(table missing\)/);
    });
  });
});
