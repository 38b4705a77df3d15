import { Namespace } from './urn.js';
import { el } from './xml.js';

/** One entry of GetListOfPortMappings' NewPortListing (WANIPConnection:2, A_ARG_TYPE_PortListing). */
export interface PortListingEntry {
  /** '' for any remote host */
  readonly remoteHost: string;
  readonly externalPort: number;
  readonly protocol: 'TCP' | 'UDP';
  readonly internalPort: number;
  readonly internalClient: string;
  readonly enabled: boolean;
  readonly description: string;
  /** remaining seconds */
  readonly leaseTime: number;
}

/**
 * The PortMappingList document. It travels as the text of NewPortListing, so the SOAP encoder
 * escapes it once more; clients (miniupnpc's portlistingparse) unescape and parse it.
 */
export function encodePortListing(entries: readonly PortListingEntry[]): string {
  let s =
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<p:PortMappingList xmlns:p="${Namespace.PORT_LISTING}" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"` +
    ` xsi:schemaLocation="${Namespace.PORT_LISTING} http://www.upnp.org/schemas/gw/WANIPConnection-v2.xsd">`;
  for (const e of entries) {
    s +=
      '<p:PortMappingEntry>' +
      el('p:NewRemoteHost', e.remoteHost) +
      el('p:NewExternalPort', e.externalPort) +
      el('p:NewProtocol', e.protocol) +
      el('p:NewInternalPort', e.internalPort) +
      el('p:NewInternalClient', e.internalClient) +
      el('p:NewEnabled', e.enabled ? 1 : 0) +
      el('p:NewDescription', e.description) +
      el('p:NewLeaseTime', e.leaseTime) +
      '</p:PortMappingEntry>';
  }
  return s + '</p:PortMappingList>';
}
