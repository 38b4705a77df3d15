#!/usr/bin/env node
// Installs the system tools the test suites need when run as root and they are missing (Debian apt).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { TOOLS } from './tools.mjs';

// a tool with a `dir` (a shell glob: PostgreSQL's versioned bin directory) is found there, not on PATH
const has = (t) =>
  spawnSync('sh', ['-c', `command -v ${t.bin}`], { stdio: 'ignore' }).status === 0 ||
  spawnSync('sh', ['-c', `test -x /usr/sbin/${t.bin} || test -x /sbin/${t.bin}`], { stdio: 'ignore' }).status === 0 ||
  (t.dir !== undefined &&
    spawnSync('sh', ['-c', `for d in ${t.dir}; do test -x "$d/${t.bin}" && exit 0; done; exit 1`], {
      stdio: 'ignore',
    }).status === 0);
const missing = TOOLS.filter((t) => !has(t));
if (missing.length === 0) process.exit(0);
const isRoot = process.getuid?.() === 0;
if (!isRoot) {
  console.error(
    `pretest: missing ${missing.map((t) => t.bin).join(', ')} (not root: not installing; suites needing them ` +
      'will say so)',
  );
  process.exit(0);
}
const pkgs = [...new Set(missing.map((t) => t.pkg))];
console.error(`pretest: installing ${pkgs.join(' ')} with apt for ${missing.map((t) => t.bin).join(', ')}`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
// The packages' services (PostgreSQL's main cluster, keepalived, conntrackd) must not start on the host: the
// suites start their own, inside their own namespaces or temp dirs. Debian's policy-rc.d hook (exit 101 =
// "action forbidden") keeps invoke-rc.d and deb-systemd-invoke from starting them during the install.
const policy = '/usr/sbin/policy-rc.d';
const ownPolicy = !existsSync(policy);
if (ownPolicy)
  writeFileSync(policy, '#!/bin/sh\n# written by portd scripts/pretest.mjs for one apt run\nexit 101\n', {
    mode: 0o755,
  });
try {
  execFileSync('apt-get', ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'], env });
  execFileSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...pkgs], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
} catch (e) {
  console.error(`pretest: apt-get failed: ${e.message}`);
  if (process.env.CI === 'true') process.exit(1);
} finally {
  if (ownPolicy) rmSync(policy, { force: true });
}
const still = TOOLS.filter((t) => !has(t));
if (still.length > 0) {
  console.error(`pretest: still missing after apt: ${still.map((t) => t.bin).join(', ')}`);
  if (process.env.CI === 'true') process.exit(1);
}
