/**
 * `portd doctor [--config FILE] [--json]`: checks a real gateway and says what to fix, one line per check.
 * Exit code 1 when any check fails (warnings alone exit 0), 2 for a usage or configuration error.
 */
import type { Config } from '../config/types.js';
import { runChecks } from './checks.js';
import { gatherFacts } from './gather.js';
import type { CheckResult, CheckStatus } from './types.js';

export type { CheckResult, CheckStatus, DoctorFacts } from './types.js';
export { runChecks } from './checks.js';

export interface DoctorReport {
  readonly config: string;
  /** false when any check failed */
  readonly ok: boolean;
  readonly summary: Record<CheckStatus, number>;
  readonly checks: readonly CheckResult[];
}

export function buildReport(configPath: string, checks: readonly CheckResult[]): DoctorReport {
  const summary: Record<CheckStatus, number> = { ok: 0, info: 0, warn: 0, fail: 0 };
  for (const c of checks) summary[c.status]++;
  return { config: configPath, ok: summary.fail === 0, summary, checks };
}

/** one line per check: status, id, what was found, and what to do */
export function formatReport(r: DoctorReport): string {
  const width = Math.max(...r.checks.map((c) => c.id.length));
  const lines = r.checks.map(
    (c) => `${c.status.padEnd(4)}  ${c.id.padEnd(width)}  ${c.message}${c.fix ? `  → ${c.fix}` : ''}`,
  );
  const s = r.summary;
  lines.push(
    `portd doctor (${r.config}): ${s.fail} fail, ${s.warn} warn, ${s.ok} ok, ${s.info} info` +
      (s.fail > 0 ? ': fix the fail lines first' : ''),
  );
  return lines.join('\n') + '\n';
}

export async function runDoctor(opts: {
  readonly configPath: string;
  readonly config: Config;
  readonly json: boolean;
  readonly env: NodeJS.ProcessEnv;
  readonly out: NodeJS.WritableStream;
}): Promise<number> {
  const facts = await gatherFacts({ configPath: opts.configPath, config: opts.config, env: opts.env });
  const report = buildReport(opts.configPath, runChecks(facts));
  opts.out.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  return report.ok ? 0 : 1;
}
