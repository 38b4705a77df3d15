/**
 * PCP PEER needs the NAT's view of an existing outbound flow (RFC 6887 §12): the external
 * address and port the flow was translated to, and a way to keep the flow alive.
 * The server depends on the small `ConntrackApi` interface; `createConntrackCli` implements it
 * with the `conntrack` tool (conntrack-tools), so tests can inject a fake.
 */
import { execFile } from 'node:child_process';

export interface FlowQuery {
  readonly protocol: 'tcp' | 'udp';
  readonly internalAddress: string;
  readonly internalPort: number;
  readonly remoteAddress: string;
  readonly remotePort: number;
}

export interface FlowInfo {
  /** where the NAT sends the flow from on the WAN side (the reply tuple's destination) */
  readonly externalAddress: string;
  readonly externalPort: number;
  /** seconds conntrack will keep the flow without traffic */
  readonly timeout: number | null;
}

export interface ConntrackApi {
  /** the translated endpoint of the outbound flow internal → remote, or null when there is none */
  lookup(q: FlowQuery): Promise<FlowInfo | null>;
  /** keep the flow for at least `seconds`; false when the flow is gone */
  extend(q: FlowQuery, seconds: number): Promise<boolean>;
}

function run(bin: string, args: string[], timeoutMs: number): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(bin, args, { timeout: timeoutMs, maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, out: `${stdout}${stderr}` });
    });
  });
}

function tupleArgs(q: FlowQuery): string[] {
  return [
    '-p', q.protocol, '--orig-src', q.internalAddress, '--orig-dst', q.remoteAddress,
    '--sport', String(q.internalPort), '--dport', String(q.remotePort),
  ];
}

/**
 * Parse one line of `conntrack -L` output, e.g.
 * `tcp 6 431999 ESTABLISHED src=192.168.77.11 dst=203.0.113.5 sport=40000 dport=80 src=203.0.113.5 dst=203.0.113.1 sport=80 dport=40000 [ASSURED] mark=0 use=1`
 * The second src=/dst= group is the reply tuple; its dst/dport is the external endpoint.
 */
export function parseConntrackLine(line: string): FlowInfo | null {
  const words = line.trim().split(/\s+/);
  const proto = words[0];
  const timeout = proto === 'tcp' || proto === 'udp' ? Number(words[2]) : NaN;
  const dsts = words.filter((w) => w.startsWith('dst=')).map((w) => w.slice(4));
  const dports = words.filter((w) => w.startsWith('dport=')).map((w) => Number(w.slice(6)));
  const externalAddress = dsts[1];
  const externalPort = dports[1];
  if (!externalAddress || externalPort === undefined || !Number.isInteger(externalPort)) return null;
  return { externalAddress, externalPort, timeout: Number.isFinite(timeout) ? timeout : null };
}

export function createConntrackCli(opts: { path?: string; timeoutMs?: number } = {}): ConntrackApi {
  const bin = opts.path ?? 'conntrack';
  const timeoutMs = opts.timeoutMs ?? 2000;
  return {
    async lookup(q) {
      const r = await run(bin, ['-L', ...tupleArgs(q)], timeoutMs);
      if (r.code !== 0) return null;
      for (const line of r.out.split('\n')) {
        const f = parseConntrackLine(line);
        if (f) return f;
      }
      return null;
    },
    async extend(q, seconds) {
      const r = await run(bin, ['-U', ...tupleArgs(q), '--timeout', String(Math.max(1, Math.floor(seconds)))], timeoutMs);
      return r.code === 0 && /flow entr(y|ies) ha(s|ve) been updated/.test(r.out) && !/0 flow entries/.test(r.out);
    },
  };
}
