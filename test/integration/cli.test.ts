import assert from 'node:assert/strict';
import { spawnSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const dir = mkdtempSync(join(tmpdir(), 'portd-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const portd = (...args: string[]) =>
  spawnSync(process.execPath, ['bin/portd.js', ...args], { encoding: 'utf8', timeout: 30_000 });

describe('portd command', () => {
  it('--version and --help', () => {
    const v = portd('--version');
    assert.equal(v.status, 0);
    assert.equal(v.stdout.trim(), JSON.parse(readFileSync('package.json', 'utf8')).version);
    const h = portd('--help');
    assert.equal(h.status, 0);
    assert.match(h.stdout, /portd start/);
    assert.match(h.stdout, /check-config/);
  });

  it('check-config: valid files exit 0 and print the effective config', () => {
    for (const f of ['config/portd.yaml', 'config/router.example.yaml']) {
      const r = portd('check-config', '--config', f);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /dataplane:/);
      assert.match(r.stderr, /is valid/);
    }
  });

  it('check-config: a bad file exits 2 naming the key', () => {
    const f = join(dir, 'bad.yaml');
    writeFileSync(f, 'policy:\n  lifetime:\n    pcp: { max: 1h }\nupnp:\n  httpPrt: 5000\n');
    const r = portd('check-config', '--config', f);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /policy\.lifetime\.pcp\.max: must be an integer ≥ 1, got "1h"/);
    assert.match(r.stderr, /upnp\.httpPrt: unknown key \(did you mean httpPort\?\)/);
  });

  it('check-config: a missing file exits 2 and says so', () => {
    const r = portd('check-config', '--config', join(dir, 'nope.yaml'));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /PORTD_CONFIG_NOT_FOUND/);
  });

  it('unknown commands exit 2', () => {
    const r = portd('frobnicate');
    assert.equal(r.status, 2);
    assert.match(r.stderr, /unknown command "frobnicate"/);
  });

  it('start refuses a database locked by another running portd (exit 3), and shuts down cleanly on SIGTERM', async () => {
    const cfg = join(dir, 'lock.yaml');
    writeFileSync(
      cfg,
      readFileSync('config/portd.yaml', 'utf8')
        .replace('./var/portd.sqlite', join(dir, 'db', 'portd.sqlite'))
        .replace('stateDir: ./var', `stateDir: ${join(dir, 'db')}`)
        .replace('httpPort: 5000', 'httpPort: 0')
        .replace('port: 5351', 'port: 0')
        .replace('127.0.0.1:8080', '127.0.0.1:0'),
    );
    const first = spawn(process.execPath, ['bin/portd.js', 'start', '--config', cfg], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    first.stdout.on('data', (d) => {
      out += d;
    });
    first.stderr.on('data', (d) => {
      out += d;
    });
    const deadline = Date.now() + 20_000;
    while (!out.includes('portd ready') && Date.now() < deadline && first.exitCode === null)
      await new Promise((r) => setTimeout(r, 50));
    assert.match(out, /portd ready/);
    const second = portd('start', '--config', cfg);
    assert.equal(second.status, 3, second.stderr + second.stdout);
    assert.match(second.stderr, /PORTD_DATABASE_LOCKED/);
    first.kill('SIGTERM');
    const code = await new Promise((r) => first.on('exit', r));
    assert.equal(code, 0);
    assert.match(out, /portd stopped/);
  });

  it('SIGHUP applies a new configuration (static forwards) and refuses an invalid one, keeping the old', async () => {
    const cfg = join(dir, 'hup.yaml');
    const base = readFileSync('config/portd.yaml', 'utf8')
      .replace('./var/portd.sqlite', join(dir, 'hup', 'portd.sqlite'))
      .replace('stateDir: ./var', `stateDir: ${join(dir, 'hup')}`)
      .replace('httpPort: 5000', 'httpPort: 0')
      .replace('port: 5351', 'port: 0')
      .replace('127.0.0.1:8080', '127.0.0.1:0');
    writeFileSync(cfg, base);
    const p = spawn(process.execPath, ['bin/portd.js', 'start', '--config', cfg], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    p.stdout.on('data', (d) => {
      out += d;
    });
    p.stderr.on('data', (d) => {
      out += d;
    });
    const waitFor = async (re: RegExp, ms = 20_000) => {
      const end = Date.now() + ms;
      while (!re.test(out) && Date.now() < end && p.exitCode === null) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, re);
    };
    try {
      await waitFor(/portd ready/);
      const url = /"url":"(http:\/\/127\.0\.0\.1:\d+)\/"/.exec(out)![1]!;
      const statics = async () =>
        (
          (await (await fetch(`${url}/api/v1/leases?source=static`)).json()) as {
            leases: { externalPort: number; readOnly: boolean }[];
          }
        ).leases;
      assert.equal((await statics()).length, 0);
      writeFileSync(
        cfg,
        base +
          '\nstaticForwards:\n  - { protocol: tcp, externalPort: 8443, internal: "127.0.0.1:443", description: nas }\n',
      );
      p.kill('SIGHUP');
      await waitFor(/configuration reloaded/);
      const after = await statics();
      assert.deepEqual(
        after.map((l) => [l.externalPort, l.readOnly]),
        [[8443, true]],
      );
      writeFileSync(cfg, base + '\nupnp:\n  httpPrt: 1\n');
      p.kill('SIGHUP');
      await waitFor(/new configuration refused/);
      assert.deepEqual(
        (await statics()).map((l) => l.externalPort),
        [8443],
        'the running configuration stays',
      );
      assert.equal(p.exitCode, null, 'still running');
    } finally {
      p.kill('SIGTERM');
      await new Promise((r) => p.on('exit', r));
    }
  });
});
