/**
 * Persistence of API-created trigger rules and of every rule's counters, in the lease database
 * (tables `trigger_rules`, `trigger_stats`: migration 2 in src/leases/store.ts).
 *
 * The lease table's writer keeps a transaction open while it awaits the kernel; a write on the same
 * connection at that moment would join (and could be rolled back with) its tick. So every write here is a
 * job of the writer (src/leases/writer.ts, through its `WriteDoor`): it runs in a transaction of its own,
 * between two ticks.
 */
import type { WriteDoor } from '../leases/writer.js';
import type { TriggerDocument } from './rules.js';

export interface StoredRule {
  readonly name: string;
  /** the document as accepted (validated again on load) */
  readonly spec: unknown;
  readonly createdAt: number;
  readonly updatedAt: number;
  readonly actor: string | null;
}

export interface TriggerCounters {
  fired: number;
  renewed: number;
  refused: number;
  lastFiredAt: number | null;
  lastHost: string | null;
  /** the last refusal: who tried, who held it, when */
  lastRefusal: {
    at: number;
    host: string;
    reason: string;
    holder: { source: string; owner: string; id: string } | null;
  } | null;
}

export const emptyCounters = (): TriggerCounters => ({
  fired: 0,
  renewed: 0,
  refused: 0,
  lastFiredAt: null,
  lastHost: null,
  lastRefusal: null,
});

export function createTriggerStore(db: WriteDoor) {
  const s = {
    rules: db.prepare(`SELECT name, spec, created_at, updated_at, actor FROM trigger_rules ORDER BY created_at, name`),
    upsert: db.prepare(`INSERT INTO trigger_rules (name, spec, created_at, updated_at, actor)
      VALUES (@name, @spec, @at, @at, @actor)
      ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at, actor = excluded.actor`),
    remove: db.prepare(`DELETE FROM trigger_rules WHERE name = ?`),
    stats: db.prepare(`SELECT * FROM trigger_stats`),
    saveStats:
      db.prepare(`INSERT INTO trigger_stats (name, fired, renewed, refused, last_fired_at, last_host, last_refusal)
      VALUES (@name, @fired, @renewed, @refused, @last_fired_at, @last_host, @last_refusal)
      ON CONFLICT(name) DO UPDATE SET fired = excluded.fired, renewed = excluded.renewed, refused = excluded.refused,
      last_fired_at = excluded.last_fired_at, last_host = excluded.last_host, last_refusal = excluded.last_refusal`),
    removeStats: db.prepare(`DELETE FROM trigger_stats WHERE name = ?`),
  };

  /** a write, as a job of the writer between two ticks; rejects when the database refused or is closed */
  const whenIdle = <T>(fn: () => T): Promise<T> => db.write('trigger-store', fn);

  return {
    /** synchronous: at start, before the writer runs */
    loadRules(): StoredRule[] {
      return (
        s.rules.all() as { name: string; spec: string; created_at: number; updated_at: number; actor: string | null }[]
      ).map((r) => {
        let spec: unknown = null;
        try {
          spec = JSON.parse(r.spec);
        } catch {
          /* reported by validation */
        }
        return { name: r.name, spec, createdAt: r.created_at, updatedAt: r.updated_at, actor: r.actor };
      });
    },
    saveRule(doc: TriggerDocument, at: number, actor: string): Promise<void> {
      return whenIdle(() => {
        s.upsert.run({ name: doc.name, spec: JSON.stringify(doc), at, actor });
      });
    },
    removeRule(name: string): Promise<void> {
      return whenIdle(() => {
        s.remove.run(name);
        s.removeStats.run(name);
      });
    },
    loadStats(): Map<string, TriggerCounters> {
      const out = new Map<string, TriggerCounters>();
      for (const r of s.stats.all() as {
        name: string;
        fired: number;
        renewed: number;
        refused: number;
        last_fired_at: number | null;
        last_host: string | null;
        last_refusal: string | null;
      }[]) {
        let lastRefusal: TriggerCounters['lastRefusal'] = null;
        try {
          lastRefusal = r.last_refusal ? (JSON.parse(r.last_refusal) as TriggerCounters['lastRefusal']) : null;
        } catch {
          /* dropped */
        }
        out.set(r.name, {
          fired: r.fired,
          renewed: r.renewed,
          refused: r.refused,
          lastFiredAt: r.last_fired_at,
          lastHost: r.last_host,
          lastRefusal,
        });
      }
      return out;
    },
    saveStats(all: ReadonlyMap<string, TriggerCounters>): Promise<void> {
      // one transaction for all of them: the writer's door gives each write its own
      return whenIdle(() => {
        for (const [name, c] of all) {
          s.saveStats.run({
            name,
            fired: c.fired,
            renewed: c.renewed,
            refused: c.refused,
            last_fired_at: c.lastFiredAt,
            last_host: c.lastHost,
            last_refusal: c.lastRefusal ? JSON.stringify(c.lastRefusal) : null,
          });
        }
      });
    },
  };
}
export type TriggerStore = ReturnType<typeof createTriggerStore>;
