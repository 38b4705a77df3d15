/**
 * Before the nftables driver starts: is `nft` there, and may we change the ruleset?
 * The write test adds and deletes a scratch table in one transaction, so nothing is left behind.
 */
import { ErrorCode, PortdError } from '../errors.js';
import { CommandError, run, type CommandPrefix } from './nftables-runner.js';

export interface PreflightOptions extends CommandPrefix {
  readonly nftPath: string;
  readonly conntrackPath?: string;
  /** our table name; the scratch table is `<table>_preflight` (default portd) */
  readonly table?: string;
}

export interface PreflightResult {
  readonly nftVersion: string;
  /** conntrack missing is not fatal: flows of ended leases then end by the kernel rule only */
  readonly conntrack: boolean;
  readonly warnings: string[];
}

export async function preflight(opts: PreflightOptions): Promise<PreflightResult> {
  let version: string;
  try {
    const r = await run(opts, opts.nftPath, ['--version'], { timeoutMs: 10_000 });
    if (r.code !== 0) throw new CommandError(r.stderr.trim(), r);
    version = r.stdout.trim();
  } catch (err) {
    throw new PortdError(
      ErrorCode.NFT_MISSING,
      `cannot run ${opts.nftPath}: ${err instanceof Error ? err.message : String(err)}`,
      'install nftables (apt-get install nftables), set dataplane.nftPath, or use dataplane.driver: memory for a ' +
        'test run',
    );
  }
  const scratch = `${opts.table ?? 'portd'}_preflight`.slice(0, 32);
  const r = await run(opts, opts.nftPath, ['-f', '-'], {
    input: `add table inet ${scratch}\ndelete table inet ${scratch}\n`,
    timeoutMs: 10_000,
  });
  if (r.code !== 0) {
    if (/Operation not permitted|Permission denied/i.test(r.stderr)) {
      throw new PortdError(
        ErrorCode.NO_CAP_NET_ADMIN,
        'no permission to change nftables (CAP_NET_ADMIN missing)',
        'run portd as root or with AmbientCapabilities=CAP_NET_ADMIN (see config/portd.service), or use ' +
          'dataplane.driver: memory',
      );
    }
    throw new PortdError(
      ErrorCode.DATAPLANE_UNAVAILABLE,
      `nftables refused a test transaction: ${r.stderr.trim().split('\n')[0] ?? ''}`,
      'check that the kernel has nf_tables (modprobe nf_tables) and that nft works: nft list tables',
    );
  }
  const warnings: string[] = [];
  let conntrack = false;
  if (opts.conntrackPath) {
    try {
      const c = await run(opts, opts.conntrackPath, ['--version'], { timeoutMs: 10_000 });
      conntrack = c.code === 0;
    } catch {
      conntrack = false;
    }
    if (!conntrack)
      warnings.push(
        `${opts.conntrackPath} not runnable (apt-get install conntrack): flows of ended leases end by the kernel ` +
          'rule only',
      );
  }
  return { nftVersion: version, conntrack, warnings };
}
