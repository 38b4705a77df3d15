/**
 * `portd leases | revoke | forward | status`: operator commands that talk to a running
 * portd through its admin API (never to the database directly: the daemon is the one writer).
 *
 * Exit codes: 0 ok, 1 the API refused (not found, conflict, read-only...), 2 usage error,
 * 3 cannot reach the API or not authorized.
 */
import { isIP } from 'node:net';
import type { Config } from '../config/types.js';
import type { Lease } from '../leases/types.js';
import { externalPorts, formatPortRange } from '../common/port-range.js';
import { formatEndpoint } from '../common/ipv6.js';
import { adminListen } from './auth.js';

export interface Writer {
  write(s: string): unknown;
}
export interface AdminCommandOptions {
  readonly baseUrl: string;
  readonly token: string | null;
  readonly out: Writer;
  readonly err: Writer;
  /** for tests: a fixed "now" for time-left columns */
  readonly now?: () => number;
  readonly fetch?: typeof fetch;
  /** shown when the API answers 401: why no token was found (e.g. the token file was not readable) */
  readonly tokenHint?: string;
}

export const ADMIN_COMMANDS = ['leases', 'revoke', 'forward', 'status'] as const;

export const ADMIN_USAGE = `portd leases [--source S] [--state active|ended|all] [--family 4|6] [--json]   list leases
portd revoke ID [--reason TEXT]                                  revoke a lease (closes the port now)
portd forward add <tcp|udp> <extPort[-end]> <internal[:port]> [--description D] [--lifetime SECONDS] [--remote ADDR]
  (internal [2001:db8::10] = a static IPv6 pinhole on that port of that host, no translation)
portd forward rm ID                                              remove a static forward
portd status [--json]                                            daemon status
  common: --url http://127.0.0.1:8080  --token T (or env PORTD_ADMIN_TOKEN)`;

class UsageError extends Error {}
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** base URL and token for the CLI, from flags, env and config (a wildcard listen is reached on loopback) */
export function adminClientTarget(opts: {
  config: Pick<Config, 'admin'> | null;
  env?: NodeJS.ProcessEnv;
  url?: string;
  token?: string;
  /** token read from config.admin.tokenFile or <stateDir>/admin-token by the caller, if any */
  tokenFromFile?: string | null;
}): { baseUrl: string; token: string | null } {
  const env = opts.env ?? {};
  let baseUrl = opts.url ?? env['PORTD_ADMIN_URL'];
  if (!baseUrl) {
    const { host, port } = adminListen(opts.config?.admin.listen ?? '127.0.0.1:8080');
    const h = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
    baseUrl = `http://${isIP(h) === 6 ? `[${h}]` : h}:${port}`;
  }
  // an empty PORTD_ADMIN_TOKEN= (a unit's Environment=, a script's export) is no token: look further
  const token =
    opts.token || env['PORTD_ADMIN_TOKEN']?.trim() || opts.config?.admin.token || opts.tokenFromFile || null;
  return { baseUrl: baseUrl.replace(/\/+$/, ''), token };
}

interface Parsed {
  positional: string[];
  flags: Map<string, string | true>;
}
function parseArgs(argv: readonly string[], valued: readonly string[], booleans: readonly string[]): Parsed {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (booleans.includes(name)) {
        flags.set(name, true);
        continue;
      }
      if (!valued.includes(name)) throw new UsageError(`unknown option --${name}`);
      const v = eq >= 0 ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`--${name} needs a value`);
      flags.set(name, v);
    } else positional.push(a);
  }
  return { positional, flags };
}

function fmtDuration(s: number): string {
  s = Math.max(0, Math.round(s));
  const d = Math.floor(s / 86400),
    h = Math.floor((s % 86400) / 3600),
    m = Math.floor((s % 3600) / 60),
    sec = s % 60;
  if (d) return `${d}d${h}h`;
  if (h) return `${h}h${m}m`;
  if (m) return `${m}m${sec}s`;
  return `${sec}s`;
}

/**
 * Text that came from the network (UPnP descriptions, owners) shown on a terminal: control
 * characters and bidi overrides are written as escapes, so a LAN device cannot send escape
 * sequences to the operator's terminal through `portd leases`.
 */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: escaping control characters is the point
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const n = c.charCodeAt(0);
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u${n.toString(16).padStart(4, '0')}`;
  });
}

function table(rows: string[][]): string {
  const widths: number[] = [];
  rows = rows.map((r) => r.map(printable));
  for (const r of rows)
    r.forEach((c, i) => {
      widths[i] = Math.max(widths[i] ?? 0, c.length);
    });
  return (
    rows
      .map((r) =>
        r
          .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

const portsOf = (l: Pick<Lease, 'externalPort' | 'externalPortEnd'>) => formatPortRange(externalPorts(l));
/** the first internal port, `[2001:db8::10]:443` for an IPv6 endpoint */
const startOf = (l: Pick<Lease, 'internalAddress' | 'internalPort'>) =>
  formatEndpoint(l.internalAddress, l.internalPort);
/** `[2001:db8::10]:443` for an IPv6 endpoint, `192.0.2.1:443` otherwise */
const internalOf = (l: Pick<Lease, 'externalPort' | 'externalPortEnd' | 'internalAddress' | 'internalPort'>) => {
  const span = l.externalPortEnd - l.externalPort;
  return formatEndpoint(l.internalAddress, `${l.internalPort}${span ? `-${l.internalPort + span}` : ''}`);
};

export function formatLeases(list: readonly Lease[], now: number): string {
  if (list.length === 0) return 'no leases\n';
  const rows = [['ID', 'SOURCE', 'PROTO', 'EXTERNAL', 'INTERNAL', 'OWNER', 'LEFT', 'DESCRIPTION']];
  for (const l of list) {
    const left =
      l.state !== 'active'
        ? (l.endReason ?? 'ended')
        : l.expiresAt === null
          ? 'never'
          : fmtDuration((l.expiresAt - now) / 1000);
    rows.push([
      l.id,
      l.source + (l.readOnly ? '*' : ''),
      l.protocol,
      // a pinhole's external endpoint is its internal one (no translation)
      formatEndpoint(l.externalAddress, portsOf(l)),
      internalOf(l),
      l.owner,
      left,
      (l.description || (l.rule ? `rule ${l.rule}` : '')) + (l.remoteAddress ? ` [from ${l.remoteAddress}]` : ''),
    ]);
  }
  const ro = list.some((l) => l.readOnly) ? '* from the config file (read-only)\n' : '';
  return table(rows) + ro;
}

export async function runAdminCommand(argv: string[], opts: AdminCommandOptions): Promise<number> {
  const doFetch = opts.fetch ?? fetch;
  const now = opts.now ?? (() => Date.now());
  // --url / --token anywhere on the line override what the caller resolved from the config
  let base = opts.baseUrl;
  let token = opts.token;
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--(url|token)(?:=(.*))?$/.exec(a);
    if (!m) {
      args.push(a);
      continue;
    }
    const v = m[2] ?? argv[++i];
    if (v === undefined) {
      opts.err.write(`portd: --${m[1]} needs a value\n`);
      return 2;
    }
    if (m[1] === 'url') base = v;
    else token = v;
  }
  base = base.replace(/\/+$/, '');

  const call = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (token) headers['authorization'] = `Bearer ${token}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await doFetch(base + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(15_000),
      });
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      throw new ApiError(
        0,
        'CONNECT',
        `cannot reach the portd admin API at ${base}: ${cause?.code ?? cause?.message ?? (e as Error).message} ` +
          '(is portd running? set --url or admin.listen)',
      );
    }
    const text = await res.text();
    let data: unknown = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: text };
    }
    if (!res.ok) {
      const d = (data ?? {}) as { code?: string; message?: string };
      throw new ApiError(res.status, d.code ?? `HTTP_${res.status}`, d.message ?? `HTTP ${res.status}`);
    }
    return data as T;
  };

  const [cmd, ...rest] = args;
  try {
    switch (cmd) {
      case 'leases': {
        const p = parseArgs(rest, ['source', 'state', 'owner', 'limit', 'family'], ['json']);
        if (p.positional.length) throw new UsageError(`unexpected argument ${p.positional[0]}`);
        const q = new URLSearchParams();
        for (const k of ['source', 'state', 'owner', 'family'] as const) {
          const v = p.flags.get(k);
          if (typeof v === 'string') q.set(k, v);
        }
        q.set('limit', String(p.flags.get('limit') ?? 1000));
        const r = await call<{ leases: Lease[]; total: number }>('GET', `/api/v1/leases?${q}`);
        if (p.flags.get('json')) opts.out.write(JSON.stringify(r.leases, null, 2) + '\n');
        else {
          opts.out.write(formatLeases(r.leases, now()));
          if (r.total > r.leases.length) opts.out.write(`(${r.leases.length} of ${r.total} shown: use --limit)\n`);
        }
        return 0;
      }
      case 'revoke': {
        const p = parseArgs(rest, ['reason'], ['json']);
        const id = p.positional[0];
        if (!id || p.positional.length > 1) throw new UsageError('revoke takes one lease ID (see `portd leases`)');
        const reason = p.flags.get('reason');
        const r = await call<{ lease: Lease }>(
          'DELETE',
          `/api/v1/leases/${encodeURIComponent(id)}` +
            (typeof reason === 'string' ? `?reason=${encodeURIComponent(reason)}` : ''),
        );
        opts.out.write(
          p.flags.get('json')
            ? JSON.stringify(r.lease, null, 2) + '\n'
            : `revoked ${id}: ${r.lease.protocol} ${portsOf(r.lease)} -> ` +
                `${startOf(r.lease)} (${r.lease.source}, owner ${r.lease.owner})\n`,
        );
        return 0;
      }
      case 'forward': {
        const [sub, ...args] = rest;
        if (sub === 'add') {
          const p = parseArgs(args, ['description', 'lifetime', 'remote'], ['json']);
          const [proto, ports, internal, extra] = p.positional;
          if (!proto || !ports || !internal || extra !== undefined)
            throw new UsageError('forward add <tcp|udp> <extPort[-end]> <internal[:port]>');
          if (proto !== 'tcp' && proto !== 'udp') throw new UsageError(`protocol must be tcp or udp, not ${proto}`);
          const pm = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(ports);
          if (!pm) throw new UsageError(`external port must be a number or a range like 6000-6010, not ${ports}`);
          // an IPv6 internal address in brackets is a static pinhole: `[2001:db8::10]` or `[2001:db8::10]:443`
          const im =
            /^([0-9.]+)(?::(\d{1,5}))?$/.exec(internal) ?? /^\[([0-9A-Fa-f:.]+)\](?::(\d{1,5}))?$/.exec(internal);
          if (!im || isIP(im[1]!) === 0)
            throw new UsageError(
              `internal must be an IPv4 address or a bracketed IPv6 one ([2001:db8::10]) with an optional :port, ` +
                `not ${internal}`,
            );
          if (isIP(im[1]!) === 6 && im[2] !== undefined && Number(im[2]) !== Number(pm[1]))
            throw new UsageError(`an IPv6 pinhole has no translation: the internal port must be ${pm[1]} or left out`);
          const body: Record<string, unknown> = {
            protocol: proto,
            externalPort: Number(pm[1]),
            internalAddress: im[1],
            description: '',
          };
          if (pm[2]) body['externalPortEnd'] = Number(pm[2]);
          if (im[2]) body['internalPort'] = Number(im[2]);
          const d = p.flags.get('description');
          if (typeof d === 'string') body['description'] = d;
          const rm = p.flags.get('remote');
          if (typeof rm === 'string') body['remoteAddress'] = rm;
          const lt = p.flags.get('lifetime');
          if (typeof lt === 'string') {
            if (!/^\d+$/.test(lt) || Number(lt) < 1)
              throw new UsageError(`--lifetime must be a number of seconds, not ${lt}`);
            body['lifetime'] = Number(lt);
          }
          const r = await call<{ lease: Lease; created: boolean }>('POST', '/api/v1/leases', body);
          const l = r.lease;
          opts.out.write(
            p.flags.get('json')
              ? JSON.stringify(l, null, 2) + '\n'
              : `${r.created ? 'added' : 'renewed'} ${l.id}: ${l.protocol} ` +
                  `${formatEndpoint(l.externalAddress, portsOf(l))} -> ${startOf(l)}` +
                  (l.expiresAt === null
                    ? ' (no expiry)'
                    : ' (expires in ' + `${fmtDuration((l.expiresAt - now()) / 1000)})`) +
                  '\n',
          );
          return 0;
        }
        if (sub === 'rm') {
          const p = parseArgs(args, ['url', 'token'], []);
          const id = p.positional[0];
          if (!id || p.positional.length > 1) throw new UsageError('forward rm takes one lease ID');
          const { lease } = await call<{ lease: Lease }>('GET', `/api/v1/leases/${encodeURIComponent(id)}`);
          if (lease.source !== 'static') {
            opts.err.write(`${id} is a ${lease.source} lease, not a static forward: use \`portd revoke ${id}\`\n`);
            return 1;
          }
          await call(
            'DELETE',
            `/api/v1/leases/${encodeURIComponent(id)}?reason=${encodeURIComponent('forward removed')}`,
          );
          opts.out.write(`removed ${id}: ${lease.protocol} ${portsOf(lease)} -> ${startOf(lease)}\n`);
          return 0;
        }
        throw new UsageError('forward add|rm ...');
      }
      case 'status': {
        const p = parseArgs(rest, ['url', 'token'], ['json']);
        const s = await call<StatusJson>('GET', '/api/v1/status');
        if (p.flags.get('json')) {
          opts.out.write(JSON.stringify(s, null, 2) + '\n');
          return 0;
        }
        opts.out.write(formatStatus(s));
        return 0;
      }
      default:
        throw new UsageError(cmd ? `unknown command ${cmd}` : 'no command');
    }
  } catch (e) {
    if (e instanceof UsageError) {
      opts.err.write(`portd: ${e.message}\n\n${ADMIN_USAGE}\n`);
      return 2;
    }
    if (e instanceof ApiError) {
      opts.err.write(`portd: ${e.message}${e.code && e.status ? ` (${e.code})` : ''}\n`);
      if (e.status === 401 && opts.tokenHint) opts.err.write(`  hint: ${opts.tokenHint}\n`);
      else if (e.status === 401)
        opts.err.write(
          '  hint: pass --config FILE to read the token from the admin-token file of its stateDir (root or the ' +
            'portd user can), or --token / PORTD_ADMIN_TOKEN\n',
        );
      return e.status === 0 || e.status === 401 ? 3 : 1;
    }
    throw e;
  }
}

interface StatusJson {
  version: string;
  uptimeSeconds: number;
  externalAddress: string;
  pcpEpoch: number | null;
  leases: { total: number; bySource: Record<string, number> };
  quota: { maxLeasesPerClient: number; clients: { owner: string; leases: number }[] };
  dataplane: { driver: string; ok: boolean; lastReconcileAt: number | null; lastDrift: number; detail?: string };
  frontends: { name: string; listening: string[] }[];
  upnpDescriptionUrls: string[];
}

export function formatStatus(s: StatusJson): string {
  const lines = [
    `portd ${s.version}, up ${fmtDuration(s.uptimeSeconds)}`,
    `external address  ${s.externalAddress}`,
    `PCP epoch         ${s.pcpEpoch ?? 'off'}`,
    `dataplane         ${s.dataplane.driver} ` +
      `${s.dataplane.ok ? 'ok' : 'FAILING'}${s.dataplane.detail ? ` (${s.dataplane.detail})` : ''}, last reconcile ` +
      `${s.dataplane.lastReconcileAt ? new Date(s.dataplane.lastReconcileAt).toISOString() : 'never'}, drift ` +
      `${s.dataplane.lastDrift}`,
    `leases            ${s.leases.total} active: ${Object.entries(s.leases.bySource)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ')}`,
  ];
  const top = s.quota.clients.slice(0, 5).map((c) => `${c.owner} ${c.leases}/${s.quota.maxLeasesPerClient}`);
  if (top.length) lines.push(`busiest clients   ${top.join(', ')}`);
  for (const f of s.frontends) lines.push(`${(f.name + ' ').padEnd(18)}${f.listening.join(', ') || 'off'}`);
  for (const u of s.upnpDescriptionUrls) lines.push(`UPnP description  ${u}`);
  return lines.join('\n') + '\n';
}
