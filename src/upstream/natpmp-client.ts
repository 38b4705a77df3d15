/**
 * NAT-PMP client (RFC 6886) to the upstream NAT, on the codec of protocols/pcp/natpmp.ts: MAP_TCP / MAP_UDP
 * per chained lease (§3.3), lifetime 0 to delete (§3.4), the external address request as the probe (§3.2).
 * An unsolicited external address announcement (§3.2.1, a restarted NAT) is reported to the manager.
 */
import {
  NAT_PMP_RESULT_CODE_NAMES,
  NatPmpOpcode,
  NatPmpResultCode,
  Port,
  decodeNatPmpResponse,
  encodeNatPmpRequest,
} from '../../protocols/pcp/index.js';
import type { NatPmpResponse } from '../../protocols/pcp/index.js';
import type { UpstreamRefusal } from '../leases/upstream.js';
import type { MapRequest, MapResult, ProbeResult, UpstreamClient } from './types.js';
import { openUdpExchange } from './udp-exchange.js';

/** NAT-PMP result code → neutral refusal (docs/double-nat.md) */
export function refusalForNatPmp(code: number): UpstreamRefusal {
  switch (code) {
    case NatPmpResultCode.NOT_AUTHORIZED:
      return 'not_authorized';
    case NatPmpResultCode.OUT_OF_RESOURCES:
      return 'no_resources';
    case NatPmpResultCode.NETWORK_FAILURE:
      return 'unavailable';
    default:
      return 'not_authorized';
  }
}

function tryDecode(b: Uint8Array): NatPmpResponse | null {
  try {
    return decodeNatPmpResponse(b);
  } catch {
    return null;
  }
}

export async function createNatPmpClient(opts: {
  readonly server: string;
  readonly port?: number;
  readonly localAddress: string | null;
}): Promise<UpstreamClient> {
  const ex = await openUdpExchange({
    server: opts.server,
    port: opts.port ?? Port.SERVER,
    localAddress: opts.localAddress,
  });
  let announce: (epoch: number | null) => void = () => {};
  let externalAddress: string | null = null;
  ex.onUnsolicited((b) => {
    const r = tryDecode(b);
    if (r && r.opcode === NatPmpOpcode.EXTERNAL_ADDRESS && 'externalAddress' in r) announce(r.epoch);
  });

  async function mapOnce(req: MapRequest, lifetime: number, timeoutMs: number): Promise<MapResult> {
    const opcode = req.protocol === 'udp' ? NatPmpOpcode.MAP_UDP : NatPmpOpcode.MAP_TCP;
    const t0 = Date.now();
    if (externalAddress === null && lifetime > 0) {
      const p = await probe(timeoutMs);
      if (!p.ok) return { ok: false, reason: 'unavailable', detail: p.detail };
    }
    const left = Math.max(100, timeoutMs - (Date.now() - t0));
    const packet = encodeNatPmpRequest({
      opcode,
      internalPort: req.internalPort,
      externalPort: lifetime === 0 ? 0 : req.suggestedPort,
      lifetime,
    });
    const b = await ex.request(
      packet,
      (x) => {
        const r = tryDecode(x);
        return !!r && r.opcode === opcode && (!('internalPort' in r) || r.internalPort === req.internalPort);
      },
      left,
    );
    if (!b)
      return { ok: false, reason: 'unavailable', detail: `no NAT-PMP answer from ${opts.server} in ${timeoutMs} ms` };
    const r = tryDecode(b)!;
    if (r.resultCode !== NatPmpResultCode.SUCCESS || !('externalPort' in r))
      return {
        ok: false,
        reason: refusalForNatPmp(r.resultCode),
        detail: `NAT-PMP ${NAT_PMP_RESULT_CODE_NAMES[r.resultCode] ?? r.resultCode} from ${opts.server}`,
        epoch: r.epoch,
      };
    if (lifetime > 0 && r.externalPort === 0)
      return { ok: false, reason: 'unavailable', detail: `NAT-PMP success from ${opts.server} without a port` };
    return { ok: true, externalAddress, externalPort: r.externalPort, lifetime: r.lifetime, epoch: r.epoch };
  }

  async function probe(timeoutMs: number): Promise<ProbeResult> {
    const b = await ex.request(
      encodeNatPmpRequest({ opcode: NatPmpOpcode.EXTERNAL_ADDRESS }),
      (x) => tryDecode(x)?.opcode === NatPmpOpcode.EXTERNAL_ADDRESS,
      timeoutMs,
    );
    if (!b) return { ok: false, detail: `no NAT-PMP answer from ${opts.server} in ${timeoutMs} ms` };
    const r = tryDecode(b)!;
    if (r.resultCode !== NatPmpResultCode.SUCCESS || !('externalAddress' in r))
      return { ok: false, detail: `NAT-PMP ${NAT_PMP_RESULT_CODE_NAMES[r.resultCode] ?? r.resultCode}` };
    externalAddress = r.externalAddress === '0.0.0.0' ? null : r.externalAddress;
    return { ok: true, epoch: r.epoch, externalAddress };
  }

  return {
    protocol: 'natpmp',
    server: opts.server,
    map: (req, timeoutMs) => mapOnce(req, Math.max(1, req.lifetime), timeoutMs),
    unmap: (req, timeoutMs) => mapOnce(req, 0, timeoutMs),
    probe,
    onAnnounce(fn) {
      announce = fn;
    },
    close: () => ex.close(),
  };
}
