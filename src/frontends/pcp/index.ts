export { createPcpServer } from './server.js';
export type { PcpServer, PcpServerOptions } from './server.js';
export { createPcpHandler, pcpCodeFor, natPmpCodeFor } from './handler.js';
export type { PcpHandler, PcpHandlerDeps, PcpFrontendConfig, HandleResult } from './handler.js';
export { ConntrackBusyError, createConntrackCli, parseConntrackLine } from './conntrack.js';
export type { ConntrackApi, FlowInfo, FlowQuery } from './conntrack.js';
export { createRateLimiter, createPerClientCounter } from '../rate-limit.js';
export type { RateLimiter, PerClientCounter } from '../rate-limit.js';
