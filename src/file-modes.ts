/**
 * portd's own files (database, -wal/-shm, lock, admin token) are 0600 and its directories 0700,
 * whatever the umask of whoever started it (systemd sets UMask=0077; a shell usually has 022, which
 * would leave the lease table, every LAN host's mappings, readable by every user of the gateway).
 * Files that exist with looser modes are tightened, and the change is reported.
 */
import { chmodSync, lstatSync, mkdirSync, readdirSync } from 'node:fs';

export const PRIVATE_FILE = 0o600;
export const PRIVATE_DIR = 0o700;

/** reports a mode it tightened (or could not); the caller logs it */
export type ModeReport = (message: string, fields: { path: string; mode: string }) => void;

const octal = (m: number) => (m & 0o777).toString(8).padStart(4, '0');

/** an existing regular file readable or writable by group or others becomes 0600; false when absent */
export function tightenFile(path: string, report: ModeReport): boolean {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return false;
  }
  if (!st.isFile() || (st.mode & 0o077) === 0) return true;
  try {
    chmodSync(path, PRIVATE_FILE);
    report(`${path} was mode ${octal(st.mode)} (readable by others): set to 0600`, { path, mode: octal(st.mode) });
  } catch (e) {
    report(`${path} is mode ${octal(st.mode)} and cannot be set to 0600 (${(e as Error).message}): chmod 600 it`, {
      path,
      mode: octal(st.mode),
    });
  }
  return true;
}

/**
 * Names portd itself writes into its state directory: a directory holding nothing else is portd's
 * own, and may be tightened. A shared one (database.path: /var/lib/x.sqlite) is never chmod'ed:
 * other programs need to traverse it.
 */
export function isPortdFileName(name: string): boolean {
  return name === 'admin-token' || /\.(sqlite|db)(-wal|-shm|-journal|\.lock)?$/.test(name) || name.endsWith('.lock');
}

/**
 * Creates `dir` 0700 when missing (parents too, as 0700). An existing directory open to group or
 * others is set to 0700 only when it is ours (owner is this uid, no sticky bit) and holds only
 * portd's files; otherwise it is reported and left alone (its files are 0600 anyway).
 */
export function ensurePrivateDir(dir: string, report: ModeReport): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR });
    return;
  }
  if (!st.isDirectory() || (st.mode & 0o077) === 0) return;
  const uid = process.getuid?.();
  let own = uid !== undefined && st.uid === uid && (st.mode & 0o1000) === 0;
  if (own) {
    try {
      own = readdirSync(dir).every(isPortdFileName);
    } catch {
      own = false;
    }
  }
  if (!own) {
    if (st.mode & 0o007)
      report(
        `directory ${dir} is mode ${octal(st.mode)} and holds more than portd's files: left as it is (portd's ` +
          'files in it are 0600)',
        { path: dir, mode: octal(st.mode) },
      );
    return;
  }
  try {
    chmodSync(dir, PRIVATE_DIR);
    report(`directory ${dir} was mode ${octal(st.mode)}: set to 0700`, { path: dir, mode: octal(st.mode) });
  } catch (e) {
    report(`directory ${dir} is mode ${octal(st.mode)} and cannot be set to 0700 (${(e as Error).message})`, {
      path: dir,
      mode: octal(st.mode),
    });
  }
}

/** the files SQLite keeps beside a database */
export function databaseFiles(path: string): string[] {
  return [path, `${path}-wal`, `${path}-shm`, `${path}-journal`, `${path}.lock`];
}
