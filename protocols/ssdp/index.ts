export {
  SSDP_MULTICAST_ADDRESS,
  SSDP_MULTICAST_IPV6,
  SSDP_PORT,
  SsdpMethod,
  Nts,
  SearchTarget,
  MAN_DISCOVER,
  MX_MAX,
  SsdpLimits,
} from './constants.js';
export { SsdpDecodeError } from './errors.js';
export type { SsdpDecodeErrorKind } from './errors.js';
export { decodeSearch, decodeHttpu, parseTypeUrn, matchSearch } from './search.js';
export type { SsdpSearch, SsdpDecodeLimits, TypeUrn, SsdpTarget, SearchMatch } from './search.js';
export { encodeSearchResponse, encodeNotify, httpDate } from './messages.js';
export type { SearchResponse, NotifyAlive, NotifyByebye } from './messages.js';
