export * from './policy.js';
export * from './ip.js';
