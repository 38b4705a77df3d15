/**
 * One node of the HA lab (test/lab/ha-lab.ts), run inside gateway A's or B's namespace:
 *   ip netns exec <ns> node --import tsx test/lab/ha-node.ts <pgUrl> <fifo> <node>
 * (the node name last: keepalived's check script finds this process by it).
 *
 * The HA parts are portd's own: the nftables dataplane (table portd, lan0/wan0, the WAN virtual address as the
 * external address) and `startHaNode` (src/ha/node.ts: the fence, the follower and the role controller
 * following keepalived's notify_fifo), as portd start will compose them. The
 * active side is a stand-in for the PostgreSQL writer of issue 18 item 2 (not on main yet): `grant`/`renew`
 * commands run one writer transaction as that writer will — the fence's guard first, the row, the kernel
 * before the commit — so the takeover, the follower and the fence are exercised end to end.
 *
 * stdin: JSON lines {id, op, ...}; stdout: {id, ok, ...} answers, and {"ready":true} once started.
 * Exits when stdin closes.
 */
import { createInterface } from 'node:readline';
import pg from 'pg';
import pino from 'pino';
import { createNftablesDataplane } from '../../src/dataplane/nftables.js';
import { FencedError } from '../../src/ha/fence.js';
import { startHaNode } from '../../src/ha/node.js';
import type { HaRole } from '../../src/ha/role.js';
import { leaseEntry } from '../../src/leases/entry.js';
import { openPostgresStore } from '../../src/leases/pg/store.js';
import { type LeaseRow, rowToLease } from '../../src/leases/store.js';

const [url, fifo, node] = process.argv.slice(2) as [string, string, string];
const VIP_WAN = '203.0.113.1';
const log = pino({ level: process.env['LAB_LOG'] ? 'info' : 'silent' }, pino.destination(2)).child({ node });
const out = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(o)}\n`);

const dataplane = createNftablesDataplane({
  table: 'portd',
  wan: 'wan0',
  lan: ['lan0'],
  hairpin: true,
  frontendPorts: { tcp: [], udp: [5351] },
  log,
});
await dataplane.init();
await dataplane.setExternalAddresses([VIP_WAN]);

// migrates to the current schema (under the migration lock: both nodes may start together)
const store = await openPostgresStore({ url, onWarning: (m) => log.warn(m) });
await store.close();

const newClient = () => {
  const c = new pg.Client({ connectionString: url, application_name: `portd-${node}` });
  c.on('error', (e) => log.warn({ err: e.message }, 'database connection'));
  return c;
};

/** the writer stand-in's connection while active */
let writer: pg.Client | null = null;
let lastToken: number | null = null;
let roleNow: HaRole = 'standby';
const ha = startHaNode({
  ha: { node, keepalived: { fifo, instance: 'gw' }, lockTimeout: 2000, idleInTransactionTimeout: 1000 },
  url,
  dataplane,
  log,
  activate: async (token) => {
    const c = newClient();
    await c.connect();
    // the new writer's first act: the kernel holds exactly the table (reconcile on start, as portd does)
    const rows = (await c.query<LeaseRow>(`SELECT * FROM leases WHERE state = 'active'`)).rows;
    await dataplane.reset(rows.map((r) => leaseEntry(rowToLease(r), Date.now(), 5)));
    writer = c;
    lastToken = token;
    return {
      async stop() {
        writer = null;
        await c.end().catch(() => {});
      },
    };
  },
  onRole: (r, token) => {
    roleNow = r;
    out({ event: 'role', role: r, token, at: Date.now() });
  },
});
const { fence, role, follower } = ha;

interface Cmd {
  id: number;
  op: string;
  leaseId?: string;
  externalPort?: number;
  internalAddress?: string;
  internalPort?: number;
  lifetime?: number;
  token?: number;
}

/** one writer transaction: guard, row, kernel, commit (the kernel change is undone when the commit fails) */
async function writeLease(c: pg.Client, token: number, cmd: Cmd, renew: boolean): Promise<LeaseRow> {
  const now = Date.now();
  const expires = now + (cmd.lifetime ?? 600) * 1000;
  await c.query('BEGIN');
  try {
    await fence.guard(c, token);
    const res = renew
      ? await c.query<LeaseRow>(
          `UPDATE leases SET expires_at = $2, updated_at = $3, renew_count = renew_count + 1, renewed_at = $3,
           renewed_by = $4 WHERE id = $1 AND state = 'active' RETURNING *`,
          [cmd.leaseId, expires, now, node],
        )
      : await c.query<LeaseRow>(
          `INSERT INTO leases (id, source, protocol, external_address, external_port, external_port_end,
           internal_address, internal_port, owner, created_at, updated_at, expires_at, requested_lifetime, state)
           VALUES ($1, 'pcp', 'tcp', $2, $3, $3, $4, $5, $4, $6, $6, $7, $8, 'active') RETURNING *`,
          [cmd.leaseId, VIP_WAN, cmd.externalPort, cmd.internalAddress, cmd.internalPort, now, expires, cmd.lifetime],
        );
    const row = res.rows[0];
    if (!row) throw new Error(`no active lease ${cmd.leaseId}`);
    const entry = leaseEntry(rowToLease(row), now, 5);
    const old = (await dataplane.list()).filter((e) => e.id === row.id);
    await dataplane.apply({ remove: old, add: [entry] });
    await c.query('COMMIT');
    return row;
  } catch (e) {
    await c.query('ROLLBACK').catch(() => {});
    if (e instanceof FencedError) role.fenced();
    throw e;
  }
}

async function handle(cmd: Cmd): Promise<Record<string, unknown>> {
  switch (cmd.op) {
    case 'status':
      return { ok: true, role: roleNow, token: role.token(), follower: follower.status() };
    case 'grant':
    case 'renew': {
      if (!writer || lastToken === null) return { ok: false, error: `not active (${roleNow})` };
      const row = await writeLease(writer, lastToken, cmd, cmd.op === 'renew');
      return { ok: true, lease: { id: row.id, renewCount: row.renew_count, expiresAt: Number(row.expires_at) } };
    }
    case 'staleWrite': {
      // a write with the token this node last held, on a fresh connection: what a node that missed its demotion
      // (a partition) would try
      const c = newClient();
      await c.connect();
      try {
        await writeLease(c, cmd.token ?? lastToken ?? 0, cmd, false);
        return { ok: true };
      } catch (e) {
        return { ok: false, error: (e as Error).message, fenced: e instanceof FencedError };
      } finally {
        await c.end().catch(() => {});
      }
    }
    case 'kernel': {
      const entries = await dataplane.list();
      return {
        ok: true,
        entries: entries.map((e) => `${e.protocol}/${e.externalPort}>${e.internalAddress}:${e.internalPort}`).sort(),
      };
    }
    default:
      return { ok: false, error: `unknown op ${cmd.op}` };
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  let cmd: Cmd;
  try {
    cmd = JSON.parse(line) as Cmd;
  } catch {
    return;
  }
  handle(cmd).then(
    (r) => out({ id: cmd.id, ...r }),
    (e: Error) => out({ id: cmd.id, ok: false, error: e.message, fenced: e instanceof FencedError }),
  );
});
rl.on('close', async () => {
  await ha.stop();
  await dataplane.destroy();
  await dataplane.close();
  process.exit(0);
});
out({ ready: true, node });
