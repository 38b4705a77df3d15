// The PostgreSQL backend's own failure path (src/leases/pg/storage.ts): PostgreSQL refuses a tick's statement (here
// a CHECK constraint the image does not have) after the kernel took the batch. The writer contract holds: the
// request is refused, the kernel entry is taken back, the image's row is rolled back, and the keys go out again
// with the next commit so PostgreSQL ends up holding exactly the image's rows. Under CI=true a cluster that
// cannot start fails this file.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { makeTableOn, pcpRequest, stopTestPostgres } from '../helpers/leases.js';
import { postgresOrSkip } from '../helpers/postgres.js';

const probe = postgresOrSkip();
probe.cluster?.stop(); // can a cluster start here: the helper starts its own
after(() => stopTestPostgres());

describe('PostgreSQL storage: a statement PostgreSQL refuses', { skip: probe.skip, timeout: 60_000 }, () => {
  it('refuses the request, undoes the kernel, rolls the image back, and PostgreSQL converges', async () => {
    const t = await makeTableOn('postgres');
    try {
      const storage = t.table.store as import('../../src/leases/pg/storage.js').PostgresStorage;
      assert.equal(storage.driver, 'postgres');
      const ok = await t.table.request(pcpRequest({ internalPort: 4000, externalPort: 4000 }));
      assert.ok(ok.ok);
      await storage.pg.query('ALTER TABLE leases ADD CONSTRAINT no_6667 CHECK (internal_port <> 6667)');
      const r = await t.table.request(pcpRequest({ internalPort: 6667, externalPort: 6667 }));
      assert.ok(!r.ok && r.reason === 'unavailable', JSON.stringify(r));
      assert.match(r.detail, /no_6667/);
      assert.deepEqual(
        [...t.dataplane.entries.values()].map((e) => e.externalPort),
        [4000],
        'the refused grant left nothing in the kernel',
      );
      assert.equal(t.table.findByInternal('tcp', '192.168.77.11', 6667), null);
      const img = storage.db.prepare('SELECT count(*) AS n FROM leases WHERE internal_port = 6667').get() as {
        n: number;
      };
      assert.equal(img.n, 0, 'the image rolled back');
      assert.ok(storage.pendingRows() > 0, 'the refused keys are noted again for the next commit');
      await storage.pg.query('ALTER TABLE leases DROP CONSTRAINT no_6667');
      const next = await t.table.request(pcpRequest({ internalPort: 4001, externalPort: 4001 }));
      assert.ok(next.ok);
      assert.equal(storage.pendingRows(), 0, 'sent with the next commit');
      const there = (await storage.pg.query('SELECT internal_port FROM leases ORDER BY internal_port')).rows;
      assert.deepEqual(
        there.map((x) => x.internal_port),
        [4000, 4001],
      );
    } finally {
      // the helper's close checks PostgreSQL's rows against the image, table by table
      await t.dispose();
    }
  });
});
