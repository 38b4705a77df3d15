/** SSDP constants. UDA = UPnP Device Architecture 1.1 (2008), §1 Discovery. */
export const SSDP_MULTICAST_ADDRESS = '239.255.255.250'; // UDA 1.1 §1.1.2
/** UDA 1.1 §1.1.2 and Annex A: IPv6 link-local and site-local scope groups */
export const SSDP_MULTICAST_IPV6 = { linkLocal: 'ff02::c', siteLocal: 'ff05::c' } as const;
export const SSDP_PORT = 1900; // UDA 1.1 §1.1.2

/** Request methods and notification sub-types, spelled as in UDA 1.1 §1.2 and §1.3. */
export const SsdpMethod = {
  M_SEARCH: 'M-SEARCH', // UDA 1.1 §1.3.2
  NOTIFY: 'NOTIFY', // UDA 1.1 §1.2.2
} as const;

export const Nts = {
  ALIVE: 'ssdp:alive', // UDA 1.1 §1.2.2
  BYEBYE: 'ssdp:byebye', // UDA 1.1 §1.2.3
  UPDATE: 'ssdp:update', // UDA 1.1 §1.2.4
} as const;
export type Nts = (typeof Nts)[keyof typeof Nts];

export const SearchTarget = {
  ALL: 'ssdp:all', // UDA 1.1 §1.3.2
  ROOT_DEVICE: 'upnp:rootdevice', // UDA 1.1 §1.3.2
} as const;

/** MAN value of a search request, with its quotes. UDA 1.1 §1.3.2 */
export const MAN_DISCOVER = '"ssdp:discover"';

/** UDA 1.1 §1.3.2: MX "SHOULD be less than 5"; devices must treat larger values as 5. */
export const MX_MAX = 5;

/** Limits for incoming datagrams: anything beyond is ignored. A real M-SEARCH is < 400 bytes. */
export const SsdpLimits = {
  maxBytes: 4096,
  maxHeaders: 32,
  maxLineLength: 1024,
} as const;
