import type { LeaseFilter } from './types.js';

/** the columns a listing may be sorted by */
const SORT_COLUMNS = {
  createdAt: 'created_at',
  expiresAt: 'expires_at',
  externalPort: 'external_port',
  owner: 'owner',
} as const;

export interface ListQuery {
  /** the page: `args` then limit and offset */
  readonly page: string;
  /** the matching rows' count, when it cannot come from the table's in-memory counts */
  readonly count: string;
  readonly args: readonly unknown[];
}

/**
 * The SQL of one lease listing (LeaseTable.list), for the reader connection. Each state has its own
 * partial indexes (store.ts migration 5), so the default order (creation, then id, the way UPnP
 * GetGenericPortMappingEntry and the admin API page) walks an index and stops after the page: no table
 * scan, no sort. `all` merges the two states' index walks (UNION ALL in the same order). Other orders
 * and the text search sort or filter one state's rows, which limits.maxActiveLeases and
 * limits.maxEndedLeases keep bounded.
 */
export function listQuery(filter: LeaseFilter): ListQuery {
  const where: string[] = [];
  const args: unknown[] = [];
  if (filter.family !== undefined) {
    where.push('family = ?');
    args.push(filter.family);
  }
  if (filter.source) {
    where.push('source = ?');
    args.push(filter.source);
  }
  if (filter.owner) {
    where.push('owner = ?');
    args.push(filter.owner);
  }
  if (filter.protocol) {
    where.push('protocol = ?');
    args.push(filter.protocol);
  }
  if (filter.externalPort !== undefined) {
    where.push('external_port <= ? AND external_port_end >= ?');
    args.push(filter.externalPort, filter.externalPort);
  }
  if (filter.internalPort !== undefined) {
    where.push('internal_port = ?');
    args.push(filter.internalPort);
  }
  if (filter.search) {
    where.push(`(description LIKE ? ESCAPE '\\' OR rule LIKE ? ESCAPE '\\')`);
    const q = `%${filter.search.replace(/[\\%_]/g, (c) => '\\' + c)}%`;
    args.push(q, q);
  }
  const col = SORT_COLUMNS[filter.sort ?? 'createdAt'];
  // the id breaks ties in the same direction, so one index serves both orders
  const dir = filter.order === 'desc' ? 'DESC' : 'ASC';
  const order = `ORDER BY ${col} ${dir}, id ${dir}`;
  const cond = (state: string) => `WHERE ${[`state = '${state}'`, ...where].join(' AND ')}`;
  const state = filter.state ?? 'active';
  if (state !== 'all') {
    return {
      page: `SELECT * FROM leases ${cond(state)} ${order} LIMIT ? OFFSET ?`,
      count: `SELECT count(*) AS n FROM leases ${cond(state)}`,
      args,
    };
  }
  return {
    page:
      `SELECT * FROM leases ${cond('active')} UNION ALL SELECT * FROM leases ${cond('ended')} ${order} LIMIT ? ` +
      'OFFSET ?',
    count:
      `SELECT (SELECT count(*) FROM leases ${cond('active')}) + ` +
      `(SELECT count(*) FROM leases ${cond('ended')}) AS n`,
    args: [...args, ...args],
  };
}
