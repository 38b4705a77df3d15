/**
 * PCP client (RFC 6887) to the upstream NAT, on the codec of protocols/pcp/: MAP for each chained lease
 * (§11), the same nonce to renew and to delete (lifetime 0, §15), ANNOUNCE as the probe (§14.1).
 * Unsolicited ANNOUNCE responses (a restarted server, §14.1.3) are reported to the manager.
 */
import {
  IpProtocol,
  Opcode,
  Port,
  RESULT_CODE_NAMES,
  ResultCode,
  Version,
  decodePcpResponse,
  encodePcpRequest,
  nonceFromHex,
  nonceHex,
  isUnspecified,
} from '../../protocols/pcp/index.js';
import type { PcpResponse } from '../../protocols/pcp/index.js';
import type { UpstreamRefusal } from '../leases/upstream.js';
import type { MapRequest, MapResult, ProbeResult, UpstreamClient } from './types.js';
import { openUdpExchange } from './udp-exchange.js';

/** PCP result code → neutral refusal (docs/double-nat.md, "Chaining upstream") */
export function refusalForPcp(code: number): UpstreamRefusal {
  switch (code) {
    case ResultCode.CANNOT_PROVIDE_EXTERNAL:
      return 'cannot_provide_external';
    case ResultCode.NO_RESOURCES:
    case ResultCode.USER_EX_QUOTA:
      return 'no_resources';
    case ResultCode.NETWORK_FAILURE:
      return 'unavailable';
    default:
      // NOT_AUTHORIZED, and what says our request was not understood (UNSUPP_*, MALFORMED_*, ADDRESS_MISMATCH):
      // the upstream will not map it, retrying does not help
      return 'not_authorized';
  }
}

function tryDecode(b: Uint8Array): PcpResponse | null {
  try {
    return decodePcpResponse(b);
  } catch {
    return null;
  }
}

export async function createPcpClient(opts: {
  readonly server: string;
  readonly port?: number;
  /** the gateway's WAN address (the PCP client address, §8.1) */
  readonly clientAddress: string;
}): Promise<UpstreamClient> {
  const port = opts.port ?? Port.SERVER;
  const ex = await openUdpExchange({ server: opts.server, port, localAddress: opts.clientAddress });
  let announce: (epoch: number | null) => void = () => {};
  ex.onUnsolicited((b) => {
    const r = tryDecode(b);
    if (r && r.opcode === Opcode.ANNOUNCE && r.resultCode === ResultCode.SUCCESS) announce(r.epoch);
  });

  async function mapOnce(req: MapRequest, lifetime: number, timeoutMs: number): Promise<MapResult> {
    if (!req.nonce) return { ok: false, reason: 'not_authorized', detail: 'a PCP mapping needs a nonce' };
    const nonce = nonceFromHex(req.nonce);
    const proto = req.protocol === 'tcp' ? IpProtocol.TCP : IpProtocol.UDP;
    const packet = encodePcpRequest({
      version: Version.PCP,
      opcode: Opcode.MAP,
      lifetime,
      clientAddress: opts.clientAddress,
      options: [],
      map: {
        nonce,
        protocol: proto,
        internalPort: req.internalPort,
        externalPort: req.suggestedPort,
        externalAddress: '0.0.0.0',
      },
    });
    const answer = await ex.request(
      packet,
      (b) => {
        const r = tryDecode(b);
        if (!r || r.opcode !== Opcode.MAP) return false;
        // an error may come without the opcode data; a success must name our mapping
        if (!r.map) return r.resultCode !== ResultCode.SUCCESS;
        return nonceHex(r.map.nonce) === req.nonce && r.map.internalPort === req.internalPort;
      },
      timeoutMs,
    );
    if (!answer)
      return { ok: false, reason: 'unavailable', detail: `no PCP answer from ${opts.server} in ${timeoutMs} ms` };
    const r = tryDecode(answer)!;
    if (r.version !== Version.PCP)
      return {
        ok: false,
        reason: 'not_authorized',
        detail: `the upstream speaks version ${r.version}`,
        epoch: r.epoch,
      };
    if (r.resultCode !== ResultCode.SUCCESS)
      return {
        ok: false,
        reason: refusalForPcp(r.resultCode),
        detail: `PCP ${RESULT_CODE_NAMES[r.resultCode] ?? r.resultCode} from ${opts.server}`,
        epoch: r.epoch,
      };
    const m = r.map!;
    if (lifetime > 0 && (m.externalPort === 0 || isUnspecified(m.externalAddress)))
      return {
        ok: false,
        reason: 'unavailable',
        detail: `PCP success from ${opts.server} without an external endpoint`,
      };
    return {
      ok: true,
      externalAddress: isUnspecified(m.externalAddress) ? null : m.externalAddress,
      externalPort: m.externalPort,
      lifetime: r.lifetime,
      epoch: r.epoch,
    };
  }

  return {
    protocol: 'pcp',
    server: opts.server,
    map: (req, timeoutMs) => mapOnce(req, Math.max(1, req.lifetime), timeoutMs),
    unmap: (req, timeoutMs) => mapOnce(req, 0, timeoutMs),
    async probe(timeoutMs): Promise<ProbeResult> {
      const packet = encodePcpRequest({
        version: Version.PCP,
        opcode: Opcode.ANNOUNCE,
        lifetime: 0,
        clientAddress: opts.clientAddress,
        options: [],
      });
      const b = await ex.request(packet, (x) => tryDecode(x)?.opcode === Opcode.ANNOUNCE, timeoutMs);
      if (!b) return { ok: false, detail: `no PCP answer from ${opts.server} in ${timeoutMs} ms` };
      const r = tryDecode(b)!;
      if (r.version !== Version.PCP || r.resultCode !== ResultCode.SUCCESS)
        return { ok: false, detail: `PCP ANNOUNCE answered ${RESULT_CODE_NAMES[r.resultCode] ?? r.resultCode}` };
      return { ok: true, epoch: r.epoch, externalAddress: null };
    },
    onAnnounce(fn) {
      announce = fn;
    },
    close: () => ex.close(),
  };
}
