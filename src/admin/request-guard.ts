/**
 * Which requests the admin server answers at all, before authentication:
 *
 * - `Host` must name this server: the address and port it listens on (with a wildcard listen, the
 *   address the connection arrived on), `localhost` when that address is loopback, or a name from
 *   `admin.allowedHosts` (any port: the names a TLS proxy in front is reached by). A page on
 *   evil.example whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends `Host: evil.example:8080`
 *   and is refused, for reads too: otherwise it could read the lease list from a browser on the
 *   gateway, where the token-less loopback API answers. RFC 9110 §7.2 (Host), §15.5.20 (421).
 * - `Origin`, when a browser sends one, must be this server's own origin (RFC 6454 §7): a page of
 *   another origin may make the browser send a request (a form POST, `fetch` in no-cors mode) even
 *   though it cannot read the answer; that is cross-site request forgery. `Origin: null` (sandboxed
 *   frames, file: pages, some redirects) is refused too.
 * - `Sec-Fetch-Site: cross-site` or `same-site` (Fetch Metadata, sent by current browsers even where
 *   they omit `Origin`) is refused except for a top-level navigation with GET: following a link to
 *   the dashboard from another page works, anything a foreign page embeds or fetches does not.
 *
 * Clients that are not browsers (curl, the CLI, Prometheus) send a correct Host and none of the
 * other headers, and are unaffected.
 */
import { isIP } from 'node:net';
import { ErrorCode } from '../errors.js';
import { parseHostHeader } from '../common/host-header.js';
import { adminListen, isLoopbackHost } from './auth.js';

export interface RequestGuardOptions {
  /** admin.listen */
  readonly listen: string;
  /** admin.allowedHosts: more names this server is reached by */
  readonly allowedHosts?: readonly string[];
  /** the port the server is bound to once it listens (admin.listen may ask for port 0) */
  readonly boundPort: () => number | null;
}

export interface GuardedRequest {
  readonly method: string;
  readonly headers: Record<string, string | string[] | undefined>;
  /** where the connection arrived; undefined for in-process injection (tests) */
  readonly localAddress?: string | undefined;
  readonly localPort?: number | undefined;
}

export type GuardVerdict =
  | { readonly ok: true }
  | {
      readonly ok: false;
      /** its HTTP status (421, 403) is the registry's */
      readonly code: typeof ErrorCode.ADMIN_FORBIDDEN_HOST | typeof ErrorCode.ADMIN_FORBIDDEN_ORIGIN;
      readonly kind: 'host' | 'origin' | 'fetch-site';
      readonly message: string;
    };

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
export const isWriteMethod = (method: string) => !SAFE_METHODS.has(method.toUpperCase());

/** headers a reverse proxy adds: the request came from wherever the proxy's client is */
const PROXY_HEADERS = ['forwarded', 'via', 'x-real-ip', 'x-client-ip'];

/** the first proxy header present, or null */
export function proxyHeaderOf(headers: Record<string, unknown>): string | null {
  for (const name of Object.keys(headers)) {
    const n = name.toLowerCase();
    if (PROXY_HEADERS.includes(n) || n.startsWith('x-forwarded-')) return n;
  }
  return null;
}

const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);

/** canonical host name for comparison: lower case, no trailing dot, IPv6 in brackets, IPv4 in dotted form */
export function canonicalHostName(name: string): string | null {
  let n = name.trim();
  if (!n) return null;
  const bare = n.startsWith('[') && n.endsWith(']') ? n.slice(1, -1) : n;
  if (isIP(bare.replace(/%.*$/, '')) === 6) n = `[${bare.replace(/%.*$/, '')}]`;
  try {
    n = new URL(`http://${n}/`).hostname;
  } catch {
    return null;
  }
  if (n.endsWith('.') && n.length > 1) n = n.slice(0, -1);
  const v4 = /^\[::ffff:(\d+\.\d+\.\d+\.\d+)\]$/.exec(n);
  return v4 ? v4[1]! : n;
}

/** `host[:port]` as in a Host header or an origin's authority, its name canonical; the port defaults to the scheme's */
function parseAuthority(text: string, defaultPort: number): { name: string; port: number } | null {
  const h = parseHostHeader(text, defaultPort);
  const name = h ? canonicalHostName(h.ipv6 ? `[${h.host}]` : h.host) : null;
  return h && name ? { name, port: h.port } : null;
}

export function createRequestGuard(o: RequestGuardOptions) {
  const listen = adminListen(o.listen);
  const wildcard = listen.host === '0.0.0.0' || listen.host === '::';
  const listenName = wildcard ? null : canonicalHostName(listen.host);
  const extra = new Set((o.allowedHosts ?? []).map(canonicalHostName).filter((n): n is string => n !== null));

  /** the names this connection may use, and the port it must name (0: any, only before listening) */
  function expected(req: GuardedRequest): { names: Set<string>; port: number } {
    const local = req.localAddress ?? (wildcard ? '127.0.0.1' : undefined);
    const names = new Set<string>();
    if (listenName) names.add(listenName);
    const localName = local ? canonicalHostName(local) : null;
    if (localName) names.add(localName);
    const bare = (n: string) => n.replace(/^\[|\]$/g, '');
    if ([...names].some((n) => isLoopbackHost(bare(n)))) names.add('localhost');
    return { names, port: req.localPort ?? o.boundPort() ?? listen.port };
  }

  const accepts = (a: { name: string; port: number }, e: { names: Set<string>; port: number }) =>
    extra.has(a.name) || (e.names.has(a.name) && (e.port === 0 || a.port === e.port));

  const describe = (e: { names: Set<string>; port: number }) =>
    [...e.names]
      .map((n) => (e.port ? `${n}:${e.port}` : n))
      .concat([...extra])
      .join(', ');

  return {
    check(req: GuardedRequest): GuardVerdict {
      const e = expected(req);
      const hostHeader = one(req.headers['host']);
      const host = hostHeader === undefined ? null : parseAuthority(hostHeader, 80);
      if (!host || !accepts(host, e)) {
        const shown = hostHeader === undefined ? 'no Host header' : `Host ${JSON.stringify(hostHeader.slice(0, 100))}`;
        return {
          ok: false,
          code: ErrorCode.ADMIN_FORBIDDEN_HOST,
          kind: 'host',
          message:
            `${shown} does not name this server (${describe(e)}): a page reached through another name (DNS ` +
            'rebinding) is refused; add a name of your own to admin.allowedHosts',
        };
      }
      const originHeader = one(req.headers['origin']);
      if (originHeader !== undefined) {
        let origin: { name: string; port: number } | null = null;
        let https = false;
        if (originHeader !== 'null') {
          try {
            const u = new URL(originHeader);
            https = u.protocol === 'https:';
            if (
              (u.protocol === 'http:' || https) &&
              !u.username &&
              !u.password &&
              (u.pathname === '/' || u.pathname === '')
            )
              origin = parseAuthority(u.host, https ? 443 : 80);
          } catch {
            origin = null;
          }
        }
        // portd speaks plain HTTP: an https origin is ours only through a TLS proxy, named in allowedHosts
        const ok = origin !== null && (extra.has(origin.name) || (!https && accepts(origin, e)));
        if (!ok) {
          return {
            ok: false,
            code: ErrorCode.ADMIN_FORBIDDEN_ORIGIN,
            kind: 'origin',
            message:
              `Origin ${JSON.stringify(originHeader.slice(0, 100))} is not this server's own ` +
              `(http://${describe(e).split(', ')[0]}): requests from other pages are refused`,
          };
        }
      }
      const site = one(req.headers['sec-fetch-site'])?.toLowerCase();
      if (site === 'cross-site' || site === 'same-site') {
        const navigation =
          one(req.headers['sec-fetch-mode'])?.toLowerCase() === 'navigate' && !isWriteMethod(req.method);
        if (!navigation) {
          return {
            ok: false,
            code: ErrorCode.ADMIN_FORBIDDEN_ORIGIN,
            kind: 'fetch-site',
            message:
              `Sec-Fetch-Site: ${site}: requests made by other sites' pages are refused (open the dashboard at its ` +
              'own address)',
          };
        }
      }
      return { ok: true };
    },
  };
}
export type RequestGuard = ReturnType<typeof createRequestGuard>;
