/**
 * The in-process nf_tables netlink writer (src/dataplane/nf-netlink.ts) against the real kernel, in a
 * network namespace of its own (root only; a failure under CI=true):
 * - the same planned ticks written over netlink and through `nft -f` leave identical tables;
 * - a batch the kernel refuses leaves nothing behind, and the error names the set and the errno;
 * - the socket is opened inside the namespace from outside it (setns) and this process stays where it was;
 * - the driver sends range leases through nft and single ports through netlink, in one consistent table.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readlinkSync } from 'node:fs';
import pino from 'pino';
import { NetlinkError, openNfNetlink, type NfNetlink } from '../../src/dataplane/nf-netlink.js';
import { createNftablesDataplane } from '../../src/dataplane/nftables.js';
import type { ElementSet, ElementStep, NftElement } from '../../src/dataplane/model.js';
import { decodeText, stepCommands } from '../../src/dataplane/nft-text.js';
import { NftModel, planBatch } from '../../src/dataplane/nftables-plan.js';
import { asFile, renderInit } from '../../src/dataplane/nftables-script.js';
import type { DataplaneBatch, DataplaneEntry } from '../../src/dataplane/types.js';
import { exec, labSkip, must } from './harness.js';

const skip = labSkip('nf-netlink');

/** a typed element from nft's text of it */
function el(set: ElementSet, key: string, data: string | null, timeout: number | null): NftElement {
  const k = decodeText(set, key, data, null);
  if (!k) throw new Error(`${set} ${key} does not decode`);
  const { expires: _, ...rest } = k;
  return { ...rest, timeout };
}
const ns = `pdnl${process.pid}`;

function entry(id: string, p: Partial<DataplaneEntry> & { externalPort: number }): DataplaneEntry {
  return {
    id,
    protocol: 'udp',
    externalAddress: '203.0.113.1',
    externalPortEnd: p.externalPort,
    internalAddress: '192.168.77.11',
    internalPort: p.externalPort,
    remoteAddress: null,
    timeoutSeconds: 600,
    ...p,
  };
}

function pinhole(id: string, p: Partial<DataplaneEntry> & { externalPort: number }): DataplaneEntry {
  const address = p.internalAddress ?? '2001:db8:77::11';
  return { ...entry(id, p), family: 6, externalAddress: address, internalAddress: address };
}

function structure(table: string): string {
  return asFile(renderInit({ table, wan: 'wan0', lan: ['br0'], hairpin: false, frontendPorts: { tcp: [], udp: [] } }));
}

/** the table's element listing, comparable across tables and runs: name replaced, the running `expires` dropped */
async function listing(table: string): Promise<string> {
  const out = await must(ns, ['nft', 'list', 'table', 'inet', table]);
  return out.replaceAll(`table inet ${table}`, 'table inet T').replace(/ expires [0-9hmsd]+/g, '');
}

describe('nf_tables over netlink, in a namespace', { skip, timeout: 120_000 }, () => {
  let nl: NfNetlink;

  before(async () => {
    await exec(null, ['ip', 'netns', 'del', ns]);
    await must(null, ['ip', 'netns', 'add', ns]);
    const opened = openNfNetlink({ netns: ns });
    if (typeof opened === 'string') throw new Error(`netlink socket: ${opened}`);
    nl = opened;
  });

  after(async () => {
    nl?.close();
    await exec(null, ['ip', 'netns', 'del', ns]);
  });

  test('the socket opens inside the namespace and this thread stays in its own', async () => {
    const mine = readlinkSync('/proc/thread-self/ns/net');
    await must(ns, ['nft', '-f', '-'], { input: structure('where') });
    nl.commit('where', [{ verb: 'add', set: 'live_tcp', elements: [el('live_tcp', '4242', null, 60)] }]);
    assert.match(await must(ns, ['nft', 'list', 'set', 'inet', 'where', 'live_tcp']), /4242 timeout 1m/);
    assert.equal(readlinkSync('/proc/thread-self/ns/net'), mine, 'the main thread is back in its namespace');
    await must(ns, ['nft', 'delete', 'table', 'inet', 'where']);
  });

  test('planned ticks written over netlink and through nft leave identical tables', async () => {
    await must(ns, ['nft', '-f', '-'], { input: structure('vianl') + structure('vianft') });
    const ticks: DataplaneBatch[] = [
      {
        remove: [],
        add: [
          entry('a', { externalPort: 5000, internalPort: 6000 }),
          entry('b', { externalPort: 5001, protocol: 'tcp', timeoutSeconds: null }),
        ],
      },
      // two peer-filtered leases sharing one live port, and an open one
      {
        remove: [],
        add: [
          entry('p1', { externalPort: 7000, remoteAddress: '203.0.113.9' }),
          entry('p2', { externalPort: 7000, remoteAddress: '203.0.113.10', internalAddress: '192.168.77.12' }),
          entry('c', { externalPort: 7001, timeoutSeconds: 30 }),
        ],
      },
      // renewal (remove + add of the same key with a new timeout), a release, a new one
      {
        remove: [
          entry('a', { externalPort: 5000, internalPort: 6000 }),
          entry('p1', { externalPort: 7000, remoteAddress: '203.0.113.9' }),
        ],
        add: [
          entry('a', { externalPort: 5000, internalPort: 6000, timeoutSeconds: 3600 }),
          entry('d', { externalPort: 65535, protocol: 'tcp' }),
        ],
      },
      { remove: [entry('b', { externalPort: 5001, protocol: 'tcp', timeoutSeconds: null })], add: [] },
      // IPv6 pinholes (no translation): the key is the internal endpoint, with the remote first in pin6_peer
      {
        remove: [],
        add: [
          pinhole('h1', { externalPort: 8000 }),
          pinhole('h2', { externalPort: 8000, internalAddress: '2001:db8:77::12', timeoutSeconds: null }),
          pinhole('h3', { externalPort: 22, protocol: 'tcp', remoteAddress: '2001:db8:113::5' }),
        ],
      },
      {
        remove: [pinhole('h1', { externalPort: 8000 })],
        add: [pinhole('h1', { externalPort: 8000, timeoutSeconds: 60 })],
      },
    ];
    const mNl = new NftModel();
    const mNft = new NftModel();
    const now = 1_000_000;
    let steps = 0;
    for (const t of ticks) {
      const a = planBatch('vianl', mNl, t, now);
      const b = planBatch('vianft', mNft, t, now);
      nl.commit('vianl', a.steps);
      await must(ns, ['nft', '-f', '-'], { input: asFile(stepCommands('vianft', b.steps)) });
      mNl.apply(a.changes);
      mNft.apply(b.changes);
      steps += a.steps.length;
    }
    assert.ok(steps >= 8, 'the ticks exercised adds and deletes');
    const [x, y] = [await listing('vianl'), await listing('vianft')];
    assert.equal(x, y);
    // and the content is what the ticks say
    assert.match(x, /udp \. 5000 timeout 1h : 192\.168\.77\.11 \. 6000/);
    assert.match(x, /203\.0\.113\.10 \. udp \. 7000 timeout 10m : 192\.168\.77\.12 \. 7000/);
    assert.doesNotMatch(x, /203\.0\.113\.9 /);
    assert.doesNotMatch(x, /tcp \. 5001/);
    assert.match(x, /tcp \. 65535 timeout 10m : 192\.168\.77\.11 \. 65535/);
    // pinhole elements carry their packet counter (the sets are declared with `counter`)
    assert.match(x, /2001:db8:77::11 \. udp \. 8000 counter packets 0 bytes 0 timeout 1m/);
    assert.match(x, /2001:db8:77::12 \. udp \. 8000 counter packets 0 bytes 0[,\s]/);
    assert.match(x, /2001:db8:113::5 \. 2001:db8:77::11 \. tcp \. 22 counter packets 0 bytes 0 timeout 10m/);
    await must(ns, ['nft', 'delete', 'table', 'inet', 'vianl']);
    await must(ns, ['nft', 'delete', 'table', 'inet', 'vianft']);
  });

  test('a refused batch leaves nothing behind and says which set and why', async () => {
    await must(ns, ['nft', '-f', '-'], {
      input: `${structure('refuse')}add element inet refuse fwd4 { udp . 9000 : 192.168.77.11 . 9000 }\n`,
    });
    const before = await listing('refuse');
    const clash: ElementStep[] = [
      { verb: 'add', set: 'live_udp', elements: [el('live_udp', '9001', null, 60)] },
      // same key, other data: the kernel refuses (drift must fail the tick, not be overwritten)
      {
        verb: 'add',
        set: 'fwd4',
        elements: [
          el('fwd4', 'udp . 9001', '192.168.77.11 . 9001', 60),
          el('fwd4', 'udp . 9000', '192.168.77.99 . 9000', 60),
        ],
      },
    ];
    assert.throws(
      () => nl.commit('refuse', clash),
      (err: unknown) => {
        assert.ok(err instanceof NetlinkError);
        assert.equal(err.errno, 17);
        assert.match(err.message, /add element fwd4 .*EEXIST/);
        return true;
      },
    );
    assert.equal(await listing('refuse'), before, 'nothing of the refused batch was applied');
    // the same data again is a no-op, as `nft add element` is
    nl.commit('refuse', [
      {
        verb: 'add',
        set: 'fwd4',
        elements: [el('fwd4', 'udp . 9000', '192.168.77.11 . 9000', null)],
      },
    ]);
    assert.equal(await listing('refuse'), before);
    // deleting what is not there, and writing to a table that is not there: ENOENT
    assert.throws(
      () => nl.commit('refuse', [{ verb: 'delete', set: 'live_udp', elements: [el('live_udp', '1', null, null)] }]),
      (err: unknown) => err instanceof NetlinkError && err.errno === 2 && /delete element live_udp/.test(err.message),
    );
    assert.throws(
      () => nl.commit('nosuch', [{ verb: 'add', set: 'live_udp', elements: [el('live_udp', '1', null, null)] }]),
      (err: unknown) => err instanceof NetlinkError && err.errno === 2,
    );
    // ranges are not written this way: refused before anything is sent
    assert.throws(
      () =>
        nl.commit('refuse', [
          {
            verb: 'add',
            set: 'live_udp_range',
            elements: [el('live_udp_range', '1-2', null, null)],
          },
        ]),
      NetlinkError,
    );
    // and the socket still works after all that
    nl.commit('refuse', [{ verb: 'add', set: 'live_udp', elements: [el('live_udp', '9002', null, 60)] }]);
    assert.match(await listing('refuse'), /9002 timeout 1m/);
    await must(ns, ['nft', 'delete', 'table', 'inet', 'refuse']);
  });

  test('a batch longer than the send buffer is not sent (false: write it another way), and nothing is applied', async () => {
    await must(ns, ['nft', '-f', '-'], { input: structure('big') });
    // ≈ 52 octets an element: 3.4 MB, past the 2 MiB send buffer
    const els = Array.from({ length: 65_000 }, (_, i) =>
      el('fwd4_peer', `203.0.113.7 . udp . ${i + 1}`, '192.168.77.11 . 80', 60),
    );
    assert.equal(nl.commit('big', [{ verb: 'add', set: 'fwd4_peer', elements: els }]), false);
    assert.doesNotMatch(await must(ns, ['nft', 'list', 'map', 'inet', 'big', 'fwd4_peer']), /elements/);
    // a big batch that fits (8,000 elements, 0.4 MB): one transaction
    assert.equal(nl.commit('big', [{ verb: 'add', set: 'fwd4_peer', elements: els.slice(0, 8000) }]), true);
    const listed = await must(ns, ['nft', 'list', 'map', 'inet', 'big', 'fwd4_peer']);
    assert.equal(listed.match(/203\.0\.113\.7 \. udp \. \d+ timeout 1m/g)?.length, 8000);
    await must(ns, ['nft', 'delete', 'table', 'inet', 'big']);
  });

  test('without CAP_NET_ADMIN the batch is refused at once with EPERM (not a wait for answers that never come)', async () => {
    await must(ns, ['nft', '-f', '-'], { input: structure('perm') });
    const code = `
      const { openNfNetlink } = await import(
        ${JSON.stringify(new URL('../../src/dataplane/nf-netlink.ts', import.meta.url).href)}
      );
      const nl = openNfNetlink();
      const t0 = performance.now();
      let out;
      try {
        nl.commit('perm', [
          { verb: 'add', set: 'live_tcp', elements: [{ set: 'live_tcp', remote: null, address: null, protocol: null,
            port: 1, portEnd: 1, data: null, timeout: 60 }] },
        ]);
        out = { ok: true };
      }
      catch (e) { out = { errno: e.errno, outcome: e.outcome, message: e.message }; }
      out.ms = performance.now() - t0;
      process.stdout.write(JSON.stringify(out));`;
    const r = await exec(ns, [
      'setpriv',
      '--bounding-set=-net_admin',
      '--inh-caps=-net_admin',
      process.execPath,
      '--import',
      'tsx',
      '--input-type=module',
      '-e',
      code,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as {
      ok?: boolean;
      errno?: number;
      outcome?: string;
      message?: string;
      ms: number;
    };
    assert.equal(out.ok, undefined, 'refused');
    assert.equal(out.errno, 1, out.message);
    assert.equal(out.outcome, 'refused');
    assert.match(out.message ?? '', /EPERM/);
    assert.ok(out.ms < 500, `answered from the queue, not after a receive timeout (${out.ms} ms)`);
    assert.doesNotMatch(await must(ns, ['nft', 'list', 'set', 'inet', 'perm', 'live_tcp']), /elements/);
    await must(ns, ['nft', 'delete', 'table', 'inet', 'perm']);
  });

  test('the driver reopens its socket when its namespace was deleted and made again', async () => {
    const ns2 = `${ns}b`;
    await exec(null, ['ip', 'netns', 'del', ns2]);
    await must(null, ['ip', 'netns', 'add', ns2]);
    const dp = createNftablesDataplane({
      table: 'again',
      wan: 'wan0',
      lan: ['br0'],
      hairpin: false,
      frontendPorts: { tcp: [], udp: [] },
      log: pino({ level: 'silent' }),
      netns: ns2,
    });
    try {
      await dp.init();
      await dp.apply({ remove: [], add: [entry('x', { externalPort: 3100 })] });
      await must(null, ['ip', 'netns', 'del', ns2]);
      await must(null, ['ip', 'netns', 'add', ns2]);
      const c = await dp.check();
      assert.equal(c.rebuilt, true, c.reason);
      await dp.apply({ remove: [], add: [entry('y', { externalPort: 3101 })] });
      const out = await must(ns2, ['nft', 'list', 'map', 'inet', 'again', 'fwd4']);
      assert.match(out, /udp \. 3100 /, 'rebuilt from the model');
      assert.match(out, /udp \. 3101 /, 'the next tick reached the new namespace');
    } finally {
      await dp.close();
      await exec(null, ['ip', 'netns', 'del', ns2]);
    }
  });

  test('the driver: single ports over netlink, ranges through nft, one table', async () => {
    const lines: string[] = [];
    const log = pino(
      { level: 'debug' },
      {
        write: (l: string) => {
          lines.push(l);
        },
      },
    );
    const dp = createNftablesDataplane({
      table: 'drv',
      wan: 'wan0',
      lan: ['br0'],
      hairpin: false,
      frontendPorts: { tcp: [], udp: [] },
      log,
      netns: ns,
    });
    try {
      await dp.init();
      assert.ok(
        lines.some((l) => /"transport":"netlink"/.test(l) && /nft table ready/.test(l)),
        'the driver chose netlink',
      );
      await dp.apply({
        remove: [],
        add: [entry('s', { externalPort: 3000 }), entry('r', { externalPort: 4000, externalPortEnd: 4009 })],
      });
      await dp.apply({ remove: [], add: [entry('t', { externalPort: 3001, protocol: 'tcp' })] });
      await dp.apply({ remove: [entry('s', { externalPort: 3000 })], add: [] });
      const out = await listing('drv');
      assert.match(out, /udp \. 4000-4009 timeout 10m : 192\.168\.77\.11/);
      assert.match(out, /tcp \. 3001 timeout 10m : 192\.168\.77\.11 \. 3001/);
      assert.doesNotMatch(out, /udp \. 3000 /);
      const v = await dp.verify();
      assert.deepEqual(v, { missing: 0, stale: 0, repaired: false });
    } finally {
      await dp.destroy();
      await dp.close();
    }
  });
});
