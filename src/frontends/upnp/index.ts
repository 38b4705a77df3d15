export { createUpnpServer } from './server.js';
export type { UpnpServer, UpnpServerOptions } from './server.js';
export { generateUuids, isUpnpUuids } from './uuids.js';
export type { UpnpUuids } from './uuids.js';
export type { WanStats } from './actions.js';
