/**
 * The WAL checkpointer (src/leases/store.ts): committed pages reach the database file from a worker
 * thread, not inside a writer tick. Observable: the main file grows while the writer's own automatic
 * checkpoints are off.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import { createPolicy } from '../../src/policy/policy.js';
import { testPolicy } from '../helpers/leases.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function run(checkpointIntervalMs: number): Promise<{ grew: boolean; autocheckpoint: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'portd-ckpt-'));
  dirs.push(dir);
  const path = join(dir, 'portd.sqlite');
  const table = createLeaseTable({
    database: { path, checkpointIntervalMs },
    dataplane: createMemoryDataplane(),
    policy: createPolicy(testPolicy({ maxLeasesPerClient: 100_000 })),
    clock: createFixedClock(),
    log: pino({ level: 'silent' }),
    externalAddress: '203.0.113.1',
  });
  try {
    const before = statSync(path).size;
    const autocheckpoint = table.store.db.pragma('wal_autocheckpoint', { simple: true }) as number;
    for (let i = 0; i < 20; i++) {
      await Promise.all(
        Array.from({ length: 50 }, (_, j) =>
          table.request({
            source: 'upnp',
            identity: 'external',
            protocol: 'tcp',
            owner: '192.168.77.11',
            internalAddress: '192.168.77.11',
            internalPort: 20000 + i * 50 + j,
            externalPort: 20000 + i * 50 + j,
            allowOtherPort: false,
            lifetime: 3600,
            description: 'x'.repeat(40),
          }),
        ),
      );
    }
    const deadline = Date.now() + 3000;
    let grew = false;
    while (Date.now() < deadline && !grew) {
      await new Promise((r) => setTimeout(r, 50));
      grew = statSync(path).size > before + 64 * 1024;
    }
    return { grew, autocheckpoint };
  } finally {
    await table.close();
  }
}

describe('WAL checkpointer', () => {
  it('moves committed pages into the database file from a worker; the writer does not checkpoint itself', async () => {
    const r = await run(50);
    assert.equal(r.autocheckpoint, 0, 'automatic checkpoints off on the writer connection');
    assert.ok(r.grew, 'the database file grew: pages were checkpointed');
  });

  it('with the checkpointer off (0), SQLite keeps its own automatic checkpoints (1,000 pages): 1,000 leases stay in the WAL', async () => {
    const r = await run(0);
    assert.equal(r.autocheckpoint, 1000);
    assert.equal(r.grew, false);
  });
});
