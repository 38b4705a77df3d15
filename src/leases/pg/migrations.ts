/**
 * The PostgreSQL schema of the lease table (issue 18 item 2): the tables of the SQLite migrations
 * (../store.ts, `MIGRATIONS`) written for PostgreSQL, applied in order by ./store.ts; table `schema_version`
 * holds the last applied, as `PRAGMA user_version` does for SQLite.
 *
 * No PostgreSQL database predates this backend, so version 1 is SQLite's schema as it stands at SQLite
 * version `SQLITE_BASELINE` (eight migrations folded into one: the indexes migration 4 dropped are never
 * created, migration 6's data fold has no data to fold). A later schema change adds one entry here and one
 * there: PostgreSQL version `n` is SQLite version `SQLITE_BASELINE + n - 1`.
 *
 * The differences, and why: times are epoch ms, past 2^31, so BIGINT (the store parses int8 to a number:
 * epoch ms fit a double exactly); SQLite's implicit rowid becomes an identity column where a statement needs
 * one (events.seq, revocations.id); flags and the family stay INTEGER so a row reads as the same `LeaseRow`.
 */
export const SQLITE_BASELINE = 8;

export const PG_MIGRATIONS: readonly string[] = [
  `CREATE TABLE leases (
     id TEXT PRIMARY KEY,
     source TEXT NOT NULL,
     protocol TEXT NOT NULL,
     external_address TEXT NOT NULL,
     external_port INTEGER NOT NULL,
     external_port_end INTEGER NOT NULL,
     internal_address TEXT NOT NULL,
     internal_port INTEGER NOT NULL,
     remote_address TEXT,
     remote_prefix INTEGER,
     remote_port INTEGER,
     owner TEXT NOT NULL,
     description TEXT NOT NULL DEFAULT '',
     nonce TEXT,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     expires_at BIGINT,
     requested_lifetime BIGINT,
     read_only INTEGER NOT NULL DEFAULT 0,
     rule TEXT,
     state TEXT NOT NULL,
     ended_at BIGINT,
     end_reason TEXT,
     renew_count INTEGER NOT NULL DEFAULT 0,
     renewed_at BIGINT,
     renewed_by TEXT,
     family INTEGER NOT NULL DEFAULT 4
   );
   CREATE INDEX leases_active_expiry ON leases(expires_at) WHERE state = 'active' AND expires_at IS NOT NULL;
   CREATE INDEX leases_ended ON leases(ended_at) WHERE state = 'ended';
   CREATE INDEX leases_active_src ON leases(source, created_at, id) WHERE state = 'active';
   CREATE INDEX leases_active_created ON leases(created_at, id) WHERE state = 'active';
   CREATE INDEX leases_ended_created ON leases(created_at, id) WHERE state = 'ended';
   CREATE TABLE events (
     seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     lease_id TEXT NOT NULL,
     type TEXT NOT NULL,
     at BIGINT NOT NULL,
     actor TEXT,
     reason TEXT
   );
   CREATE INDEX events_lease ON events(lease_id);
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE trigger_rules (
     name TEXT PRIMARY KEY,
     spec TEXT NOT NULL,
     created_at BIGINT NOT NULL,
     updated_at BIGINT NOT NULL,
     actor TEXT
   );
   CREATE TABLE trigger_stats (
     name TEXT PRIMARY KEY,
     fired BIGINT NOT NULL DEFAULT 0,
     renewed BIGINT NOT NULL DEFAULT 0,
     refused BIGINT NOT NULL DEFAULT 0,
     last_fired_at BIGINT,
     last_host TEXT,
     last_refusal TEXT
   );
   CREATE TABLE revocations (
     id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     protocol TEXT NOT NULL,
     owner TEXT NOT NULL,
     internal_address TEXT NOT NULL,
     internal_port INTEGER NOT NULL,
     external_port INTEGER NOT NULL,
     until BIGINT NOT NULL,
     lease_id TEXT NOT NULL,
     kind TEXT NOT NULL DEFAULT 'revoked',
     replaced_by TEXT,
     replaced_by_source TEXT
   );
   CREATE INDEX revocations_int ON revocations(protocol, internal_address, internal_port);
   CREATE INDEX revocations_ext ON revocations(protocol, owner, external_port);
   CREATE INDEX revocations_until ON revocations(until);
   CREATE TABLE upstream_mappings (
     lease_id TEXT PRIMARY KEY REFERENCES leases(id) ON DELETE CASCADE,
     state TEXT NOT NULL,
     protocol TEXT NOT NULL,
     server TEXT NOT NULL,
     external_address TEXT,
     external_port INTEGER,
     lifetime BIGINT,
     expires_at BIGINT,
     nonce TEXT,
     epoch BIGINT,
     detail TEXT,
     updated_at BIGINT NOT NULL
   );`,
  // v2, the HA pair (issue 18 item 3, src/ha/): the writers' fence and the standby's change feed.
  // ha_fence is one row; its generation goes up by one each time a node becomes the writer (src/ha/fence.ts),
  // and every writer transaction first reads it FOR SHARE and gives up when it is not its own (the fencing
  // argument is in docs/ha.md). The trigger tells LISTENers on channel portd_leases the id of every lease
  // row a transaction wrote; PostgreSQL delivers the notifications at commit, none for a rolled-back one.
  `CREATE TABLE ha_fence (
     one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
     generation BIGINT NOT NULL,
     holder TEXT,
     taken_at BIGINT
   );
   INSERT INTO ha_fence (generation, holder, taken_at) VALUES (0, NULL, NULL);
   CREATE FUNCTION portd_lease_notify() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN
     PERFORM pg_notify('portd_leases', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
     RETURN NULL;
   END $$;
   CREATE TRIGGER leases_notify AFTER INSERT OR UPDATE OR DELETE ON leases
     FOR EACH ROW EXECUTE FUNCTION portd_lease_notify();`,
];
export const PG_SCHEMA_VERSION = PG_MIGRATIONS.length;
