/**
 * Shared by the UPnP loopback tests: the real lease table (SQLite in a temp dir, memory dataplane,
 * fixed clock) behind a real UPnP server on 127.0.0.1, and helpers to run real clients.
 */
import { execFile } from 'node:child_process';
import pino from 'pino';
import type { Config, PolicyConfig } from '../../src/config/types.js';
import { validateConfig } from '../../src/config/index.js';
import {
  createUpnpServer,
  generateUuids,
  type UpnpServer,
  type UpnpServerOptions,
} from '../../src/frontends/upnp/index.js';
import { makeTable, testPolicy } from '../helpers/leases.js';

export const EXTERNAL = '203.0.113.1';

/** the real lease table on a temp-file database, memory dataplane, fixed clock (the shared test helper) */
export function makeUpnpTable(policy: PolicyConfig) {
  return makeTable({ policy });
}

export function upnpConfig(over: Partial<Config['upnp']> = {}, policy: Partial<PolicyConfig> = {}): Config {
  const base = validateConfig({ upnp: { httpPort: 0, ssdp: false, friendlyName: 'portd test', ...over } }, 'test');
  return { ...base, policy: testPolicy(policy) };
}

export interface UpnpHarness {
  readonly env: ReturnType<typeof makeUpnpTable>;
  readonly server: UpnpServer;
  readonly config: Config;
  /** http://127.0.0.1:port */
  readonly base: string;
  readonly descV1: string;
  readonly descV2: string;
  close(): Promise<void>;
}

export async function startUpnp(
  opts: {
    upnp?: Partial<Config['upnp']>;
    policy?: Partial<PolicyConfig>;
    extra?: Partial<UpnpServerOptions>;
    isLanClient?: (a: string) => boolean;
  } = {},
): Promise<UpnpHarness> {
  const config = upnpConfig(opts.upnp, opts.policy);
  const env = makeUpnpTable(config.policy);
  const server = createUpnpServer({
    config,
    leases: env.table,
    log: pino({ level: process.env.TEST_LOG ?? 'silent' }),
    metrics: env.metrics,
    clock: env.clock,
    uuids: generateUuids(),
    listen: { addresses: ['127.0.0.1/8'], httpPort: 0 },
    isLanClient: opts.isLanClient ?? ((a) => a.startsWith('127.')),
    presentationUrl: null,
    wanStats: () => ({ bytesSent: 2 ** 32 + 5, bytesReceived: 1234, packetsSent: 10, packetsReceived: 20 }),
    gena: { coalesceMs: 5, notifyTimeoutMs: 1000 },
    ...opts.extra,
  });
  await server.listen();
  const d = server.descriptionUrls()[0]!;
  const base = d.v1.replace(/\/igd1\/desc\.xml$/, '');
  return {
    env,
    server,
    config,
    base,
    descV1: d.v1,
    descV2: d.v2,
    async close() {
      await server.close();
      await env.dispose();
    },
  };
}

/** runs a command with a time bound; resolves with its output and exit code, never rejects */
/** ends every active lease of the harness (between tests), not sticky */
export async function revokeAll(h: UpnpHarness): Promise<void> {
  for (const l of h.env.table.list({ state: 'active' }).leases)
    await h.env.table.revoke(l.id, 'test', 'reset between tests', { sticky: false });
}

/** AddPortMapping's arguments as the control tests send them: TCP 20000 → 127.0.0.1:2000 for an hour */
export const addMappingArgs = (over: Record<string, string | number> = {}) => ({
  NewRemoteHost: '',
  NewExternalPort: 20000,
  NewProtocol: 'TCP',
  NewInternalPort: 2000,
  NewInternalClient: '127.0.0.1',
  NewEnabled: 1,
  NewPortMappingDescription: 'test',
  NewLeaseDuration: 3600,
  ...over,
});

export function run(
  cmd: string,
  args: readonly string[],
  timeoutMs = 15000,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err
        ? typeof (err as { code?: unknown }).code === 'number'
          ? (err as { code: number }).code
          : -1
        : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** POSTs one SOAP action; returns status and body */
export async function soap(
  url: string,
  serviceUrn: string,
  action: string,
  args: Record<string, string | number> = {},
  headers: Record<string, string> = {},
) {
  const body =
    '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${serviceUrn}">` +
    Object.entries(args)
      .map(([k, v]) => `<${k}>${v}</${k}>`)
      .join('') +
    `</u:${action}></s:Body></s:Envelope>`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'text/xml; charset="utf-8"', soapaction: `"${serviceUrn}#${action}"`, ...headers },
    body,
  });
  return { status: res.status, body: await res.text() };
}

export function errorCodeOf(body: string): number | null {
  const m = /<errorCode>(\d+)<\/errorCode>/.exec(body);
  return m ? Number(m[1]) : null;
}

export function field(body: string, name: string): string | null {
  const m = new RegExp(`<${name}>([^<]*)</${name}>`).exec(body);
  return m ? m[1]! : null;
}

export const IPC1 = 'urn:schemas-upnp-org:service:WANIPConnection:1';
export const IPC2 = 'urn:schemas-upnp-org:service:WANIPConnection:2';
