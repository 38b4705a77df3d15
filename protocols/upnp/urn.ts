/** Names from the UPnP Device Architecture 1.1 (UDA) and the IGD v1 (2001) / v2 (2010) specifications. */
export const Namespace = {
  SOAP_ENVELOPE: 'http://schemas.xmlsoap.org/soap/envelope/', // SOAP 1.1 §4.1.2
  SOAP_ENCODING: 'http://schemas.xmlsoap.org/soap/encoding/', // SOAP 1.1 §5
  DEVICE: 'urn:schemas-upnp-org:device-1-0', // UDA 1.1 §2.3
  SERVICE: 'urn:schemas-upnp-org:service-1-0', // UDA 1.1 §2.5
  CONTROL: 'urn:schemas-upnp-org:control-1-0', // UDA 1.1 §3.2.2 (UPnPError)
  EVENT: 'urn:schemas-upnp-org:event-1-0', // UDA 1.1 §4.3.2 (propertyset)
  // WANIPConnection:2 2.00, state variable A_ARG_TYPE_PortListing
  PORT_LISTING: 'urn:schemas-upnp-org:gw:WANIPConnection',
} as const;

export const UPNP_DOMAIN = 'schemas-upnp-org';

export const DeviceType = {
  INTERNET_GATEWAY_DEVICE: 'InternetGatewayDevice',
  WAN_DEVICE: 'WANDevice',
  WAN_CONNECTION_DEVICE: 'WANConnectionDevice',
} as const;
export type DeviceType = (typeof DeviceType)[keyof typeof DeviceType];

export const ServiceType = {
  WAN_IP_CONNECTION: 'WANIPConnection',
  WAN_COMMON_INTERFACE_CONFIG: 'WANCommonInterfaceConfig',
  LAYER3_FORWARDING: 'Layer3Forwarding',
  WAN_IPV6_FIREWALL_CONTROL: 'WANIPv6FirewallControl', // IGD:2 only, in WANConnectionDevice:2
} as const;
export type ServiceType = (typeof ServiceType)[keyof typeof ServiceType];

export function deviceUrn(type: DeviceType, version: number): string {
  return `urn:${UPNP_DOMAIN}:device:${type}:${version}`;
}

export function serviceUrn(type: ServiceType, version: number): string {
  return `urn:${UPNP_DOMAIN}:service:${type}:${version}`;
}

/** `urn:schemas-upnp-org:service:WANIPConnection:2` → { type, version }; null for anything else */
export function parseServiceUrn(urn: string): { type: string; version: number } | null {
  const m = /^urn:schemas-upnp-org:service:([A-Za-z0-9_-]{1,64}):(\d{1,3})$/.exec(urn.trim());
  if (!m) return null;
  return { type: m[1]!, version: Number(m[2]) };
}
