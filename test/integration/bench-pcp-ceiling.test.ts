import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frontendCeiling } from '../../bench/pcp.js';

// bench/pcp.ts's front-end ceiling runs the real PCP server over a stub lease table. The stub lacked
// findByInternal, which the handler calls on every MAP: each request threw inside the server, went
// unanswered, and the bench sat out 3 × 1 s of retries per request (issue 15 item 9: "the ceiling hangs").
// Not a timing test: every request must be answered with SUCCESS, none lost.
test('bench/pcp.ts front-end ceiling: every MAP answered SUCCESS, at 1 and 32 in flight', {
  timeout: 30_000,
}, async () => {
  const phases = await frontendCeiling(64, 8);
  assert.equal(phases.length, 2);
  for (const p of phases) {
    assert.equal(p.n, 64, p.phase);
    assert.equal(p.failed, 0, `${p.phase} at ${p.concurrency}: failed`);
    assert.equal(p.timeouts, 0, `${p.phase} at ${p.concurrency}: timeouts`);
  }
});
