export * from './constants.js';
export * from './errors.js';
export * from './address.js';
export * from './pcp.js';
export * from './natpmp.js';
