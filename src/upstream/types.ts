/**
 * What every upstream client (PCP, NAT-PMP, UPnP IGD) offers the manager: one mapping request, one delete,
 * one probe. Answers are hostile input: each client bounds sizes and time itself.
 */
import type { UpstreamProtocol, UpstreamRefusal } from '../leases/upstream.js';

export interface MapRequest {
  readonly protocol: 'tcp' | 'udp';
  /** the port on the gateway's WAN address that the upstream should forward to (the local lease's external port) */
  readonly internalPort: number;
  /** suggested upstream external port (the same number: the public port is then the one the LAN client asked for) */
  readonly suggestedPort: number;
  readonly lifetime: number;
  /** PCP: 24 hex chars, kept for renewals and the delete */
  readonly nonce: string | null;
  readonly description: string;
}

export type MapResult =
  | {
      readonly ok: true;
      readonly externalAddress: string | null;
      readonly externalPort: number;
      readonly lifetime: number;
      readonly epoch: number | null;
    }
  | { readonly ok: false; readonly reason: UpstreamRefusal; readonly detail: string; readonly epoch?: number | null };

export type ProbeResult =
  | { readonly ok: true; readonly epoch: number | null; readonly externalAddress: string | null }
  | { readonly ok: false; readonly detail: string };

export interface UpstreamClient {
  readonly protocol: UpstreamProtocol;
  /** for the record and the logs: an address, or the IGD's host:port */
  readonly server: string;
  map(req: MapRequest, timeoutMs: number): Promise<MapResult>;
  unmap(req: MapRequest & { readonly externalPort: number }, timeoutMs: number): Promise<MapResult>;
  probe(timeoutMs: number): Promise<ProbeResult>;
  /**
   * Does the upstream still hold this mapping? For protocols without an epoch (UPnP): the manager asks for one
   * mapping per probe, and a missing one (a restarted router) re-creates them all. null: could not tell.
   */
  holds?(protocol: 'tcp' | 'udp', externalPort: number, timeoutMs: number): Promise<boolean | null>;
  /** an unsolicited message that says the upstream lost its state (PCP ANNOUNCE, NAT-PMP address announcement) */
  onAnnounce(fn: (epoch: number | null) => void): void;
  close(): Promise<void>;
}
