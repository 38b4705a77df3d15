/**
 * A throwaway PostgreSQL cluster for the tests of the PostgreSQL storage backend (issue 18 item 2): `initdb`
 * into a fresh temp dir, the server listening only on a Unix socket in that dir (no TCP at all), fsync off.
 * `stop()` kills the server and removes the dir, and so does a failed start.
 *
 * initdb and postgres refuse to run as root: as root the cluster belongs to Debian's `postgres` system user
 * (the package creates it) and every server command runs through `runuser -u postgres`.
 */
import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PostgresCluster {
  /** a node-postgres connection string to the `postgres` database over the cluster's socket, as user `portd` */
  readonly url: string;
  /** the temp dir: data in `data/`, the socket `.s.PGSQL.5432` and the server log `server.log` beside it */
  readonly dir: string;
  /** kills the server and removes the dir; safe to call twice */
  stop(): void;
}

/** the bin directory of the newest server Debian installed (initdb, pg_ctl, postgres), or null */
export function findPostgresBin(root = '/usr/lib/postgresql'): string | null {
  let versions: string[];
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v));
  } catch {
    return null;
  }
  versions.sort((a, b) => Number(b) - Number(a));
  for (const v of versions) {
    const bin = join(root, v, 'bin');
    if (['initdb', 'pg_ctl', 'postgres'].every((b) => existsSync(join(bin, b)))) return bin;
  }
  return null;
}

function postgresUser(): { uid: number; gid: number } | null {
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : null;
  } catch {
    return null;
  }
}

/** starts a cluster; throws with the reason (and leaves nothing behind) when it cannot */
export function startPostgres(): PostgresCluster {
  const bin = findPostgresBin();
  if (!bin) {
    throw new Error(
      'PostgreSQL server not installed (no /usr/lib/postgresql/<version>/bin/initdb): apt-get install postgresql ' +
        '(npm test installs it when run as root)',
    );
  }
  const root = process.getuid?.() === 0;
  const owner = root ? postgresUser() : null;
  if (root && !owner) throw new Error('running as root and there is no `postgres` user to own the cluster');
  const dir = mkdtempSync(join(tmpdir(), 'portd-pg-'));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  const run = (cmd: string, args: string[]) =>
    execFileSync(root ? 'runuser' : join(bin, cmd), root ? ['-u', 'postgres', '--', join(bin, cmd), ...args] : args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 30_000,
    });
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    try {
      if (existsSync(join(data, 'postmaster.pid'))) run('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // pg_ctl could not stop it: kill the postmaster by its pid file (its children exit with it)
      try {
        const pid = Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]);
        if (Number.isInteger(pid) && pid > 0) process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (owner) chownSync(dir, owner.uid, owner.gid);
    run('initdb', ['-D', data, '-U', 'portd', '--auth=trust', '-E', 'UTF8', '--no-sync', '--no-instructions']);
    // only the socket in the temp dir: no TCP port to collide on or to expose; durability is not under test here
    writeFileSync(
      join(data, 'postgresql.conf'),
      `\nlisten_addresses = ''\nunix_socket_directories = '${dir}'\nfsync = off\nsynchronous_commit = off\n` +
        'full_page_writes = off\nmax_connections = 100\nshared_buffers = 16MB\n',
      { flag: 'a' },
    );
    run('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '20', 'start']);
  } catch (e) {
    let detail = (e as { stderr?: Buffer }).stderr?.toString().trim() || (e as Error).message;
    try {
      detail += `\n${readFileSync(log, 'utf8').slice(-2000)}`;
    } catch {
      /* no log yet */
    }
    stop();
    throw new Error(`could not start a throwaway PostgreSQL cluster: ${detail}`);
  }
  return { url: `postgresql://portd@${encodeURIComponent(dir)}/postgres`, dir, stop };
}

/**
 * For a test file: the cluster, or the reason to skip. Under CI=true a test that needs PostgreSQL and cannot
 * start it fails (this throws) instead of skipping.
 */
export function postgresOrSkip(): { cluster: PostgresCluster; skip: false } | { cluster: null; skip: string } {
  try {
    return { cluster: startPostgres(), skip: false };
  } catch (e) {
    if (process.env.CI === 'true') throw e;
    return { cluster: null, skip: (e as Error).message };
  }
}
