/**
 * UPnP IGD client to the upstream NAT (an ISP router): SSDP M-SEARCH on the WAN interface, the device
 * description, then SOAP AddPortMapping / DeletePortMapping / GetExternalIPAddress on its WANIPConnection
 * (or WANPPPConnection) service. Everything the upstream sends is hostile input: SSDP answers over 4 KiB,
 * descriptions over 64 KiB and SOAP answers over 16 KiB are dropped, every request has a deadline, XML goes
 * through protocols/upnp's strict reader with markup declarations refused first, and the description and
 * control URLs must point at the address that answered the search (no redirection elsewhere).
 */
import dgram from 'node:dgram';
import http from 'node:http';
import { isIPv4 } from 'node:net';
import type { Logger } from '../logger.js';
import { SSDP_MULTICAST_ADDRESS, SSDP_PORT, decodeHttpu } from '../../protocols/ssdp/index.js';
import { UpnpErrorCode, assertNoDeclarations, escapeXml } from '../../protocols/upnp/index.js';
import { readXml, type XmlElement } from '../../protocols/upnp/xml-reader.js';
import type { UpstreamRefusal } from '../leases/upstream.js';
import type { MapResult, ProbeResult, UpstreamClient } from './types.js';

const MAX_DESCRIPTION = 64 * 1024;
const MAX_SOAP = 16 * 1024;
const SEARCH_TARGET = 'urn:schemas-upnp-org:device:InternetGatewayDevice:1';
const CONNECTION_SERVICES = [
  'urn:schemas-upnp-org:service:WANIPConnection:2',
  'urn:schemas-upnp-org:service:WANIPConnection:1',
  'urn:schemas-upnp-org:service:WANPPPConnection:1',
];

/** UPnP error code → neutral refusal (docs/double-nat.md) */
export function refusalForUpnp(code: number): UpstreamRefusal {
  switch (code) {
    case UpnpErrorCode.CONFLICT_IN_MAPPING_ENTRY:
    case UpnpErrorCode.CONFLICT_WITH_OTHER_MECHANISMS:
      return 'cannot_provide_external';
    case UpnpErrorCode.NO_PORT_MAPS_AVAILABLE:
      return 'no_resources';
    case UpnpErrorCode.ACTION_FAILED:
      return 'unavailable';
    default:
      return 'not_authorized';
  }
}

const local = (name: string) => name.slice(name.indexOf(':') + 1);
function child(e: XmlElement, name: string): XmlElement | undefined {
  return e.children.find((c) => local(c.name) === name);
}
function* walk(e: XmlElement): Generator<XmlElement> {
  yield e;
  for (const c of e.children) yield* walk(c);
}

/** GET or POST with a deadline and a size cap; resolves null on any failure */
function httpRequest(
  url: URL,
  opts: {
    method: 'GET' | 'POST';
    body?: string;
    headers?: Record<string, string>;
    max: number;
    timeoutMs: number;
    localAddress: string | null;
  },
): Promise<{ status: number; body: string } | null> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v: { status: number; body: string } | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(v);
    };
    const req = http.request(
      {
        host: url.hostname,
        port: url.port || 80,
        path: `${url.pathname}${url.search}`,
        method: opts.method,
        headers: { ...(opts.headers ?? {}), ...(opts.body ? { 'Content-Length': Buffer.byteLength(opts.body) } : {}) },
        ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (d: Buffer) => {
          n += d.length;
          if (n > opts.max) {
            req.destroy();
            finish(null);
            return;
          }
          chunks.push(d);
        });
        res.on('end', () => finish({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', () => finish(null));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish(null);
    }, opts.timeoutMs);
    req.on('error', () => finish(null));
    req.end(opts.body);
  });
}

function parseXml(body: string): XmlElement | null {
  try {
    assertNoDeclarations(body);
    return readXml(body, 32);
  } catch {
    return null;
  }
}

/** M-SEARCH on the WAN (multicast, and unicast to `server` when known); the first IGD location that answers */
async function search(o: {
  localAddress: string;
  server: string | null;
  timeoutMs: number;
  ssdpPort: number;
}): Promise<{ location: URL; from: string } | null> {
  const sock = dgram.createSocket({ type: 'udp4', reuseAddr: false });
  try {
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(0, o.localAddress, () => resolve());
    });
    sock.on('error', () => {});
    try {
      sock.setMulticastInterface(o.localAddress);
      sock.setMulticastTTL(2);
    } catch {
      /* unicast still works */
    }
    const msg = Buffer.from(
      `M-SEARCH * HTTP/1.1\r\nHOST: ${SSDP_MULTICAST_ADDRESS}:${SSDP_PORT}\r\n` +
        `MAN: "ssdp:discover"\r\nMX: 1\r\nST: ${SEARCH_TARGET}\r\n\r\n`,
    );
    return await new Promise((resolve) => {
      const timers: NodeJS.Timeout[] = [];
      const end = (v: { location: URL; from: string } | null) => {
        for (const t of timers) clearTimeout(t);
        resolve(v);
      };
      sock.on('message', (b, rinfo) => {
        if (o.server && rinfo.address !== o.server) return;
        let headers: Map<string, string>;
        try {
          ({ headers } = decodeHttpu(new Uint8Array(b.buffer, b.byteOffset, b.length)));
        } catch {
          return;
        }
        const loc = headers.get('location');
        if (!loc) return;
        let url: URL;
        try {
          url = new URL(loc);
        } catch {
          return;
        }
        // the description must come from the device that answered
        if (url.protocol !== 'http:' || url.hostname !== rinfo.address) return;
        end({ location: url, from: rinfo.address });
      });
      const send = () => {
        sock.send(msg, o.ssdpPort, SSDP_MULTICAST_ADDRESS, () => {});
        if (o.server) sock.send(msg, o.ssdpPort, o.server, () => {});
      };
      send();
      timers.push(setTimeout(send, Math.min(300, o.timeoutMs / 3)));
      timers.push(setTimeout(() => end(null), o.timeoutMs));
    });
  } catch {
    return null;
  } finally {
    sock.close();
  }
}

/** the connection service's control URL and type from a device description */
export function findControl(xml: string, base: URL): { control: URL; serviceType: string } | null {
  const root = parseXml(xml);
  if (!root) return null;
  const urlBase = child(root, 'URLBase')?.text.trim();
  for (const want of CONNECTION_SERVICES) {
    for (const e of walk(root)) {
      if (local(e.name) !== 'service') continue;
      if (child(e, 'serviceType')?.text.trim() !== want) continue;
      const c = child(e, 'controlURL')?.text.trim();
      if (!c) continue;
      let control: URL;
      try {
        control = new URL(c, urlBase || base);
      } catch {
        continue;
      }
      if (control.protocol !== 'http:' || control.hostname !== base.hostname) continue;
      return { control, serviceType: want };
    }
  }
  return null;
}

function envelope(serviceType: string, action: string, args: Record<string, string | number>): string {
  const inner = Object.entries(args)
    .map(([k, v]) => `<${k}>${escapeXml(String(v))}</${k}>`)
    .join('');
  return (
    '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>' +
    `<u:${action} xmlns:u="${serviceType}">${inner}</u:${action}></s:Body></s:Envelope>`
  );
}

export async function createUpnpClient(opts: {
  readonly interface: string;
  readonly localAddress: string;
  /** only this device's answers count */
  readonly server: string | null;
  readonly timeoutMs: number;
  readonly log: Logger;
  readonly ssdpPort?: number;
}): Promise<UpstreamClient | null> {
  const found = await search({
    localAddress: opts.localAddress,
    server: opts.server,
    timeoutMs: opts.timeoutMs,
    ssdpPort: opts.ssdpPort ?? SSDP_PORT,
  });
  if (!found) return null;
  const desc = await httpRequest(found.location, {
    method: 'GET',
    max: MAX_DESCRIPTION,
    timeoutMs: opts.timeoutMs,
    localAddress: opts.localAddress,
  });
  if (desc?.status !== 200) return null;
  const svc = findControl(desc.body, found.location);
  if (!svc) {
    opts.log.warn(
      { location: found.location.href },
      'upstream: IGD description without a usable WAN connection service',
    );
    return null;
  }
  const server = `${svc.control.hostname}:${svc.control.port || 80}`;

  /** one action; a fault's UPnP errorCode, or the response's arguments */
  async function soap(
    action: string,
    args: Record<string, string | number>,
    timeoutMs: number,
  ): Promise<{ ok: true; out: Map<string, string> } | { ok: false; code: number | null; detail: string }> {
    const r = await httpRequest(svc!.control, {
      method: 'POST',
      body: envelope(svc!.serviceType, action, args),
      headers: { 'Content-Type': 'text/xml; charset="utf-8"', SOAPAction: `"${svc!.serviceType}#${action}"` },
      max: MAX_SOAP,
      timeoutMs,
      localAddress: opts.localAddress,
    });
    if (!r) return { ok: false, code: null, detail: `no SOAP answer to ${action} from ${server} in ${timeoutMs} ms` };
    const root = parseXml(r.body);
    const body = root && child(root, 'Body');
    if (!body) return { ok: false, code: null, detail: `unreadable SOAP answer to ${action} (HTTP ${r.status})` };
    const fault = child(body, 'Fault');
    if (fault || r.status !== 200) {
      let code: number | null = null;
      let desc = '';
      for (const e of fault ? walk(fault) : []) {
        if (local(e.name) === 'errorCode') code = Number.parseInt(e.text.trim(), 10) || null;
        if (local(e.name) === 'errorDescription') desc = e.text.trim().slice(0, 200);
      }
      return { ok: false, code, detail: `UPnP ${code ?? `HTTP ${r.status}`} ${desc} from ${server}`.trim() };
    }
    const resp = body.children[0];
    const out = new Map<string, string>();
    for (const c of resp?.children ?? []) out.set(local(c.name), c.text.trim().slice(0, 256));
    return { ok: true, out };
  }

  let externalAddress: string | null = null;
  async function probe(timeoutMs: number): Promise<ProbeResult> {
    const r = await soap('GetExternalIPAddress', {}, timeoutMs);
    if (!r.ok) return { ok: false, detail: r.detail };
    const a = r.out.get('NewExternalIPAddress') ?? '';
    externalAddress = isIPv4(a) && a !== '0.0.0.0' ? a : null;
    return { ok: true, epoch: null, externalAddress };
  }
  const first = await probe(opts.timeoutMs);
  if (!first.ok) return null;

  const fail = (r: { code: number | null; detail: string }): MapResult => ({
    ok: false,
    reason: r.code === null ? 'unavailable' : refusalForUpnp(r.code),
    detail: r.detail,
  });
  return {
    protocol: 'upnp',
    server,
    async map(req, timeoutMs): Promise<MapResult> {
      // the upstream's own external port is the one asked (AddPortMapping has no "another port" answer)
      const r = await soap(
        'AddPortMapping',
        {
          NewRemoteHost: '',
          NewExternalPort: req.suggestedPort,
          NewProtocol: req.protocol.toUpperCase(),
          NewInternalPort: req.internalPort,
          NewInternalClient: opts.localAddress,
          NewEnabled: 1,
          NewPortMappingDescription: req.description.slice(0, 64),
          NewLeaseDuration: req.lifetime,
        },
        timeoutMs,
      );
      if (!r.ok) return fail(r);
      return { ok: true, externalAddress, externalPort: req.suggestedPort, lifetime: req.lifetime, epoch: null };
    },
    async unmap(req, timeoutMs): Promise<MapResult> {
      const r = await soap(
        'DeletePortMapping',
        { NewRemoteHost: '', NewExternalPort: req.externalPort, NewProtocol: req.protocol.toUpperCase() },
        timeoutMs,
      );
      if (!r.ok && r.code !== UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY) return fail(r);
      return { ok: true, externalAddress, externalPort: req.externalPort, lifetime: 0, epoch: null };
    },
    probe,
    async holds(protocol, externalPort, timeoutMs) {
      const r = await soap(
        'GetSpecificPortMappingEntry',
        { NewRemoteHost: '', NewExternalPort: externalPort, NewProtocol: protocol.toUpperCase() },
        timeoutMs,
      );
      if (r.ok) return true;
      return r.code === UpnpErrorCode.NO_SUCH_ENTRY_IN_ARRAY ? false : null;
    },
    onAnnounce() {
      /* UPnP has no epoch: a restart is seen by the manager's probe (unreachable, then reachable again) */
    },
    close: async () => {},
  };
}
