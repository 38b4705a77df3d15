/** Chaining leases to the NAT the gateway sits behind (docs/double-nat.md, "Chaining upstream"). */
export { createUpstreamManager, type UpstreamManager, type UpstreamTable } from './manager.js';
export { createConnector, defaultGateway } from './connect.js';
export type { UpstreamClient, MapRequest, MapResult, ProbeResult } from './types.js';
