/**
 * PCP over IPv6 transport (pcp.ipv6: true) on ::1: portd answers there, but opens no IPv6 pinholes
 * (docs/pcp.md, deviations): ANNOUNCE succeeds, MAP for an IPv6 internal address is NOT_AUTHORIZED
 * and leaves no lease. With pcp.ipv6 off, IPv6 listen addresses are not bound at all.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { decodePcpResponse, encodePcpRequest, nonceFromHex, Opcode, ResultCode } from '../../protocols/pcp/index.js';
import { startPcp, type Harness, NONCE_A } from './pcp-helpers.js';

async function ask6(port: number, bytes: Uint8Array, ms = 2000): Promise<Buffer | null> {
  const s = createSocket('udp6');
  await new Promise<void>((r) => s.bind(0, '::1', r));
  try {
    return await new Promise<Buffer | null>((resolve) => {
      const t = setTimeout(() => resolve(null), ms);
      s.once('message', (m) => {
        clearTimeout(t);
        resolve(m);
      });
      s.send(bytes, port, '::1');
    });
  } finally {
    s.close();
  }
}

const map6 = (lifetime = 3600) =>
  encodePcpRequest({
    version: 2,
    opcode: 1,
    lifetime,
    clientAddress: '::1',
    options: [],
    map: { nonce: nonceFromHex(NONCE_A), protocol: 6, internalPort: 5000, externalPort: 5000, externalAddress: '::' },
  });

describe('PCP over IPv6 (pcp.ipv6: true, listening on ::1)', () => {
  let h: Harness;
  let port6: number;
  before(async () => {
    h = await startPcp({ pcp: { ipv6: true }, extra: { listen: ['127.0.0.1', '::1'] } });
    const a = h.server.addresses().find((x) => x.address === '::1');
    assert.ok(a, `listening on ::1 (${JSON.stringify(h.server.addresses())})`);
    port6 = a.port;
  });
  after(async () => {
    await h.close();
  });

  test('ANNOUNCE from an IPv6 client is answered with SUCCESS', async () => {
    const r = await ask6(
      port6,
      encodePcpRequest({ version: 2, opcode: 0, lifetime: 0, clientAddress: '::1', options: [] }),
    );
    assert.ok(r, 'an answer over IPv6');
    const d = decodePcpResponse(r);
    assert.equal(d.opcode, Opcode.ANNOUNCE);
    assert.equal(d.resultCode, ResultCode.SUCCESS);
  });

  test('MAP for an IPv6 internal address is refused with NOT_AUTHORIZED and leaves no lease', async () => {
    const r = await ask6(port6, map6());
    assert.ok(r, 'an answer over IPv6');
    const d = decodePcpResponse(r);
    assert.equal(d.opcode, Opcode.MAP);
    assert.equal(d.resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(h.env.table.countActive().total, 0);
  });

  test('a header client address that differs from the IPv6 source gets ADDRESS_MISMATCH', async () => {
    const bytes = encodePcpRequest({ version: 2, opcode: 0, lifetime: 0, clientAddress: '2001:db8::1', options: [] });
    const r = await ask6(port6, bytes);
    assert.ok(r);
    assert.equal(decodePcpResponse(r).resultCode, ResultCode.ADDRESS_MISMATCH);
  });
});

describe('PCP with pcp.ipv6 off', () => {
  test('IPv6 listen addresses are not bound', async () => {
    const h = await startPcp({ pcp: { ipv6: false }, extra: { listen: ['127.0.0.1', '::1'] } });
    try {
      assert.deepEqual(
        h.server.addresses().map((a) => a.address),
        ['127.0.0.1'],
      );
    } finally {
      await h.close();
    }
  });
});
