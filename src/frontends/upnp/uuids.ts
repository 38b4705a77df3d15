import { randomUUID } from 'node:crypto';
import type { IgdUuids } from '../../../protocols/upnp/index.js';

/**
 * The six device UUIDs portd announces: one IGD:1 tree and one IGD:2 tree, three devices each.
 * They must stay the same across restarts (clients cache them): generate once, persist, pass back in.
 */
export interface UpnpUuids {
  readonly v1: IgdUuids;
  readonly v2: IgdUuids;
}

export function generateUuids(): UpnpUuids {
  const tree = (): IgdUuids => ({ igd: randomUUID(), wanDevice: randomUUID(), wanConnectionDevice: randomUUID() });
  return { v1: tree(), v2: tree() };
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** type guard for a persisted value (e.g. JSON from the database); all six distinct */
export function isUpnpUuids(x: unknown): x is UpnpUuids {
  if (!x || typeof x !== 'object') return false;
  const all: unknown[] = [];
  for (const k of ['v1', 'v2'] as const) {
    const t = (x as Record<string, unknown>)[k];
    if (!t || typeof t !== 'object') return false;
    for (const f of ['igd', 'wanDevice', 'wanConnectionDevice'] as const) all.push((t as Record<string, unknown>)[f]);
  }
  return all.every((u) => typeof u === 'string' && UUID_RE.test(u)) && new Set(all).size === all.length;
}
