import {
  spawn,
  type ChildProcessWithoutNullStreams,
  type SpawnOptionsWithStdioTuple,
  type StdioPipe,
  type StdioNull,
} from 'node:child_process';
import { existsSync } from 'node:fs';

/** util-linux setpriv: sets PR_SET_PDEATHSIG before exec, so the helper dies with portd (even on kill -9) */
const SETPRIV = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p)) ?? null;

/**
 * Spawn a long-lived helper process (conntrack -E, ip monitor) that must not outlive portd.
 * A helper that reads its stdin (nft -i) ends on EOF by itself; these ones never read it.
 */
export function spawnTied(
  cmd: string,
  args: readonly string[],
  opts: { stdio?: 'pipe' | ['ignore', 'pipe', 'pipe'] } = {},
): ChildProcessWithoutNullStreams {
  const [file, argv] = SETPRIV ? [SETPRIV, ['--pdeathsig', 'KILL', '--', cmd, ...args]] : [cmd, [...args]];
  return spawn(file, argv, { stdio: opts.stdio ?? 'pipe' } as SpawnOptionsWithStdioTuple<
    StdioPipe | StdioNull,
    StdioPipe,
    StdioPipe
  >) as ChildProcessWithoutNullStreams;
}
