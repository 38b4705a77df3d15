/**
 * src/common/idle-gc.ts: one full GC once a burst is over — only when the RSS grew by the threshold since
 * the last one AND the event loop was quiet; the RSS after it is the new base; nothing without gc.
 * Plus one real run: under --expose-gc, garbage made by a burst is given back.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { createIdleGc } from '../../src/common/idle-gc.js';

const MiB = 1024 * 1024;

function fake() {
  const s = { rss: 60 * MiB, busy: 0, gcs: 0, freed: 20 * MiB };
  const g = createIdleGc({
    gc: () => {
      s.gcs++;
      s.rss -= s.freed;
    },
    rss: () => s.rss,
    busy: () => s.busy,
    intervalMs: 3_600_000,
  });
  return { s, g };
}

describe('idle GC', () => {
  it('collects once the RSS grew 8 MiB and the loop is quiet; not while busy; not again for what it cannot free', () => {
    const { s, g } = fake();
    try {
      assert.equal(g.check(), false, 'no growth');
      s.rss += 30 * MiB;
      s.busy = 0.6;
      assert.equal(g.check(), false, 'the burst is still on');
      assert.equal(s.gcs, 0);
      s.busy = 0.01;
      assert.equal(g.check(), true, 'quiet and grown: collect');
      assert.equal(s.gcs, 1);
      assert.equal(s.rss, 70 * MiB);
      // what the GC did not free (a page cache) is the new base: no second collection for it
      s.freed = 0;
      for (let i = 0; i < 5; i++) assert.equal(g.check(), false);
      s.rss += 7 * MiB;
      assert.equal(g.check(), false, 'under 8 MiB of new growth');
      s.rss += 2 * MiB;
      assert.equal(g.check(), true);
      assert.equal(s.gcs, 2);
    } finally {
      g.stop();
    }
  });

  it('does nothing without gc (node without --expose-gc)', () => {
    let rss = 10 * MiB;
    const g = createIdleGc({ gc: undefined, rss: () => rss, busy: () => 0 });
    rss += 100 * MiB;
    assert.equal(g.check(), false);
    g.stop();
  });

  it('afterStart: the first quiet look collects whatever the RSS (the start was the first burst), then trims', () => {
    let rss = 50 * MiB;
    let busy = 0.5;
    const calls: string[] = [];
    const g = createIdleGc({
      gc: () => {
        calls.push('gc');
        rss -= 3 * MiB;
      },
      trim: () => calls.push('trim'),
      rss: () => rss,
      busy: () => busy,
      afterStart: true,
      intervalMs: 3_600_000,
    });
    try {
      assert.equal(g.check(), false, 'still starting: the loop is busy');
      busy = 0;
      assert.equal(g.check(), true, 'no growth needed after start');
      assert.deepEqual(calls, ['gc', 'trim'], 'malloc memory is trimmed after the collection');
      assert.equal(g.check(), false, 'then only growth since that collection counts');
    } finally {
      g.stop();
    }
    // without afterStart the same quiet start is left alone
    const h = createIdleGc({ gc: () => calls.push('gc2'), rss: () => rss, busy: () => 0, intervalMs: 3_600_000 });
    assert.equal(h.check(), false);
    h.stop();
  });

  it('the base is the RSS at the look after a collection: file pages coming back are not growth', () => {
    // the trim drops ≈ 30 MiB of file pages (common/file-pages.ts); ≈ 12 of them come back within a look
    let rss = 70 * MiB;
    let gcs = 0;
    const g = createIdleGc({
      gc: () => gcs++,
      trim: () => {
        rss -= 30 * MiB;
      },
      rss: () => rss,
      busy: () => 0,
      afterStart: true,
      intervalMs: 3_600_000,
    });
    try {
      assert.equal(g.check(), true, 'after the start');
      assert.equal(rss, 40 * MiB);
      rss += 12 * MiB;
      assert.equal(g.check(), false, 'the pages a quiet daemon uses came back: that is the base');
      for (let i = 0; i < 5; i++) assert.equal(g.check(), false, 'and no collection for them later either');
      assert.equal(gcs, 1);
      rss += 9 * MiB;
      assert.equal(g.check(), true, 'real growth past the settled base still collects');
      assert.equal(gcs, 2);
    } finally {
      g.stop();
    }
  });

  it('released(): the next quiet look collects and trims though the RSS fell; while busy it waits', async () => {
    let rss = 80 * MiB;
    let busy = 0;
    const calls: string[] = [];
    const g = createIdleGc({
      gc: () => calls.push('gc'),
      trim: () => {
        calls.push('trim');
        rss -= 2 * MiB;
      },
      rss: () => rss,
      busy: () => busy,
      intervalMs: 3_600_000,
    });
    try {
      rss = 72 * MiB; // the worker's isolate went
      assert.equal(g.check(), false, 'a smaller RSS alone does not collect');
      busy = 0.5;
      g.released(30);
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(calls, [], 'not while the loop is busy');
      busy = 0;
      assert.equal(g.check(), true, 'the next quiet look collects');
      assert.deepEqual(calls, ['gc', 'trim']);
      assert.equal(rss, 70 * MiB);
      assert.equal(g.check(), false, 'once');
      g.released(30);
      await new Promise((r) => setTimeout(r, 150));
      assert.deepEqual(calls, ['gc', 'trim', 'gc', 'trim'], 'by its own timer when quiet');
    } finally {
      g.stop();
    }
  });

  it('started(): one look shortly after, with the loop measured from then', async () => {
    let gcs = 0;
    let measured = 0;
    const g = createIdleGc({
      gc: () => gcs++,
      rss: () => 50 * MiB,
      // the first call (started) resets the measurement: the start's business does not count
      busy: () => (measured++ === 0 ? 0.9 : 0),
      afterStart: true,
      intervalMs: 3_600_000,
    });
    try {
      g.started(50);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(gcs, 1);
    } finally {
      g.stop();
    }
  });

  it('for real, under --expose-gc: the RSS a burst of garbage left is given back', () => {
    const script = `
      import { createIdleGc } from './src/common/idle-gc.ts';
      const rss = () => process.memoryUsage.rss();
      let after = 0;
      const g = createIdleGc({ gc: globalThis.gc, rss, busy: () => 0, onCollect: (b, a) => { after = a; } });
      // a burst: 20 rounds of 200,000 short-lived objects, the last round dropped too
      let keep = [];
      for (let r = 0; r < 20; r++) { keep = []; for (let i = 0; i < 200000; i++) keep.push({ i, s: 'x' + i }); }
      keep = null;
      const before = rss();
      const collected = g.check();
      g.stop();
      // V8 unmaps the freed pages shortly after the collection, not inside it
      await new Promise((r) => setTimeout(r, 2000));
      after = rss();
      console.log(JSON.stringify({ collected, before, after }));
    `;
    const r = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout.trim()) as { collected: boolean; before: number; after: number };
    assert.equal(out.collected, true);
    assert.ok(out.after < out.before - 5 * MiB, `RSS ${(out.before / MiB) | 0} -> ${(out.after / MiB) | 0} MiB`);
  });
});
