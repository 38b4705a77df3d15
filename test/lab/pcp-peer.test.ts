/**
 * Lab: PCP PEER (RFC 6887 §12) against the gateway namespace's real kernel conntrack.
 *
 * The gateway gets outbound NAT the way a router's firewall would give it — its own table
 * `ip labnat` (in the gateway namespace only) SNATs LAN → WAN to 203.0.113.1 with a port range
 * (62000-62100), so a flow's external port differs from its internal one. A LAN host opens a UDP
 * flow to the WAN host; a PEER request for it must report the translated endpoint conntrack holds
 * (the reply tuple) and lengthen the flow's conntrack timeout; a PEER for a flow that does not
 * exist gets the documented answer (docs/pcp.md: NO_RESOURCES, short lifetime, nothing created).
 * Root only (namespaces); a failure under CI=true.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  decodePcpResponse,
  encodePcpRequest,
  ERROR_LIFETIME,
  IpProtocol,
  Opcode,
  ResultCode,
  RESULT_CODE_NAMES,
  Version,
  type PcpResponse,
} from '../../protocols/pcp/index.js';
import { parseConntrackLine, type FlowInfo } from '../../src/frontends/pcp/conntrack.js';
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

const skip = labSkip('pcp-peer') || (hasTool('conntrack') ? false : 'conntrack (conntrack-tools) not installed');
const HERE = dirname(fileURLToPath(import.meta.url));

const NAT_LOW = 62000;
const NAT_HIGH = 62100;
const INTERNAL_PORT = 40000;
const REMOTE_PORT = 7000;
/** the gateway's PCP lifetime policy is 60 s – 24 h (pcp-gateway.ts); both UDP conntrack timeouts are far below this */
const PEER_LIFETIME = 900;
/** how often the gateway's conntrack keeper re-extends held flows (LAB_PCP_KEEP_MS) */
const KEEP_MS = 500;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** outbound NAT for the lab, in the gateway namespace only; the namespace (and the table) goes at teardown */
const LABNAT = `
table ip labnat {
  chain postrouting {
    type nat hook postrouting priority srcnat + 10; policy accept;
    oifname "wan0" ip saddr 192.168.77.0/24 ip protocol udp snat to ${ADDR.gwWan}:${NAT_LOW}-${NAT_HIGH}
    oifname "wan0" ip saddr 192.168.77.0/24 ip protocol tcp snat to ${ADDR.gwWan}:${NAT_LOW}-${NAT_HIGH}
  }
}
`;

describe('PCP PEER against the real conntrack of the gateway', { skip, timeout: 120_000 }, () => {
  let lab: Lab;
  let gw: LabProcess | null = null;
  let hostA: Agent, wan: Agent;
  let dir: string;
  let flowSock = 0;

  /** the conntrack entries of hostA's UDP flows from `sport` (in the gateway namespace) */
  async function flows(sport: number): Promise<{ line: string; info: FlowInfo }[]> {
    const r = await lab.exec(lab.gw, [
      'conntrack',
      '-L',
      '-p',
      'udp',
      '--orig-src',
      ADDR.hostA,
      '--sport',
      String(sport),
    ]);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .split('\n')
      .map((line) => ({ line, info: parseConntrackLine(line) }))
      .filter((x): x is { line: string; info: FlowInfo } => x.info !== null);
  }

  async function onlyFlow(sport: number): Promise<{ line: string; info: FlowInfo }> {
    const f = await flows(sport);
    assert.equal(f.length, 1, `one conntrack entry for ${ADDR.hostA}:${sport}: ${JSON.stringify(f)}`);
    return f[0]!;
  }

  /** hostA sends a PEER request from an ephemeral port to the gateway's PCP port; the decoded answer */
  async function peer(
    internalPort: number,
    remotePort: number,
    lifetime: number,
    nonce = randomBytes(12),
  ): Promise<PcpResponse> {
    const req = encodePcpRequest({
      version: Version.PCP,
      opcode: Opcode.PEER,
      lifetime,
      clientAddress: ADDR.hostA,
      options: [],
      peer: {
        nonce: new Uint8Array(nonce),
        protocol: IpProtocol.UDP,
        internalPort,
        externalPort: 0,
        externalAddress: '0.0.0.0',
        remotePort,
        remoteAddress: ADDR.wanHost,
      },
    });
    const r = await hostA.call('udpBytes', {
      host: ADDR.gwLan,
      port: 5351,
      hex: Buffer.from(req).toString('hex'),
      timeoutMs: 3000,
    });
    assert.ok(r.ok, `PCP answer: ${r.error ?? ''}`);
    const res = decodePcpResponse(Buffer.from(r.reply!, 'hex'));
    assert.equal(res.version, Version.PCP);
    assert.equal(res.opcode, Opcode.PEER);
    assert.equal(Buffer.from(res.peer?.nonce ?? []).toString('hex'), nonce.toString('hex'), 'nonce echoed');
    return res;
  }

  before(async () => {
    lab = await createLab();
    const nat = await lab.nft(LABNAT);
    assert.equal(nat.code, 0, nat.stderr);
    dir = mkdtempSync(join(tmpdir(), 'portd-lab-pcp-peer-'));
    gw = await startLabProcess(lab.gw, join(HERE, 'pcp-gateway.ts'), [dir], {
      env: { LAB_PCP_PEER: '1', LAB_PCP_KEEP_MS: String(KEEP_MS) },
    });
    hostA = await lab.agent(lab.lanA, 'hostA');
    wan = await lab.agent(lab.wan, 'wan');
    assert.ok((await wan.listen('udp', REMOTE_PORT)).ok);
  });

  after(async () => {
    await gw?.stop();
    await lab?.teardown();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a UDP flow from the LAN is translated by the lab NAT (conntrack shows the external port)', async () => {
    const o = await hostA.udpOpen({ port: INTERNAL_PORT });
    assert.ok(o.ok, o.error);
    flowSock = o.sock!;
    const echo = await hostA.udpSend(flowSock, ADDR.wanHost, REMOTE_PORT, 'hello');
    assert.equal(echo.reply, `wan|${ADDR.gwWan}|hello`, 'the WAN host saw the gateway address');
    const { line, info } = await onlyFlow(INTERNAL_PORT);
    assert.match(
      line,
      new RegExp(`dst=${ADDR.wanHost.replace(/\./g, '\\.')} sport=${INTERNAL_PORT} dport=${REMOTE_PORT}`),
    );
    assert.equal(info.externalAddress, ADDR.gwWan);
    assert.ok(
      info.externalPort >= NAT_LOW && info.externalPort <= NAT_HIGH,
      `translated port ${info.externalPort}: ${line}`,
    );
    assert.ok(info.timeout !== null && info.timeout < PEER_LIFETIME, `conntrack's own UDP timeout is short: ${line}`);
  });

  test("PEER reports the flow's translated endpoint and extends its conntrack timeout", async () => {
    const before = await onlyFlow(INTERNAL_PORT);
    const res = await peer(INTERNAL_PORT, REMOTE_PORT, PEER_LIFETIME);
    assert.equal(res.resultCode, ResultCode.SUCCESS, RESULT_CODE_NAMES[res.resultCode]);
    assert.equal(res.lifetime, PEER_LIFETIME);
    assert.equal(res.peer?.externalAddress, before.info.externalAddress);
    assert.equal(res.peer?.externalPort, before.info.externalPort);
    assert.equal(res.peer?.internalPort, INTERNAL_PORT);
    assert.equal(res.peer?.remoteAddress, ADDR.wanHost);
    assert.equal(res.peer?.remotePort, REMOTE_PORT);

    const afterPeer = await onlyFlow(INTERNAL_PORT);
    assert.equal(afterPeer.info.externalPort, before.info.externalPort, 'the same flow');
    // conntrack prints the seconds left: at most a second or two have passed since the update
    assert.ok(
      afterPeer.info.timeout !== null &&
        afterPeer.info.timeout >= PEER_LIFETIME - 2 &&
        afterPeer.info.timeout <= PEER_LIFETIME,
      `conntrack timeout after PEER ${PEER_LIFETIME}s: ${afterPeer.line}`,
    );
  });

  test('the extension survives traffic: the kernel resets the timeout on each packet, portd lengthens it again', async () => {
    const before = await onlyFlow(INTERNAL_PORT);
    // each packet sets a UDP flow's timeout back to 30 s / 120 s (nf_ct_refresh)
    for (let i = 0; i < 3; i++) {
      const echo = await hostA.udpSend(flowSock, ADDR.wanHost, REMOTE_PORT, `again${i}`);
      assert.equal(echo.reply, `wan|${ADDR.gwWan}|again${i}`, 'the flow still carries traffic');
    }
    // the keeper (every KEEP_MS here) lengthens it to what the PEER lifetime has left
    let last = await onlyFlow(INTERNAL_PORT);
    for (let i = 0; i < 40 && !(last.info.timeout !== null && last.info.timeout >= PEER_LIFETIME - 15); i++) {
      await sleep(KEEP_MS / 2);
      last = await onlyFlow(INTERNAL_PORT);
    }
    assert.equal(last.info.externalPort, before.info.externalPort, 'the same translation');
    assert.ok(
      last.info.timeout !== null && last.info.timeout >= PEER_LIFETIME - 15 && last.info.timeout <= PEER_LIFETIME,
      `held at the PEER lifetime after traffic: ${last.line}`,
    );
  });

  test("PEER with lifetime 0 answers SUCCESS and leaves the flow to conntrack's own timeout", async () => {
    const before = await onlyFlow(INTERNAL_PORT);
    const res = await peer(INTERNAL_PORT, REMOTE_PORT, 0);
    assert.equal(res.resultCode, ResultCode.SUCCESS, RESULT_CODE_NAMES[res.resultCode]);
    assert.equal(res.lifetime, 0);
    assert.equal(res.peer?.externalPort, before.info.externalPort);
    assert.equal(res.peer?.externalAddress, ADDR.gwWan);
    const echo = await hostA.udpSend(flowSock, ADDR.wanHost, REMOTE_PORT, 'last');
    assert.equal(echo.reply, `wan|${ADDR.gwWan}|last`);
    await sleep(KEEP_MS * 3); // three keeper passes: none may lengthen the flow again
    const f = await onlyFlow(INTERNAL_PORT);
    assert.ok(f.info.timeout !== null && f.info.timeout <= 120, `back to conntrack's UDP timeout: ${f.line}`);
  });

  test('PEER for a flow that does not exist: NO_RESOURCES with the short lifetime, no flow created', async () => {
    const missing = INTERNAL_PORT + 1;
    assert.equal((await flows(missing)).length, 0);
    const res = await peer(missing, REMOTE_PORT, PEER_LIFETIME);
    assert.equal(res.resultCode, ResultCode.NO_RESOURCES, RESULT_CODE_NAMES[res.resultCode]);
    assert.equal(res.lifetime, ERROR_LIFETIME.short);
    assert.equal(res.peer?.internalPort, missing, "the request's opcode data is copied");
    assert.equal((await flows(missing)).length, 0, 'PEER creates no flow ahead of traffic');
  });
});
