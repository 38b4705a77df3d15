/**
 * Lab: "a host's own addresses" for secure mode (issue 15, item 4). Each LAN host has a stable and a
 * temporary IPv6 address on one interface (one MAC). The gateway's neighbour table (src/dataplane/
 * neighbours.ts, real `ip neigh`, real probes) and sameHost (src/policy/same-host.ts) say: the pair is one
 * host; the other LAN host's address is not; an address nobody has is unknown. Before any traffic the
 * gateway knows none of them: the probe is what makes the answer. Root only; a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ADDR6,
  IF,
  JsonLineChannel,
  createLab,
  labSkip,
  startLabProcess,
  type Lab,
  type LabProcess,
} from './harness.js';

const skip = labSkip('ipv6-neighbours');
const HERE = dirname(fileURLToPath(import.meta.url));

interface Answer {
  ok: boolean;
  same?: boolean;
  verdict?: string;
  reason?: string;
  entry?: { lladdr: string | null; state: string[] } | null;
  error?: string;
}

describe('secure mode: a host is known by its link-layer address', { skip, timeout: 60_000 }, () => {
  let lab: Lab;
  let gw: LabProcess | null = null;
  let ch: JsonLineChannel<Answer>;
  let macA: string, macB: string;
  const call = (m: Record<string, unknown>) => ch.call(m, 5000);
  const mac = async (ns: string) =>
    (JSON.parse(await lab.must(ns, ['ip', '-j', 'link', 'show', 'dev', 'eth0'])) as { address: string }[])[0]!.address;

  before(async () => {
    lab = await createLab({ ipv6: { temporary: true } });
    gw = await startLabProcess(lab.gw, join(HERE, 'neighbours-gateway.ts'), [IF.lan]);
    ch = new JsonLineChannel<Answer>(gw.child, (why) => ({ ok: false, error: why }));
    macA = await mac(lab.lanA);
    macB = await mac(lab.lanB);
    assert.notEqual(macA, macB);
  });

  after(async () => {
    await gw?.stop();
    await lab?.teardown();
  });

  test('before any traffic and without a probe, nothing is known: unknown, refused', async () => {
    const r = await call({ op: 'sameHost', requester: ADDR6.hostATemp, target: ADDR6.hostA, ensure: false });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.same, false);
    assert.equal(r.verdict, 'unknown');
    assert.match(r.reason ?? '', /no usable neighbour entry/);
  });

  test("the temporary and the stable address of one host: the same host (probed, then the host's MAC)", async () => {
    const r = await call({ op: 'sameHost', requester: ADDR6.hostATemp, target: ADDR6.hostA, ensure: true });
    assert.equal(r.same, true, r.reason);
    assert.match(r.reason ?? '', new RegExp(`share link-layer address ${macA}`));
    const e = await call({ op: 'lookup', address: ADDR6.hostA });
    assert.equal(e.entry?.lladdr, macA);
    // and the kernel agrees (the entry is the kernel's, not made up)
    const k = await lab.must(lab.gw, ['ip', '-6', 'neigh', 'show', 'dev', IF.lan]);
    assert.match(k, new RegExp(`${ADDR6.hostA} lladdr ${macA}`));
  });

  test("the other LAN host's addresses: not the same host", async () => {
    for (const target of [ADDR6.hostB, ADDR6.hostBTemp]) {
      const r = await call({ op: 'sameHost', requester: ADDR6.hostATemp, target, ensure: true });
      assert.equal(r.same, false, target);
      assert.equal(r.verdict, 'different', r.reason);
      assert.match(r.reason ?? '', new RegExp(macB));
    }
  });

  test('an address nobody on the LAN has: unknown after the probe, refused', async () => {
    const r = await call({ op: 'sameHost', requester: ADDR6.hostA, target: '2001:db8:77::99', ensure: true });
    assert.equal(r.same, false);
    assert.equal(r.verdict, 'unknown', r.reason);
  });
});
