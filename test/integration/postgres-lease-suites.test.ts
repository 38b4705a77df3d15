// The lease-table suites (test/unit/leases.test.ts and test/unit/lease-*.test.ts) on the PostgreSQL backend
// (issue 18 item 2): the same files, imported with PORTD_TEST_BACKEND=postgres, so test/helpers/leases.ts gives
// each table a fresh database (CREATE DATABASE … TEMPLATE) on one throwaway cluster for this file, and checks at
// each table's close that PostgreSQL holds exactly the image's rows. Under CI=true a cluster that cannot start
// fails this file; elsewhere it is skipped with the reason.
import { after, test } from 'node:test';
import { startPostgres } from '../helpers/postgres.js';

process.env.PORTD_TEST_BACKEND = 'postgres';

let skip: string | false = false;
try {
  startPostgres().stop(); // can a cluster start here at all (≈ 1.4 s): the suites' own starts lazily
} catch (e) {
  if (process.env.CI === 'true') throw e;
  skip = (e as Error).message;
}
if (skip) test('the lease-table suites on PostgreSQL', { skip }, () => {});
else {
  const { stopTestPostgres } = await import('../helpers/leases.js');
  // SQLite-only files stay out: lease-storage.test.ts's WAL, checkpointer and file-mode parts are SQLite's
  await import('../unit/leases.test.js');
  await import('../unit/lease-family.test.js');
  await import('../unit/lease-faults.test.js');
  await import('../unit/lease-precedence.test.js');
  await import('../unit/lease-writer-shortcuts.test.js');
  await import('../unit/lease-storage.test.js');
  after(() => stopTestPostgres());
}
