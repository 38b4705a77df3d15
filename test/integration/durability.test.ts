import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import Database from 'better-sqlite3';

const dir = mkdtempSync(join(tmpdir(), 'portd-kill9-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** runs the churn child, kills it with SIGKILL after `afterAcks` acknowledgements, returns what it acknowledged */
function churnAndKill(dbPath: string, startPort: number, afterAcks: number): Promise<Map<string, number>> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'test/integration/fixtures/churn-child.ts', dbPath, String(startPort)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const acked = new Map<string, number>();
    let buf = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error('churn child too slow'));
    }, 30_000);
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        const m = /^ACK (\S+) (\d+)$/.exec(line);
        if (m) acked.set(m[1]!, Number(m[2]));
        if (acked.size >= afterAcks && !child.killed) child.kill('SIGKILL'); // mid-churn: requests are in flight
      }
    });
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      if (signal !== 'SIGKILL') reject(new Error(`child ended without kill: ${signal}`));
      else resolve(acked);
    });
  });
}

it('every acknowledged lease survives kill -9 of the writer mid-churn', async () => {
  const dbPath = join(dir, 'portd.sqlite');
  let total = 0;
  for (let round = 0; round < 5; round++) {
    const acked = await churnAndKill(dbPath, 2000 + round * 10_000, 300 + round * 200);
    assert.ok(acked.size >= 300, `round ${round}: only ${acked.size} acks`);
    const db = new Database(dbPath, { readonly: true });
    const rows = db.prepare(`SELECT id, external_port FROM leases WHERE state = 'active'`).all() as {
      id: string;
      external_port: number;
    }[];
    db.close();
    const present = new Map(rows.map((r) => [r.id, r.external_port]));
    for (const [id, port] of acked)
      assert.equal(present.get(id), port, `round ${round}: acknowledged lease ${id} (port ${port}) lost`);
    total += acked.size;
  }
  assert.ok(total >= 1500);
});
