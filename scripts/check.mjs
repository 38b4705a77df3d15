#!/usr/bin/env node
// The static checks, in the order that fails fastest: Biome (format and lint, writes nothing),
// line length, and the import-direction rules when .dependency-cruiser.cjs is present.
// Run by `npm run lint` and as the first layer of `npm test` (`node scripts/test.mjs check`).
// `npm run format` writes the formatting this checks.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

const steps = [
  // --error-on-warnings: the tree is lint clean, a new warning is a failure too
  { name: 'biome', argv: [bin('biome'), 'ci', '--error-on-warnings', '.'] },
  { name: 'lines', argv: [process.execPath, join(root, 'scripts', 'check-lines.mjs')] },
];
if (existsSync(join(root, '.dependency-cruiser.cjs')))
  steps.push({
    name: 'imports',
    argv: [bin('depcruise'), '--config', '.dependency-cruiser.cjs', 'src', 'protocols', 'bin'],
  });

const failed = [];
const t0 = performance.now();
for (const step of steps) {
  const t = performance.now();
  if (!existsSync(step.argv[0])) {
    console.error(`check: ${step.name}: ${step.argv[0]} is missing: run npm ci`);
    failed.push(step.name);
    continue;
  }
  const r = spawnSync(step.argv[0], step.argv.slice(1), { cwd: root, stdio: 'inherit' });
  const ms = Math.round(performance.now() - t);
  if (r.status !== 0) {
    console.error(`check: ${step.name} FAILED (${ms} ms)${r.error ? `: ${r.error.message}` : ''}`);
    failed.push(step.name);
  } else console.error(`check: ${step.name} ok (${ms} ms)`);
}
const total = Math.round(performance.now() - t0);
if (failed.length > 0) {
  const hint = failed.includes('biome')
    ? '; npm run format fixes the formatting, the lint findings are shown above'
    : '';
  console.error(`check: FAILED: ${failed.join(', ')} (${total} ms)${hint}`);
  process.exit(1);
}
console.error(`check: ok (${total} ms)`);
