/**
 * The lab's stand-in HA node (ha-node.ts: portd's dataplane, fence, follower and role controller around a
 * stand-in writer) as the HA lab tests drive it: started in its gateway namespace, asked over its JSON lines.
 * One copy for ha-failover and ha-conntrackd.
 */
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { JsonLineChannel, type LabProcess, startLabProcess } from './harness.js';
import type { HaLab, NodeName } from './ha-lab.js';

const HERE = dirname(fileURLToPath(import.meta.url));

/** keepalived's check (no shell, no spaces): the stand-in of this node, found by the name its command ends with */
export const standInTrackScript = (node: NodeName): string => `/usr/bin/pgrep -f ha-node.ts.+.${node}$`;

/** what ha-node.ts answers (the fields each op fills) */
export interface StandInReply {
  ok: boolean;
  error?: string;
  fenced?: boolean;
  role?: string;
  token?: number | null;
  entries?: string[];
  lease?: { id: string; renewCount: number; expiresAt: number };
}

/** `lab` is read when a node starts (the tests create it in `before`) */
export function createStandIns(lab: () => HaLab) {
  const nodes: Partial<Record<NodeName, { proc: LabProcess; ch: JsonLineChannel<StandInReply> }>> = {};
  const startNode = async (node: NodeName): Promise<void> => {
    const l = lab();
    const proc = await startLabProcess(l.ns[node], join(HERE, 'ha-node.ts'), [l.pgUrl, l.fifo(node), node], {
      timeoutMs: 40_000,
    });
    nodes[node] = {
      proc,
      ch: new JsonLineChannel<StandInReply>(proc.child, (w) => ({ ok: false, error: `node ${w}` })),
    };
  };
  const call = (node: NodeName, msg: Record<string, unknown>): Promise<StandInReply> =>
    nodes[node]!.ch.call(msg, 10_000);
  const waitRole = async (node: NodeName, role: string, ms = 10_000): Promise<StandInReply> => {
    const t0 = Date.now();
    for (;;) {
      const s = await call(node, { op: 'status' });
      if (s.role === role) return s;
      if (Date.now() - t0 > ms) throw new Error(`${node} is ${s.role}, not ${role}: ${JSON.stringify(s)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  return { nodes, startNode, call, waitRole };
}
