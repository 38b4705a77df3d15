/**
 * Shared by the PCP/NAT-PMP loopback tests: a real lease table (SQLite in a temp dir, memory
 * dataplane, fixed clock) behind a real PCP server on 127.0.0.1, and a UDP client.
 */
import { createSocket, type Socket } from 'node:dgram';
import pino from 'pino';
import { makeTable as makeSharedTable, testPolicy } from '../helpers/leases.js';
import type { Config, PolicyConfig } from '../../src/config/types.js';
import { createPcpServer, type PcpServerOptions } from '../../src/frontends/pcp/index.js';
import type { ConntrackApi, PcpFrontendConfig } from '../../src/frontends/pcp/index.js';
import { encodePcpRequest, nonceFromHex, type PcpOption, type PcpRequest } from '../../protocols/pcp/index.js';

export { testPolicy };

/** a real lease table: SQLite in a temp dir, memory dataplane, fixed clock (the shared test helper) */
export function makeTable(policy: PolicyConfig) {
  return makeSharedTable({ policy });
}

export const EXTERNAL = '203.0.113.1';

/** global limits off unless a test asks for them (like pcp.rateLimit) */
export function pcpConfig(
  over: Partial<Config['pcp']> = {},
  natpmp = true,
  policy: Partial<PolicyConfig> = {},
  limits: Partial<PcpFrontendConfig['limits']> = {},
): PcpFrontendConfig {
  return {
    pcp: {
      enabled: true,
      port: 0,
      peer: true,
      thirdParty: [],
      allowAllProtocols: false,
      rateLimit: 0,
      ipv6: false,
      ...over,
    },
    natpmp: { enabled: natpmp },
    policy: testPolicy(policy),
    limits: { pcpRequestsPerSecond: 0, peerLookupsPerSecond: 0, ...limits },
  };
}

export interface Harness {
  readonly env: ReturnType<typeof makeTable>;
  readonly server: ReturnType<typeof createPcpServer>;
  readonly port: number;
  /** a socket that receives the unsolicited announcements (when announce is on) */
  readonly announcements: Buffer[];
  close(): Promise<void>;
}

export async function startPcp(
  opts: {
    pcp?: Partial<Config['pcp']>;
    natpmp?: boolean;
    policy?: Partial<PolicyConfig>;
    limits?: Partial<PcpFrontendConfig['limits']>;
    conntrack?: ConntrackApi | null;
    port?: number;
    announce?: boolean;
    extra?: Partial<PcpServerOptions>;
  } = {},
): Promise<Harness> {
  const config = pcpConfig(
    { ...opts.pcp, port: opts.port ?? 0 },
    opts.natpmp ?? true,
    opts.policy ?? {},
    opts.limits ?? {},
  );
  const env = makeTable(config.policy);
  const announcements: Buffer[] = [];
  let listener: Socket | null = null;
  let announce: PcpServerOptions['announce'] = null;
  if (opts.announce) {
    listener = createSocket('udp4');
    listener.on('message', (m) => announcements.push(m));
    await new Promise<void>((r) => listener!.bind(0, '127.0.0.1', r));
    announce = { address: '127.0.0.1', port: listener.address().port };
  }
  const server = createPcpServer({
    config,
    leases: env.table,
    log: pino({ level: process.env.TEST_LOG ?? 'silent' }),
    metrics: env.metrics,
    clock: env.clock,
    listen: ['127.0.0.1'],
    conntrack: opts.conntrack ?? null,
    announce,
    announceRepeats: 3,
    ...opts.extra,
  });
  await server.start();
  const port = server.addresses()[0]!.port;
  return {
    env,
    server,
    port,
    announcements,
    async close() {
      await server.close();
      listener?.close();
      await env.dispose();
    },
  };
}

/** one UDP client socket (bound to `from`, default 127.0.0.1) */
export async function udpClient(from = '127.0.0.1') {
  const socket = createSocket('udp4');
  const inbox: Buffer[] = [];
  let waiter: (() => void) | null = null;
  socket.on('message', (m) => {
    inbox.push(m);
    waiter?.();
  });
  await new Promise<void>((r) => socket.bind(0, from, r));
  return {
    socket,
    address: from,
    port: () => socket.address().port,
    send(bytes: Uint8Array, port: number, to = '127.0.0.1') {
      socket.send(bytes, port, to);
    },
    /** next datagram, or null after `ms` */
    async next(ms = 2000): Promise<Buffer | null> {
      const deadline = Date.now() + ms;
      while (inbox.length === 0) {
        const left = deadline - Date.now();
        if (left <= 0) return null;
        await new Promise<void>((r) => {
          const t = setTimeout(r, left);
          waiter = () => {
            clearTimeout(t);
            r();
          };
        });
        waiter = null;
      }
      return inbox.shift() ?? null;
    },
    async ask(bytes: Uint8Array, port: number, ms = 2000): Promise<Buffer> {
      inbox.length = 0;
      socket.send(bytes, port, '127.0.0.1');
      const r = await this.next(ms);
      if (!r) throw new Error('no answer');
      return r;
    },
    close() {
      socket.close();
    },
  };
}
export type UdpClient = Awaited<ReturnType<typeof udpClient>>;

export const NONCE_A = '0102030405060708090a0b0c';
export const NONCE_B = 'ffeeddccbbaa998877665544';

export function mapRequest(
  o: {
    nonce?: string;
    protocol?: number;
    internalPort?: number;
    externalPort?: number;
    externalAddress?: string;
    lifetime?: number;
    client?: string;
    options?: PcpOption[];
  } = {},
): Uint8Array {
  const req: PcpRequest = {
    version: 2,
    opcode: 1,
    lifetime: o.lifetime ?? 3600,
    clientAddress: o.client ?? '127.0.0.1',
    options: o.options ?? [],
    map: {
      nonce: nonceFromHex(o.nonce ?? NONCE_A),
      protocol: o.protocol ?? 6,
      internalPort: o.internalPort ?? 5000,
      externalPort: o.externalPort ?? 0,
      externalAddress: o.externalAddress ?? '0.0.0.0',
    },
  };
  return encodePcpRequest(req);
}
