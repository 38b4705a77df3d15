/** The admin module's public face: API server, dashboard, metrics endpoint, operator CLI commands. */
export { createAdminServer } from './server.js';
export type { AdminServer, AdminServerOptions, AdminRouteContext, AdminRoutePlugin, StatusInfo } from './server.js';
export { resolveAdminToken, isLoopbackListen, isLoopbackHost, adminListen } from './auth.js';
export type { AdminToken, ResolvedAdminToken } from './auth.js';
export { runAdminCommand, adminClientTarget, ADMIN_COMMANDS, ADMIN_USAGE } from './cli-commands.js';
export type { AdminCommandOptions } from './cli-commands.js';
export { startAdmin } from './start.js';
export type { StartAdminOptions, RunningAdmin } from './start.js';
