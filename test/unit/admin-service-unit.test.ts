/**
 * config/portd.service (issue 14): resource ceilings set (TasksMax, MemoryMax), the state directory
 * and umask private; `systemd-analyze verify` finds nothing to say about it when it is installed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';

const UNIT = readFileSync('config/portd.service', 'utf8');

/** key → values of one section (a key may repeat) */
function section(text: string, name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let inside = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^\[(.+)\]$/.exec(line);
    if (m) {
      inside = m[1] === name;
      continue;
    }
    if (!inside) continue;
    const i = line.indexOf('=');
    if (i < 0) continue;
    const k = line.slice(0, i).trim();
    out.set(k, [...(out.get(k) ?? []), line.slice(i + 1).trim()]);
  }
  return out;
}

const bytes = (v: string) => {
  const m = /^(\d+)([KMGT]?)$/.exec(v);
  assert.ok(m, `a size like 512M, not ${v}`);
  return Number(m[1]) * 1024 ** ' KMGT'.indexOf(m[2] || ' ');
};

it('the unit bounds tasks and memory with sane values, and keeps the state private', () => {
  const s = section(UNIT, 'Service');
  const one = (k: string) => {
    const v = s.get(k);
    assert.ok(v && v.length === 1, `${k}= set once`);
    return v[0]!;
  };
  const tasks = Number(one('TasksMax'));
  // node's own threads (~13-25) plus nft -i, ip monitor, conntrack children; not "infinity"
  assert.ok(Number.isInteger(tasks) && tasks >= 32 && tasks <= 512, `TasksMax=${tasks}`);
  const max = bytes(one('MemoryMax'));
  // measured ~170 MiB at the default 16384 leases (+ nft -i): room for that, not the whole router
  assert.ok(max >= 256 * 2 ** 20 && max <= 2 * 2 ** 30, `MemoryMax=${one('MemoryMax')}`);
  const high = s.get('MemoryHigh');
  if (high) assert.ok(bytes(high[0]!) < max, 'MemoryHigh below MemoryMax');
  assert.equal(one('UMask'), '0077');
  assert.equal(one('StateDirectoryMode'), '0700');
});

it('systemd-analyze verify accepts the unit (when installed)', (t) => {
  let tool = '';
  for (const p of ['/usr/bin/systemd-analyze', '/bin/systemd-analyze']) if (existsSync(p)) tool = p;
  if (!tool) {
    t.skip('systemd-analyze not installed');
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), 'portd-unit-'));
  try {
    // the binary is not installed here: point ExecStart at one that exists, check everything else
    const unit = join(dir, 'portd.service');
    writeFileSync(unit, UNIT.replace(/^ExecStart=\S+/m, 'ExecStart=/bin/true'));
    // warnings (an unknown key, a bad value) go to stderr with exit status 0
    const r = spawnSync(tool, ['verify', unit], { encoding: 'utf8', timeout: 30_000 });
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}`;
    // only lines about our file count (systemd may also grumble about the host's own units)
    const ours = out.split('\n').filter((l) => l.includes(unit));
    assert.deepEqual(ours, []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
