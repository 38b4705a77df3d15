/**
 * PCP MAP for an IPv6 internal address (issue 15 item 5): a pinhole, a lease of family 6 with no
 * translation (RFC 6887 §11.3: the assigned external address and port are the internal ones), a
 * FILTER of one whole IPv6 remote address (/128), ADDRESS_MISMATCH across families (§8.3), and
 * NOT_AUTHORIZED when pinholes are off or the address cannot be reached from the WAN.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pino from 'pino';
import {
  decodePcpResponse,
  encodePcpRequest,
  IpProtocol,
  Opcode,
  ResultCode,
  Version,
  type PcpOption,
} from '../../protocols/pcp/index.js';
import { createPcpHandler } from '../../src/frontends/pcp/handler.js';
import type { LeaseTableApi } from '../../src/leases/table-api.js';
import type { GrantResult, Lease, LeaseRequest, ReleaseRequest } from '../../src/leases/types.js';
import { testPolicy } from '../helpers/leases.js';

const HOST = '2001:db8:77::10';
const WAN_PEER = '2001:db8:113::2';

function setup(ipv6Pinholes = true) {
  const requests: LeaseRequest[] = [];
  const releases: ReleaseRequest[] = [];
  const leases = {
    externalAddress: () => '203.0.113.1',
    findByInternal: () => null,
    async request(r: LeaseRequest): Promise<GrantResult> {
      requests.push(r);
      const lease = {
        id: 'l1',
        family: r.family,
        protocol: r.protocol,
        externalAddress: r.family === 6 ? r.internalAddress : '203.0.113.1',
        externalPort: r.externalPort ?? 40000,
        externalPortEnd: r.externalPort ?? 40000,
        internalAddress: r.internalAddress,
        internalPort: r.internalPort,
      } as unknown as Lease;
      return { ok: true, lease, created: true, lifetime: r.lifetime };
    },
    async release(r: ReleaseRequest) {
      releases.push(r);
      return { ok: true, lease: null };
    },
  } as unknown as LeaseTableApi;
  const handler = createPcpHandler({
    config: {
      pcp: { enabled: true, port: 0, peer: false, thirdParty: [], allowAllProtocols: false, rateLimit: 0, ipv6: true },
      natpmp: { enabled: true },
      policy: testPolicy(),
      limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0 },
    },
    leases,
    log: pino({ level: 'silent' }),
    conntrack: null,
    epoch: () => 5,
    now: () => 0,
    ipv6Pinholes,
  });
  return { handler, requests, releases };
}

function map(
  client: string,
  over: { lifetime?: number; internalPort?: number; externalPort?: number; externalAddress?: string } = {},
  options: PcpOption[] = [],
) {
  return encodePcpRequest({
    version: Version.PCP,
    opcode: Opcode.MAP,
    lifetime: over.lifetime ?? 600,
    clientAddress: client,
    options,
    map: {
      nonce: new Uint8Array(12).fill(3),
      protocol: IpProtocol.UDP,
      internalPort: over.internalPort ?? 3478,
      externalPort: over.externalPort ?? 0,
      externalAddress: over.externalAddress ?? '::',
    },
  });
}

const answer = async (h: ReturnType<typeof setup>, packet: Uint8Array, source: string) => {
  const r = await h.handler.handle(packet, source);
  assert.ok(r.response, `answered (${r.result} ${r.detail ?? ''})`);
  return decodePcpResponse(r.response);
};

describe('PCP MAP for an IPv6 internal address: a pinhole', () => {
  it('grants a family-6 lease: external endpoint = internal endpoint, whatever port was suggested', async () => {
    const h = setup();
    const res = await answer(h, map(HOST, { externalPort: 9999 }), HOST);
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.map?.externalAddress, HOST);
    assert.equal(res.map?.externalPort, 3478);
    const req = h.requests[0]!;
    assert.equal(req.family, 6);
    assert.equal(req.internalAddress, HOST);
    assert.equal(req.externalPort, 3478);
    assert.equal(req.allowOtherPort, false);
    assert.equal(req.owner, HOST);
  });

  it('PREFER_FAILURE with another suggested port: CANNOT_PROVIDE_EXTERNAL, nothing asked', async () => {
    const h = setup();
    const res = await answer(h, map(HOST, { externalPort: 9999 }, [{ kind: 'prefer_failure' }]), HOST);
    assert.equal(res.resultCode, ResultCode.CANNOT_PROVIDE_EXTERNAL);
    assert.equal(h.requests.length, 0);
  });

  it('FILTER: a whole IPv6 remote address (/128) or a prefix (its network) is kept; a remote port or an IPv4 peer is refused', async () => {
    const h = setup();
    const ok = await answer(
      h,
      map(HOST, {}, [{ kind: 'filter', prefixLength: 128, remotePort: 0, remoteAddress: '2001:DB8:113:0::2' }]),
      HOST,
    );
    assert.equal(ok.resultCode, ResultCode.SUCCESS);
    assert.equal(h.requests[0]!.remoteAddress, WAN_PEER, 'canonical text');
    assert.equal(h.requests[0]!.remotePrefix, 128);
    // RFC 6887 §13.3: a prefix; the address is kept as the prefix's network, host bits cleared
    const wide = await answer(
      h,
      map(HOST, {}, [{ kind: 'filter', prefixLength: 64, remotePort: 0, remoteAddress: '2001:db8:113::2' }]),
      HOST,
    );
    assert.equal(wide.resultCode, ResultCode.SUCCESS);
    assert.equal(h.requests[1]!.remoteAddress, '2001:db8:113::');
    assert.equal(h.requests[1]!.remotePrefix, 64);
    const port = await answer(
      h,
      map(HOST, {}, [{ kind: 'filter', prefixLength: 64, remotePort: 80, remoteAddress: '2001:db8:113::' }]),
      HOST,
    );
    assert.equal(port.resultCode, ResultCode.EXCESSIVE_REMOTE_PEERS);
    const v4 = await answer(
      h,
      map(HOST, {}, [{ kind: 'filter', prefixLength: 128, remotePort: 0, remoteAddress: '203.0.113.2' }]),
      HOST,
    );
    assert.equal(v4.resultCode, ResultCode.MALFORMED_OPTION);
    assert.equal(h.requests.length, 2);
  });

  it('lifetime 0 releases the pinhole by its internal endpoint', async () => {
    const h = setup();
    const res = await answer(h, map(HOST, { lifetime: 0 }), HOST);
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(h.releases[0]!.internalAddress, HOST);
    assert.equal(h.releases[0]!.internalPort, 3478);
  });

  it('NOT_AUTHORIZED when pinholes are off, or for a link-local internal address', async () => {
    const off = setup(false);
    assert.equal((await answer(off, map(HOST), HOST)).resultCode, ResultCode.NOT_AUTHORIZED);
    const on = setup();
    const ll = 'fe80::10';
    assert.equal((await answer(on, map(ll), `${ll}%lan0`)).resultCode, ResultCode.NOT_AUTHORIZED);
    assert.equal(on.requests.length + off.requests.length, 0);
  });

  it('an IPv4 client address sent from an IPv6 source (and the other way) is ADDRESS_MISMATCH (§8.3)', async () => {
    const h = setup();
    assert.equal((await answer(h, map('192.168.77.10'), HOST)).resultCode, ResultCode.ADDRESS_MISMATCH);
    assert.equal((await answer(h, map(HOST), '192.168.77.10')).resultCode, ResultCode.ADDRESS_MISMATCH);
    assert.equal(h.requests.length, 0);
  });

  it('an IPv4 MAP is unchanged: translation to the external address, another port allowed', async () => {
    const h = setup();
    const res = await answer(h, map('192.168.77.10'), '192.168.77.10');
    assert.equal(res.resultCode, ResultCode.SUCCESS);
    assert.equal(res.map?.externalAddress, '203.0.113.1');
    assert.equal(h.requests[0]!.family, undefined);
    assert.equal(h.requests[0]!.allowOtherPort, true);
  });
});
