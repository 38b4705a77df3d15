/**
 * Rows of `upstream_mappings` (schema version 9): written only inside the writer's ticks (the lease
 * table's setUpstream job), read from the reader connection (committed state only).
 */
import type { LeaseStorage } from './storage.js';
import type { UpstreamProtocol, UpstreamRecord, UpstreamState } from './upstream.js';

interface UpstreamRow {
  lease_id: string;
  state: string;
  protocol: string;
  server: string;
  external_address: string | null;
  external_port: number | null;
  lifetime: number | null;
  expires_at: number | null;
  nonce: string | null;
  epoch: number | null;
  detail: string | null;
  updated_at: number;
}

function toRecord(r: UpstreamRow): UpstreamRecord {
  return {
    leaseId: r.lease_id,
    state: r.state as UpstreamState,
    protocol: r.protocol as UpstreamProtocol,
    server: r.server,
    externalAddress: r.external_address,
    externalPort: r.external_port,
    lifetime: r.lifetime,
    expiresAt: r.expires_at,
    nonce: r.nonce,
    epoch: r.epoch,
    detail: r.detail,
    updatedAt: r.updated_at,
  };
}

export function createUpstreamStore(store: Pick<LeaseStorage, 'db' | 'reader'>) {
  const upsert = store.db.prepare(`INSERT INTO upstream_mappings (lease_id, state, protocol, server, external_address,
      external_port, lifetime, expires_at, nonce, epoch, detail, updated_at)
    VALUES (@leaseId, @state, @protocol, @server, @externalAddress, @externalPort, @lifetime, @expiresAt, @nonce,
      @epoch, @detail, @updatedAt)
    ON CONFLICT(lease_id) DO UPDATE SET state = excluded.state, protocol = excluded.protocol, server = excluded.server,
      external_address = excluded.external_address, external_port = excluded.external_port,
      lifetime = excluded.lifetime, expires_at = excluded.expires_at, nonce = excluded.nonce, epoch = excluded.epoch,
      detail = excluded.detail, updated_at = excluded.updated_at`);
  const del = store.db.prepare(`DELETE FROM upstream_mappings WHERE lease_id = ?`);
  // a lease row exists for every upstream row (the foreign key); an ended lease's row is kept for its history
  const leaseExists = store.db.prepare(`SELECT 1 FROM leases WHERE id = ?`);
  const get = store.reader.prepare(`SELECT * FROM upstream_mappings WHERE lease_id = ?`);
  const all = store.reader.prepare(
    `SELECT u.* FROM upstream_mappings u JOIN leases l ON l.id = u.lease_id WHERE l.state = 'active'`,
  );
  return {
    /** inside a writer tick: store or (null) delete the lease's upstream row; false when the lease row is gone */
    write(leaseId: string, rec: UpstreamRecord | null): boolean {
      if (rec === null) {
        del.run(leaseId);
        return true;
      }
      if (!leaseExists.get(leaseId)) return false;
      upsert.run({ ...rec, leaseId });
      return true;
    },
    get(leaseId: string): UpstreamRecord | null {
      const r = get.get(leaseId) as UpstreamRow | undefined;
      return r ? toRecord(r) : null;
    },
    /** the upstream rows of active leases (start: the manager picks up where the last run stopped) */
    active(): UpstreamRecord[] {
      return (all.all() as UpstreamRow[]).map(toRecord);
    },
  };
}
export type UpstreamStore = ReturnType<typeof createUpstreamStore>;
