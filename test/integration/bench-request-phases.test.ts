import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frontendCeiling } from '../../bench/pcp.js';
import { run as runUpnp } from '../../bench/upnp.js';

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

// bench/upnp.ts measures AddPinhole and DeletePinhole (by the UniqueID AddPinhole answered) beside the IPv4
// mapping actions: each must be answered 200, and the pinholes must really have been made and ended
test('bench/upnp.ts: AddPinhole and DeletePinhole phases answered 200, with ratios to the mapping actions', {
  timeout: 60_000,
}, async () => {
  const r = await runUpnp({ count: 20, noEcho: true, order: [true], concurrencies: [1] });
  const by = (name: string) => r.phases.find((p) => p.phase === name);
  for (const name of ['AddPortMapping', 'DeletePortMapping', 'AddPinhole', 'DeletePinhole']) {
    const p = by(name);
    assert.ok(p, `${name} phase missing`);
    assert.equal(p.n, 20, name);
    assert.equal(p.errors, 0, `${name}: non-200 answers`);
  }
  assert.deepEqual(Object.keys(r.pinholeRatio).sort(), ['add c1', 'delete c1']);
  assert.ok(r.pinholeRatio['add c1']!.perSecond > 0);
});
