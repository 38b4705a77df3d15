export { Namespace, UPNP_DOMAIN, DeviceType, ServiceType, deviceUrn, serviceUrn, parseServiceUrn } from './urn.js';
export { UpnpErrorCode, UpnpErrorDescription, SoapDecodeError } from './errors.js';
export type { SoapDecodeErrorKind } from './errors.js';
export { escapeXml, decodeXmlText } from './xml.js';
export { igdTree, walkDevices, walkServices, advertisementsOf, defaultConnectionService } from './device-tree.js';
export type { DeviceNode, ServiceNode, IgdUuids } from './device-tree.js';
export { encodeDeviceDescription } from './description.js';
export type { DescriptionInfo } from './description.js';
export {
  wanIpConnectionDescription,
  wanCommonInterfaceConfigDescription,
  layer3ForwardingDescription,
  wanIpv6FirewallControlDescription,
  serviceDescription,
  encodeScpd,
  actionInArguments,
} from './scpd.js';
export type { ServiceDescription, ActionSpec, ArgumentSpec, StateVariableSpec } from './scpd.js';
export {
  decodeSoapRequest,
  parseSoapActionHeader,
  encodeSoapResponse,
  encodeSoapFault,
  assertNoDeclarations,
  cdata,
  SOAP_MAX_BODY_BYTES,
} from './soap.js';
export type { SoapRequest, SoapActionHeader, SoapValue } from './soap.js';
export { encodePortListing } from './port-listing.js';
export type { PortListingEntry } from './port-listing.js';
export { encodePropertySet, parseCallbackHeader, parseTimeoutHeader, formatTimeoutHeader } from './gena.js';
