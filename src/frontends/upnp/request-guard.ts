/**
 * What a UPnP request must look like before portd acts on it or lets it read anything: the checks
 * that keep a web page in a LAN browser out (issue 14).
 *
 * - A cross-site "simple request" (a form or `fetch` with `mode: 'no-cors'`) can POST text/plain
 *   or no content type at all, but cannot add a SOAPAction header, a text/xml content type or a
 *   method like SUBSCRIBE without a CORS preflight, which portd never answers. So control POSTs need
 *   both, and a browser always adds `Origin` to a cross-origin or non-GET request: no UPnP client
 *   sends one, so any `Origin` is refused.
 * - A DNS-rebinding page talks to portd under its own DNS name, same-origin, with any method and
 *   header; what it cannot change is `Host`, which carries that name. A client that follows the SSDP
 *   LOCATION (`http://<our address>:<port>/…`) sends exactly our address and port, so `Host` must be
 *   the IP literal of the address the connection arrived on, and our port.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { parseHostHeader } from '../../common/host-header.js';
import { unmapIPv4 } from '../../common/net.js';

export type GuardRefusal =
  | { readonly status: 403; readonly kind: 'foreign_host' | 'origin'; readonly why: string }
  | { readonly status: 400; readonly kind: 'no_soapaction'; readonly why: string }
  | { readonly status: 415; readonly kind: 'content_type'; readonly why: string };

/** an address → the canonical form `new URL` gives it (lower case, IPv6 compressed); null when not one */
function canonical(a: string): string | null {
  if (isIPv4(a)) return a;
  if (isIPv6(a)) {
    try {
      return new URL(`http://[${a}]/`).hostname.slice(1, -1);
    } catch {
      return null;
    }
  }
  return null;
}

/**
 * A Host header's IP literal and port (parsed by src/common/host-header.ts). Only what an HTTP client
 * writes for a URL whose host is an address: `192.168.1.1`, `192.168.1.1:5000`, `[fe80::1]:5000`.
 * Anything else is a name (a DNS name, `localhost`, `192.168.1.1.` with its trailing dot,
 * `0x7f000001`), never ours; `[::ffff:192.168.1.1]` is another address than `192.168.1.1` here, as it
 * is to a browser. A missing port means 80 (RFC 9110 §4.2.1).
 */
export function hostHeaderAddress(value: string): { address: string; port: number } | null {
  const h = parseHostHeader(value, 80);
  if (!h) return null;
  const address = h.ipv6 ? (isIPv6(h.host) ? canonical(h.host) : null) : isIPv4(h.host) ? h.host : null;
  return address === null ? null : { address, port: h.port };
}

/**
 * Host and Origin, for every request (descriptions, SCPDs, control, eventing). `local` is the
 * address and port of the socket that accepted the connection. An HTTP/1.0 request may lack Host
 * (Node refuses an HTTP/1.1 one without it); a browser always sends one, so that is let through.
 */
export function checkOrigin(
  headers: { host?: string | undefined; origin?: string | undefined },
  local: { address: string; port: number },
): GuardRefusal | null {
  if (headers.origin !== undefined)
    return {
      status: 403,
      kind: 'origin',
      why: `Origin ${JSON.stringify(headers.origin.slice(0, 100))}: requests from web pages are refused`,
    };
  if (headers.host === undefined) return null;
  const host = hostHeaderAddress(headers.host);
  // a dual-stack socket reports an IPv4 peer's local address as ::ffff:a.b.c.d; Host spells it a.b.c.d
  const ours = canonical(unmapIPv4(local.address));
  if (!host || ours === null || host.address !== ours || host.port !== local.port) {
    return {
      status: 403,
      kind: 'foreign_host',
      why:
        `Host ${JSON.stringify(headers.host.slice(0, 100))} is not ` +
        `${ours?.includes(':') ? `[${ours}]` : ours}:${local.port}`,
    };
  }
  return null;
}

/**
 * SOAP control: SOAPAction present and not empty (UDA 1.1 §3.2.1: REQUIRED), content type text/xml
 * or application/xml with any parameters (UDA 1.1 §3.2.1; 415 otherwise). Every client seen sends
 * both: miniupnpc `text/xml`, nat-upnp and GUPnP `text/xml; charset="utf-8"`, nat-port-mapper `text/xml`.
 */
export function checkSoapHeaders(headers: {
  soapaction?: string | string[] | undefined;
  'content-type'?: string | undefined;
}): GuardRefusal | null {
  const type = (headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'text/xml' && type !== 'application/xml') {
    return {
      status: 415,
      kind: 'content_type',
      why:
        `Content-Type ${JSON.stringify((headers['content-type'] ?? '(none)').slice(0, 100))}: a SOAP request is ` +
        'text/xml',
    };
  }
  const action = headers.soapaction;
  if (typeof action !== 'string' || action.replace(/"/g, '').trim() === '')
    return { status: 400, kind: 'no_soapaction', why: 'no SOAPAction header' };
  return null;
}
