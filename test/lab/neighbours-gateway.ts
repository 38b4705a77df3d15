/**
 * Runs inside the lab's gateway namespace (startLabProcess): the dataplane's neighbour table on the LAN
 * bridge with its defaults (real `ip -j -6 neigh`, real UDP probes), answering JSON lines on stdin:
 *   {id, op: 'sameHost', requester, target, ensure}  → {id, ok, same, verdict?, reason}
 *   {id, op: 'lookup', address}                      → {id, ok, entry}
 * Prints {"ready":true} first; exits when stdin closes.
 */
import pino from 'pino';
import { createNeighbourTable } from '../../src/dataplane/neighbours.js';
import { sameHost } from '../../src/policy/same-host.js';

const table = createNeighbourTable({ interfaces: [process.argv[2] ?? 'br0'], log: pino({ level: 'silent' }) });
let buf = '';
process.stdin.on('data', (d: Buffer) => {
  buf += d.toString();
  for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    void handle(JSON.parse(line) as Record<string, unknown>).then((r) =>
      process.stdout.write(`${JSON.stringify(r)}\n`),
    );
  }
});
process.stdin.on('end', () => {
  table.close();
  process.exit(0);
});

async function handle(m: Record<string, unknown>): Promise<Record<string, unknown>> {
  const id = m['id'];
  try {
    if (m['op'] === 'sameHost') {
      const requester = String(m['requester']);
      const target = String(m['target']);
      if (m['ensure']) await table.ensure([requester, target]);
      return { id, ok: true, ...sameHost(requester, target, table.lookup) };
    }
    if (m['op'] === 'lookup') return { id, ok: true, entry: table.lookup(String(m['address'])) };
    return { id, ok: false, error: `unknown op ${String(m['op'])}` };
  } catch (err) {
    return { id, ok: false, error: (err as Error).message };
  }
}
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
