/**
 * The one parser of a Host header or an origin's authority (RFC 9110 §7.2, RFC 3986 §3.2.2), shared by
 * the UPnP front-end's and the admin API's request guards. It only splits; what counts as ours is each
 * guard's decision (UPnP: the IP literal of the socket's address; admin: its names, canonicalised).
 */
export interface HostHeader {
  /** as written, trimmed; an IPv6 literal without its brackets */
  readonly host: string;
  /** the host was a bracketed IPv6 literal */
  readonly ipv6: boolean;
  readonly port: number;
}

/**
 * `name`, `name:port`, `a.b.c.d:port`, `[v6]:port`; a missing port is `defaultPort` (80 for http,
 * RFC 9110 §4.2.1). null for anything else: userinfo, a path, spaces, an empty host, a port outside 1-65535.
 */
export function parseHostHeader(value: string, defaultPort: number): HostHeader | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s/?#@[\]:\\]+))(?::(\d{1,5}))?$/.exec(value.trim());
  if (!m) return null;
  const port = m[3] === undefined ? defaultPort : Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return m[1] !== undefined ? { host: m[1], ipv6: true, port } : { host: m[2]!, ipv6: false, port };
}
