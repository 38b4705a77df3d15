/**
 * The reconcile on start with a driver that can count the kernel's leases cheaply (the nftables driver's
 * kernelCount): every element is listed only when the count differs from the rows. Observable: which
 * driver calls were made, the drift reported, and the dataplane's entries afterwards.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import pino from 'pino';
import { createMemoryDataplane } from '../../src/dataplane/memory.js';
import { createFixedClock } from '../../src/leases/clock.js';
import { createLeaseTable } from '../../src/leases/table.js';
import type { LeaseRequest } from '../../src/leases/types.js';
import { createPolicy } from '../../src/policy/policy.js';
import { testPolicy } from '../helpers/leases.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const pcp = (port: number): LeaseRequest => ({
  source: 'pcp',
  identity: 'internal',
  protocol: 'tcp',
  owner: '192.168.77.11',
  internalAddress: '192.168.77.11',
  internalPort: port,
  externalPort: port,
  allowOtherPort: false,
  lifetime: 3600,
  nonce: 'ab'.repeat(12),
});

/** a memory dataplane that also answers kernelCount() with `count(entries)`, and records the calls */
function countingDataplane(count: (held: number) => number) {
  const inner = createMemoryDataplane();
  const calls: string[] = [];
  return {
    calls,
    inner,
    dp: {
      ...inner,
      async list() {
        calls.push('list');
        return inner.list();
      },
      async reset(e: Parameters<typeof inner.reset>[0]) {
        calls.push('reset');
        return inner.reset(e);
      },
      async kernelCount() {
        calls.push('kernelCount');
        return count(inner.entries.size);
      },
    },
  };
}

async function tableWith(count: (held: number) => number, leases: number) {
  const dir = mkdtempSync(join(tmpdir(), 'portd-count-'));
  dirs.push(dir);
  const clock = createFixedClock();
  const open = (dp: ReturnType<typeof countingDataplane>['dp']) =>
    createLeaseTable({
      database: { path: join(dir, 'portd.sqlite') },
      dataplane: dp,
      policy: createPolicy(testPolicy()),
      clock,
      log: pino({ level: 'silent' }),
      externalAddress: '203.0.113.1',
    });
  // first run: grant leases (the dataplane holds them); then a "restart" with a dataplane that says what the kernel
  // holds
  const first = countingDataplane(() => 0);
  const t1 = open(first.dp);
  for (let i = 0; i < leases; i++) assert.ok((await t1.request(pcp(40000 + i))).ok);
  await t1.close();
  const second = countingDataplane(count);
  const t2 = open(second.dp);
  return { table: t2, ...second };
}

describe('reconcile on start with a counting dataplane', () => {
  it('counts equal to the rows: nothing is listed, no drift, the dataplane is still reset to the rows', async () => {
    const { table, calls, inner } = await tableWith(() => 3, 3);
    const r = await table.reconcile('start');
    assert.equal(r.drift, 0);
    assert.deepEqual(calls, ['kernelCount', 'reset']);
    assert.equal(inner.entries.size, 3);
    await table.close();
  });

  it('an empty kernel: nothing is listed, every row counts as drift', async () => {
    const { table, calls, inner } = await tableWith(() => 0, 3);
    const r = await table.reconcile('start');
    assert.equal(r.drift, 3);
    assert.deepEqual(calls, ['kernelCount', 'reset']);
    assert.equal(inner.entries.size, 3);
    await table.close();
  });

  it('counts that differ: the elements are listed and compared', async () => {
    const { table, calls, inner } = await tableWith(() => 5, 3);
    const r = await table.reconcile('start');
    // the memory dataplane of the restart holds nothing: all three rows are missing from it
    assert.equal(r.drift, 3);
    assert.deepEqual(calls, ['kernelCount', 'list', 'reset']);
    assert.equal(inner.entries.size, 3);
    await table.close();
  });
});
