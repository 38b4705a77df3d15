#!/usr/bin/env node
// Runs every suite. Node 20 does not expand globs after --test, so files are listed here explicitly.
// Layers: check (format, lint, line length, import direction: scripts/check.mjs), unit + integration
// (anyone), lab + browser (root: network namespaces, nftables, chromium).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const ci = process.env.CI === 'true';
const isRoot = process.getuid?.() === 0;
const list = (dir) =>
  existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith('.test.ts'))
        .sort()
        .map((f) => join(dir, f))
    : [];
const only = process.argv.slice(2); // e.g. `npm test -- unit lab`
const want = (layer) => only.length === 0 || only.includes(layer);

const layers = [
  { name: 'unit', files: list('test/unit'), root: false, concurrency: 4 },
  // forceExit: a file whose tests are all done exits even if a handle is left. admin-lazy.test.ts leaves a
  // refed MessagePort once the admin app has been imported lazily under tsx's loader (not seen from dist/),
  // which kept the file alive until the runner's timeout; results are still reported test by test.
  { name: 'integration', files: list('test/integration'), root: false, concurrency: 2, forceExit: true },
  { name: 'lab', files: list('test/lab'), root: true, concurrency: 1 },
  { name: 'browser', files: list('test/browser'), root: true, concurrency: 1 },
].filter((l) => want(l.name));

let failed = false;
if (want('check')) {
  console.error('test: check: scripts/check.mjs');
  const r = spawnSync(process.execPath, ['scripts/check.mjs'], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('test: check FAILED');
    failed = true;
  }
}
for (const layer of layers) {
  if (layer.files.length === 0) {
    if (layer.name === 'unit' || layer.name === 'integration') {
      console.error(`test: no ${layer.name} test files found — refusing to pass vacuously`);
      failed = true;
    }
    continue;
  }
  if (layer.root && !isRoot) {
    const msg =
      `test: SKIPPING ${layer.name} suites (need root for network namespaces / nftables / chromium): ` +
      `${layer.files.join(' ')}`;
    console.error(`\n${'!'.repeat(msg.length)}\n${msg}\n${'!'.repeat(msg.length)}\n`);
    if (ci) {
      console.error('test: under CI=true a suite that cannot run is a failure');
      failed = true;
    }
    continue;
  }
  console.error(`test: ${layer.name}: ${layer.files.length} files`);
  const r = spawnSync(
    process.execPath,
    [
      '--import',
      'tsx',
      '--test',
      `--test-concurrency=${layer.concurrency}`,
      ...(layer.forceExit ? ['--test-force-exit'] : []),
      ...layer.files,
    ],
    {
      stdio: 'inherit',
      env: { ...process.env, PORTD_TEST_LAYER: layer.name },
    },
  );
  if (r.status !== 0) {
    console.error(`test: ${layer.name} FAILED`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
