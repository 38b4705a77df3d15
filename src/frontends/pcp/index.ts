export { createPcpServer } from './server.js';
export type { PcpServer, PcpServerOptions } from './server.js';
export { createPcpHandler, pcpCodeFor, natPmpCodeFor } from './handler.js';
export type { PcpHandler, PcpHandlerDeps, PcpFrontendConfig, HandleResult } from './handler.js';
export { ConntrackBusyError, createConntrackCli, parseConntrackLine } from './conntrack.js';
export type { ConntrackApi, FlowInfo, FlowQuery } from './conntrack.js';
export { createRateLimiter, createLogGate, createPerClientCounter } from '../rate-limit.js';
export type { LogGate, RateLimiter, PerClientCounter } from '../rate-limit.js';
