/**
 * Lab: a LAN host maps a port with natpmpc through the gateway running portd's PCP server on the
 * nftables driver; the WAN host reaches the LAN server through the mapping; deleting it
 * (lifetime 0) closes it. Root only (namespaces); a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, createLab, hasTool, labSkip, startLabProcess, type Agent, type Lab, type LabProcess } from './harness.js';

const skip = labSkip('pcp') || (hasTool('natpmpc') ? false : 'natpmpc not installed');
const HERE = dirname(fileURLToPath(import.meta.url));
const FAIL_MS = 700;

describe('PCP/NAT-PMP through the nftables gateway', { skip, timeout: 120_000 }, () => {
  let lab: Lab;
  let gw: LabProcess | null = null;
  let hostA: Agent, wan: Agent;
  let dir: string;

  before(async () => {
    lab = await createLab();
    dir = mkdtempSync(join(tmpdir(), 'portd-lab-pcp-'));
    gw = await startLabProcess(lab.gw, join(HERE, 'pcp-gateway.ts'), [dir]);
    hostA = await lab.agent(lab.lanA, 'hostA');
    wan = await lab.agent(lab.wan, 'wan');
  });

  after(async () => {
    await gw?.stop();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('natpmpc maps, the WAN host connects through it, lifetime 0 closes it', async () => {
    assert.ok((await hostA.listen('tcp', 9100)).ok);
    assert.equal((await wan.tcpProbe(ADDR.gwWan, 8100, { timeoutMs: FAIL_MS })).ok, false, 'closed before the mapping');

    const add = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8100', '9100', 'tcp', '600'], { timeoutMs: 15_000 });
    assert.match(add.stdout, /Public IP address : 203\.0\.113\.1/, add.stdout + add.stderr);
    assert.match(add.stdout, /Mapped public port 8100 protocol TCP to local port 9100 liftime 600/, add.stdout + add.stderr);
    const kernel = await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']);
    assert.match(kernel, /tcp \. 8100 .*: 192\.168\.77\.11 \. 9100/);

    const probe = await wan.tcpProbe(ADDR.gwWan, 8100, { data: 'hi' });
    assert.equal(probe.reply, `hostA|${ADDR.wanHost}|hi`);

    const del = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8100', '9100', 'tcp', '0'], { timeoutMs: 15_000 });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal((await wan.tcpProbe(ADDR.gwWan, 8100, { timeoutMs: FAIL_MS })).ok, false, 'closed after the delete');
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']), /tcp \. 8100 /);
  });

  test('a PCP request from the WAN side is not answered (front-ends listen on the LAN only)', async () => {
    const sock = await wan.udpOpen();
    assert.ok(sock.ok);
    const r = await wan.udpSend(sock.sock!, ADDR.gwWan, 5351, '\u0000\u0000', FAIL_MS);
    assert.equal(r.ok, false);
  });
});
