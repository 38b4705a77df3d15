import { Nts, SSDP_MULTICAST_ADDRESS, SSDP_PORT } from './constants.js';

/** Fields shared by search responses and NOTIFYs (UDA 1.1 §1.2.2, §1.3.3). */
interface Common {
  readonly usn: string;
  /** BOOTID.UPNP.ORG: increases each time the device (re)joins the network */
  readonly bootId: number;
  /** CONFIGID.UPNP.ORG: changes when a description changes */
  readonly configId: number;
}

export interface SearchResponse extends Common {
  readonly st: string;
  readonly location: string;
  /** CACHE-CONTROL max-age in seconds (UDA 1.1: at least 1800) */
  readonly maxAge: number;
  /** the DATE header value: an RFC 1123 date the caller formats from its clock */
  readonly date: string;
  /** SERVER: "OS/version UPnP/1.1 product/version" */
  readonly server: string;
}

export interface NotifyAlive extends Common {
  readonly nts: typeof Nts.ALIVE;
  readonly nt: string;
  readonly location: string;
  readonly maxAge: number;
  readonly server: string;
  readonly host?: string;
}

export interface NotifyByebye extends Common {
  readonly nts: typeof Nts.BYEBYE;
  readonly nt: string;
  readonly host?: string;
}

const encoder = new TextEncoder();

function lines(start: string, headers: readonly (readonly [string, string | number])[]): Uint8Array {
  let s = start + '\r\n';
  for (const [k, v] of headers) {
    const value = String(v);
    // never let a value (config text, an ST echoed back) inject a header line
    if (/[\r\n]/.test(value)) throw new TypeError(`SSDP header ${k} contains a line break`);
    s += `${k}: ${value}\r\n`;
  }
  return encoder.encode(s + '\r\n');
}

/** The unicast answer to an M-SEARCH. UDA 1.1 §1.3.3 */
export function encodeSearchResponse(r: SearchResponse): Uint8Array {
  return lines('HTTP/1.1 200 OK', [
    ['CACHE-CONTROL', `max-age=${r.maxAge}`],
    ['DATE', r.date],
    ['EXT', ''],
    ['LOCATION', r.location],
    ['SERVER', r.server],
    ['ST', r.st],
    ['USN', r.usn],
    ['BOOTID.UPNP.ORG', r.bootId],
    ['CONFIGID.UPNP.ORG', r.configId],
  ]);
}

/** NOTIFY ssdp:alive (UDA 1.1 §1.2.2) or ssdp:byebye (§1.2.3). */
export function encodeNotify(n: NotifyAlive | NotifyByebye): Uint8Array {
  const host = n.host ?? `${SSDP_MULTICAST_ADDRESS}:${SSDP_PORT}`;
  if (n.nts === Nts.ALIVE) {
    return lines('NOTIFY * HTTP/1.1', [
      ['HOST', host],
      ['CACHE-CONTROL', `max-age=${n.maxAge}`],
      ['LOCATION', n.location],
      ['NT', n.nt],
      ['NTS', n.nts],
      ['SERVER', n.server],
      ['USN', n.usn],
      ['BOOTID.UPNP.ORG', n.bootId],
      ['CONFIGID.UPNP.ORG', n.configId],
    ]);
  }
  return lines('NOTIFY * HTTP/1.1', [
    ['HOST', host],
    ['NT', n.nt],
    ['NTS', n.nts],
    ['USN', n.usn],
    ['BOOTID.UPNP.ORG', n.bootId],
    ['CONFIGID.UPNP.ORG', n.configId],
  ]);
}

/** RFC 1123 date for the DATE header, from epoch ms */
export function httpDate(epochMs: number): string {
  return new Date(epochMs).toUTCString();
}
