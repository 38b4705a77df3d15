/**
 * Admin authentication: who may call the API, and how the token is found.
 *
 * On a loopback listen address the API is open (like a local control socket). On any
 * other address every call needs the token, as `Authorization: Bearer <token>` or as the
 * session cookie set by `POST /api/v1/login` (the dashboard: EventSource cannot send headers).
 */
import { randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import { parseListen, type ListenAddress } from '../common/listen.js';
import type { Config } from '../config/types.js';
import { ErrorCode, PortdError } from '../errors.js';
import { PRIVATE_FILE, ensurePrivateDir, tightenFile } from '../file-modes.js';
import type { ModeReport } from '../file-modes.js';

export interface AdminToken {
  /** null: no token known (allowed only on loopback) */
  readonly value: string | null;
  /** recorded as the caller in logs and lease history (`admin:<name>`) */
  readonly name: string;
}

export interface ResolvedAdminToken extends AdminToken {
  readonly origin: 'config' | 'file' | 'env' | 'generated' | 'state-file' | 'none';
  /** where the token was read from or written to */
  readonly path: string | null;
}

/**
 * admin.listen as host and port, by the one listen parser (src/common/listen.ts). The config
 * validator has checked it; a hand-built config that slips past gets the same advice.
 */
export function adminListen(listen: string): ListenAddress {
  const l = parseListen(listen);
  if (l) return l;
  throw new PortdError(
    ErrorCode.CONFIG_INVALID,
    `admin.listen: cannot parse "${listen}"`,
    'write an IP address and port, e.g. 127.0.0.1:8080 or [::1]:8080',
  );
}

export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  const h = host.toLowerCase();
  return h === '::1' || h === '0:0:0:0:0:0:0:1' || h.startsWith('::ffff:127.');
}

export function isLoopbackListen(listen: string): boolean {
  return isLoopbackHost(adminListen(listen).host);
}

const TOKEN_FILE = 'admin-token';

/**
 * Finds the admin token: config.admin.token, config.admin.tokenFile, env PORTD_ADMIN_TOKEN,
 * then `<stateDir>/admin-token`. When none exists and a token is required (non-loopback
 * listen), one is generated and stored there with mode 0600; the log says where.
 */
export function resolveAdminToken(opts: {
  config: Pick<Config, 'admin' | 'stateDir'>;
  env?: NodeJS.ProcessEnv;
  stateDir?: string;
  log: Logger;
  /** default: listen address is not loopback */
  required?: boolean;
  name?: string;
}): ResolvedAdminToken {
  const { config, log } = opts;
  const env = opts.env ?? {};
  const name = opts.name ?? 'admin';
  const required = opts.required ?? !isLoopbackListen(config.admin.listen);
  if (config.admin.token) return { value: config.admin.token, name, origin: 'config', path: null };
  if (config.admin.tokenFile) {
    const path = resolve(config.admin.tokenFile);
    let text: string;
    try {
      text = readFileSync(path, 'utf8').trim();
    } catch (e) {
      throw new PortdError(
        ErrorCode.CONFIG_INVALID,
        `admin.tokenFile: cannot read ${path}: ${(e as Error).message}`,
        'create the file with the token on one line, mode 0600',
      );
    }
    if (!text)
      throw new PortdError(ErrorCode.CONFIG_INVALID, `admin.tokenFile: ${path} is empty`, 'put the token on one line');
    // the admin's own file (it may be 0640 root:portd on purpose): only a world-readable one is worth a word
    try {
      if (statSync(path).mode & 0o004)
        log.warn({ path }, `admin.tokenFile ${path} is readable by every user: chmod o-r it`);
    } catch {
      /* read above */
    }
    return { value: text, name, origin: 'file', path };
  }
  const fromEnv = env['PORTD_ADMIN_TOKEN']?.trim();
  if (fromEnv) return { value: fromEnv, name, origin: 'env', path: null };

  const dir = resolve(opts.stateDir ?? config.stateDir);
  const path = join(dir, TOKEN_FILE);
  const report: ModeReport = (msg, fields) => log.warn(fields, msg);
  if (existsSync(path)) {
    ensurePrivateDir(dir, report);
    tightenFile(path, report);
    const text = readFileSync(path, 'utf8').trim();
    if (text) {
      log.info({ path }, 'admin token read from state directory');
      return { value: text, name, origin: 'state-file', path };
    }
  }
  if (!required) return { value: null, name, origin: 'none', path: null };
  const value = randomBytes(24).toString('base64url');
  ensurePrivateDir(dir, report);
  writeFileSync(path, value + '\n', { mode: PRIVATE_FILE });
  chmodSync(path, PRIVATE_FILE); // an existing empty file keeps its mode otherwise
  log.warn(
    { path },
    `admin token generated: read it from ${path} (cat ${path}); the CLI reads it itself given --config`,
  );
  return { value, name, origin: 'generated', path };
}

/** constant-time comparison (hash first so lengths do not leak) */
export function tokenMatches(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

export function bearerToken(header: string | undefined): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}

export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const k = part.slice(0, i).trim();
    const v = part.slice(i + 1).trim();
    if (k) {
      try {
        out.set(k, decodeURIComponent(v));
      } catch {
        out.set(k, v);
      }
    }
  }
  return out;
}

export const SESSION_COOKIE = 'portd_session';

/** dashboard sessions, in memory: a restart of portd logs the dashboard out (it asks for the token again) */
export function createSessionStore(opts: { now: () => number; ttlMs: number; max?: number }) {
  const sessions = new Map<string, { name: string; expires: number }>();
  const max = opts.max ?? 1000;
  return {
    create(name: string): string {
      const now = opts.now();
      for (const [id, s] of sessions) if (s.expires <= now) sessions.delete(id);
      // bounded: the oldest session goes first
      while (sessions.size >= max) {
        const first = sessions.keys().next().value;
        if (first === undefined) break;
        sessions.delete(first);
      }
      const id = randomBytes(32).toString('base64url');
      sessions.set(id, { name, expires: now + opts.ttlMs });
      return id;
    },
    lookup(id: string): string | null {
      const s = sessions.get(id);
      if (!s) return null;
      if (s.expires <= opts.now()) {
        sessions.delete(id);
        return null;
      }
      return s.name;
    },
    remove(id: string): void {
      sessions.delete(id);
    },
    get size() {
      return sessions.size;
    },
  };
}
export type SessionStore = ReturnType<typeof createSessionStore>;
