/**
 * One fence (issue 18 item 3, docs/ha.md "One fence"): with the HA pair's generation, the lease table's one-statement
 * flush to PostgreSQL (src/leases/pg/storage.ts) writes only while `ha_fence` still holds the writer's token.
 * A deposed writer's grant is refused: nothing of it reaches PostgreSQL, its kernel change is undone, the image
 * does not keep it, and the node is told (the `fenced` callback, which src/ha/portd.ts turns into role.fenced()).
 * A throwaway cluster (test/helpers/postgres.ts). ≈ 3 s.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import pg from 'pg';
import { createFence, FencedError } from '../../src/ha/fence.js';
import { openPostgresStorage } from '../../src/leases/pg/storage.js';
import { makeTable, pcpRequest } from '../helpers/leases.js';
import { postgresOrSkip } from '../helpers/postgres.js';

const { cluster, skip } = postgresOrSkip();
after(() => cluster?.stop());

describe('HA: the generation guards the lease table flush', { skip, timeout: 30_000 }, () => {
  const url = cluster?.url ?? '';
  const q = async (sql: string, values: unknown[] = []) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query(sql, values)).rows;
    } finally {
      await c.end();
    }
  };
  const take = async (node: string) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return await createFence({ node, now: Date.now }).take(c);
    } finally {
      await c.end();
    }
  };

  test('a writer grants while it holds the generation; after a takeover its grant changes nothing', async () => {
    // the schema (v2: ha_fence) first, as the HA node does before it takes the fence
    await (await openPostgresStorage({ url, fence: false })).close();
    const token = await take('A');
    const fenced: { current: number | null; holder: string | null }[] = [];
    const storage = await openPostgresStorage({
      url,
      fence: false,
      generation: {
        token,
        fenced: (current, holder) => {
          fenced.push({ current, holder });
          return new FencedError(token, current ?? -1, holder);
        },
      },
    });
    const t = makeTable({}, storage);
    try {
      const a = await t.table.request(pcpRequest({ internalPort: 4000, externalPort: 4000 }));
      assert.ok(a.ok, JSON.stringify(a));
      assert.equal((await q(`SELECT count(*)::int AS n FROM leases WHERE state = 'active'`))[0]!.n, 1);
      assert.equal(fenced.length, 0);

      // B takes over: A's generation is stale now
      const b = await take('B');
      assert.equal(b, token + 1);
      const before = (await t.dataplane.list()).length;
      const r = await t.table.request(pcpRequest({ internalPort: 4001, externalPort: 4001 })).catch((e: Error) => e);
      assert.ok(r instanceof Error || !r.ok, `the stale writer's grant must fail: ${JSON.stringify(r)}`);
      assert.deepEqual(fenced, [{ current: token + 1, holder: 'B' }], 'the node learns it is fenced');
      const rows = await q(`SELECT internal_port FROM leases ORDER BY internal_port`);
      assert.deepEqual(
        rows.map((x) => x['internal_port']),
        [4000],
        'nothing of the stale grant in PostgreSQL',
      );
      assert.equal((await t.dataplane.list()).length, before, 'its kernel change is undone');
      assert.equal(t.table.countActive().total, 1, 'nor does the image keep it');
      // a renewal of the lease it granted is refused as well, and PostgreSQL's row stays as it was
      const renew = await t.table
        .request(pcpRequest({ internalPort: 4000, externalPort: 4000, lifetime: 900 }))
        .catch((e: Error) => e);
      assert.ok(renew instanceof Error || !renew.ok);
      assert.equal((await q(`SELECT renew_count::int AS n FROM leases WHERE internal_port = 4000`))[0]!.n, 0);
    } finally {
      await storage.close().catch(() => {});
      await t.table.close().catch(() => {});
    }
  });
});
