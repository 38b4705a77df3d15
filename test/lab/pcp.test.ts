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
import { decodePcpResponse, encodePcpRequest, nonceFromHex, ResultCode } from '../../protocols/pcp/index.js';
import {
  ADDR,
  createLab,
  hasTool,
  labSkip,
  startLabProcess,
  type Agent,
  type Lab,
  type LabProcess,
} from './harness.js';

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

    const add = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8100', '9100', 'tcp', '600'], {
      timeoutMs: 15_000,
    });
    assert.match(add.stdout, /Public IP address : 203\.0\.113\.1/, add.stdout + add.stderr);
    assert.match(
      add.stdout,
      /Mapped public port 8100 protocol TCP to local port 9100 liftime 600/,
      add.stdout + add.stderr,
    );
    const kernel = await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']);
    assert.match(kernel, /tcp \. 8100 .*: 192\.168\.77\.11 \. 9100/);

    const probe = await wan.tcpProbe(ADDR.gwWan, 8100, { data: 'hi' });
    assert.equal(probe.reply, `hostA|${ADDR.wanHost}|hi`);

    const del = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8100', '9100', 'tcp', '0'], {
      timeoutMs: 15_000,
    });
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.equal((await wan.tcpProbe(ADDR.gwWan, 8100, { timeoutMs: FAIL_MS })).ok, false, 'closed after the delete');
    assert.doesNotMatch(await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']), /tcp \. 8100 /);
  });

  test('a PCP mapping with a nonce survives natpmpc: its delete and its renewal are refused (result 2), the WAN host still connects', async () => {
    assert.ok((await hostA.listen('tcp', 9200)).ok);
    const nonce = nonceFromHex('5a5a5a5a5a5a5a5a5a5a5a5a');
    const map = (lifetime: number) =>
      Buffer.from(
        encodePcpRequest({
          version: 2,
          opcode: 1,
          lifetime,
          clientAddress: ADDR.hostA,
          options: [],
          map: { nonce, protocol: 6, internalPort: 9200, externalPort: 8200, externalAddress: '0.0.0.0' },
        }),
      ).toString('hex');
    const made = await hostA.call('udpBytes', { host: ADDR.gwLan, port: 5351, hex: map(600), timeoutMs: 3000 });
    assert.ok(made.ok, JSON.stringify(made));
    const res = decodePcpResponse(Buffer.from(String(made.reply), 'hex'));
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.map?.externalPort, 8200);

    // the real client, from the same host (as any process there, or a LAN host spoofing its address, could)
    const del = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8200', '9200', 'tcp', '0'], {
      timeoutMs: 15_000,
    });
    assert.notEqual(del.code, 0, `natpmpc's delete must fail: ${del.stdout}${del.stderr}`);
    const renew = await lab.exec(lab.lanA, ['natpmpc', '-g', ADDR.gwLan, '-a', '8201', '9200', 'tcp', '3600'], {
      timeoutMs: 15_000,
    });
    assert.doesNotMatch(
      renew.stdout,
      /Mapped public port/,
      `natpmpc must not get the mapping: ${renew.stdout}${renew.stderr}`,
    );
    assert.match(
      await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
      /tcp \. 8200 .*: 192\.168\.77\.11 \. 9200/,
    );
    assert.doesNotMatch(
      await lab.must(lab.gw, ['nft', 'list', 'map', 'inet', 'portd', 'fwd4']),
      /tcp \. 8201 /,
      'no second mapping',
    );
    const probe = await wan.tcpProbe(ADDR.gwWan, 8200, { data: 'still' });
    assert.equal(probe.reply, `hostA|${ADDR.wanHost}|still`);

    // the owner, with its nonce, deletes it
    const gone = await hostA.call('udpBytes', { host: ADDR.gwLan, port: 5351, hex: map(0), timeoutMs: 3000 });
    assert.equal(decodePcpResponse(Buffer.from(String(gone.reply), 'hex')).resultCode, ResultCode.SUCCESS);
    assert.equal(
      (await wan.tcpProbe(ADDR.gwWan, 8200, { timeoutMs: FAIL_MS })).ok,
      false,
      "closed after the owner's delete",
    );
  });

  test('a PCP request from the WAN side is not answered (front-ends listen on the LAN only)', async () => {
    const sock = await wan.udpOpen();
    assert.ok(sock.ok);
    const r = await wan.udpSend(sock.sock!, ADDR.gwWan, 5351, '\u0000\u0000', FAIL_MS);
    assert.equal(r.ok, false);
  });
});
