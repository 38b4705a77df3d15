// The request loop both lab agents (agent.mjs, churn-agent.mjs) run: one JSON command per line on
// stdin ({ id, op, ...args }), one JSON answer per command on stdout ({ id, ok, ... }), in whatever
// order the ops finish. The harness closes stdin to stop an agent; it never outlives that, nor SIGTERM.
import readline from 'node:readline';

function reply(id, body) {
  process.stdout.write(JSON.stringify({ id, ...body }) + '\n');
}

/** answers each command with `ops[op](msg)`; unknown ops and thrown errors become { ok: false, error } */
export function serve(ops) {
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    const fn = ops[msg.op];
    if (!fn) {
      reply(msg.id, { ok: false, error: `unknown op ${msg.op}` });
      return;
    }
    try {
      reply(msg.id, await fn(msg));
    } catch (e) {
      reply(msg.id, { ok: false, error: String(e?.message ?? e) });
    }
  });
  rl.on('close', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
}
