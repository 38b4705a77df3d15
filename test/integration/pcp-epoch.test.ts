/**
 * Epoch, unsolicited announcements, rate limiting and shutdown of the PCP server,
 * on loopback with the fixed clock (announcements go to a loopback socket, not multicast).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  decodeNatPmpResponse,
  decodePcpResponse,
  encodeNatPmpRequest,
  Opcode,
  ResultCode,
} from '../../protocols/pcp/index.js';
import { EXTERNAL, mapRequest, startPcp, udpClient } from './pcp-helpers.js';

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

function split(packets: Buffer[]) {
  return {
    pcp: packets.filter((p) => p[0] === 2).map((p) => decodePcpResponse(p)),
    natpmp: packets.filter((p) => p[0] === 0).map((p) => decodeNatPmpResponse(p)),
  };
}

test('start announces: PCP ANNOUNCE and the NAT-PMP external address, repeated with backing-off gaps', async () => {
  const h = await startPcp({ announce: true });
  try {
    await waitFor(() => h.announcements.length >= 2);
    let a = split(h.announcements);
    assert.equal(a.pcp.length, 1);
    assert.equal(a.pcp[0]!.opcode, Opcode.ANNOUNCE);
    assert.equal(a.pcp[0]!.resultCode, ResultCode.SUCCESS);
    assert.equal(a.pcp[0]!.lifetime, 0);
    assert.deepEqual(a.natpmp, [{ opcode: 0, resultCode: 0, epoch: 0, externalAddress: EXTERNAL }]);
    h.env.clock.advance(250); // second of three sends
    await waitFor(() => h.announcements.length >= 4);
    h.env.clock.advance(500); // third
    await waitFor(() => h.announcements.length >= 6);
    h.env.clock.advance(60_000); // no fourth with announceRepeats: 3
    await new Promise((r) => setTimeout(r, 100));
    a = split(h.announcements);
    assert.equal(a.pcp.length, 3);
    assert.equal(a.natpmp.length, 3);
  } finally {
    await h.close();
  }
});

test('epoch counts seconds; resetEpoch() restarts it and announces', async () => {
  const h = await startPcp({ announce: true });
  const c = await udpClient();
  try {
    h.env.clock.advance(100_000);
    let r = decodeNatPmpResponse(await c.ask(encodeNatPmpRequest({ opcode: 0 }), h.port));
    assert.equal(r.epoch, 100);
    h.announcements.length = 0;
    h.server.resetEpoch('test: state lost');
    await waitFor(() => h.announcements.length >= 2);
    assert.equal(split(h.announcements).pcp[0]!.epoch, 0);
    h.env.clock.advance(3000);
    r = decodeNatPmpResponse(await c.ask(encodeNatPmpRequest({ opcode: 0 }), h.port));
    assert.equal(r.epoch, 3);
  } finally {
    c.close();
    await h.close();
  }
});

test('a changed external address resets the epoch and announces the new address', async () => {
  const h = await startPcp({ announce: true });
  try {
    h.env.clock.advance(20_000); // the start series is sent meanwhile; let it arrive before looking
    await waitFor(() => h.announcements.length >= 6);
    assert.equal(h.server.epoch(), 20);
    await h.env.table.setExternalAddress('203.0.113.77');
    h.env.clock.advance(5000); // the server's address check runs every 5 s
    const fresh = () =>
      split(h.announcements).natpmp.filter((a) => 'externalAddress' in a && a.externalAddress === '203.0.113.77');
    await waitFor(() => fresh().length >= 1);
    assert.deepEqual(fresh()[0], { opcode: 0, resultCode: 0, epoch: 0, externalAddress: '203.0.113.77' });
    assert.equal(h.server.epoch(), 0);
  } finally {
    await h.close();
  }
});

test('rate limit: a flooding client is cut off, another client is still served; drops counted', async () => {
  const h = await startPcp({ pcp: { rateLimit: 5 } });
  const flood = await udpClient('127.0.0.1');
  const other = await udpClient('127.0.0.2');
  try {
    for (let i = 0; i < 20; i++) flood.send(encodeNatPmpRequest({ opcode: 0 }), h.port);
    let answers = 0;
    while (await flood.next(300)) answers++;
    assert.equal(answers, 5, "a burst of one second's worth, then nothing");
    const r = decodeNatPmpResponse(await other.ask(encodeNatPmpRequest({ opcode: 0 }), h.port));
    assert.equal(r.resultCode, 0);
    const text = await h.env.metrics.registry.getSingleMetricAsString('portd_rate_limited_total');
    assert.match(text, /portd_rate_limited_total\{frontend="pcp"\} 15/);
    h.env.clock.advance(1000); // tokens come back with time
    assert.equal(decodeNatPmpResponse(await flood.ask(encodeNatPmpRequest({ opcode: 0 }), h.port)).resultCode, 0);
  } finally {
    flood.close();
    other.close();
    await h.close();
  }
});

test('requests are counted by front-end and result', async () => {
  const h = await startPcp();
  const c = await udpClient();
  try {
    await c.ask(mapRequest({ internalPort: 6000 }), h.port);
    await c.ask(encodeNatPmpRequest({ opcode: 0 }), h.port);
    const text = await h.env.metrics.registry.getSingleMetricAsString('portd_requests_total');
    assert.match(text, /frontend="pcp",result="SUCCESS"\} 1/);
    assert.match(text, /frontend="natpmp",result="SUCCESS"\} 1/);
  } finally {
    c.close();
    await h.close();
  }
});

test('close() frees the port: nothing answers afterwards', async () => {
  const h = await startPcp();
  const c = await udpClient();
  const port = h.port;
  await h.close();
  try {
    c.send(encodeNatPmpRequest({ opcode: 0 }), port);
    assert.equal(await c.next(300), null);
  } finally {
    c.close();
  }
});
