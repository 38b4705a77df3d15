/**
 * The port-in-use check asks the kernel over netlink sock_diag (src/dataplane/sock-diag.ts) instead of reading
 * /proc/net: real sockets of this process on loopback, and the same answer as the /proc tables give.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { once } from 'node:events';
import { createLocalPorts, parseProcNet } from '../../src/dataplane/local-ports.js';
import { openSockDiag } from '../../src/dataplane/sock-diag.js';

describe('local ports over sock_diag', () => {
  let tcp: Server, tcp6: Server, udp: Socket, udpConnected: Socket, client: TcpSocket;
  let tcpPort = 0,
    tcp6Port = 0,
    udpPort = 0,
    udpConnectedPort = 0,
    clientPort = 0;
  before(async () => {
    tcp = createServer((s) => s.destroy()).listen(0, '127.0.0.1');
    await once(tcp, 'listening');
    tcpPort = (tcp.address() as { port: number }).port;
    tcp6 = createServer((s) => s.destroy()).listen(0, '::');
    await once(tcp6, 'listening');
    tcp6Port = (tcp6.address() as { port: number }).port;
    udp = createSocket('udp4');
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    udpPort = udp.address().port;
    udpConnected = createSocket('udp4');
    udpConnected.bind(0, '127.0.0.1');
    await once(udpConnected, 'listening');
    udpConnected.connect(9, '127.0.0.1');
    await once(udpConnected, 'connect');
    udpConnectedPort = udpConnected.address().port;
    client = createConnection(tcpPort, '127.0.0.1');
    await once(client, 'connect');
    clientPort = client.localPort!;
  });
  after(() => {
    client?.destroy();
    tcp?.close();
    tcp6?.close();
    udp?.close();
    udpConnected?.close();
  });

  it('sees listening TCP (IPv4 and ::) and unconnected UDP, not connections or connected UDP, without /proc', () => {
    // procNet points nowhere: an answer can only come from sock_diag
    const ports = createLocalPorts({ externalAddresses: () => ['127.0.0.1'], procNet: '/nonexistent', sockDiag: true });
    assert.equal(ports.inUse('tcp', tcpPort), true, 'TCP listener on the external address');
    assert.equal(ports.inUse('tcp', tcp6Port), true, 'TCP listener on ::');
    assert.equal(ports.inUse('udp', udpPort), true, 'unconnected UDP');
    assert.equal(ports.inUse('udp', udpConnectedPort), false, 'connected UDP owns no inbound port');
    assert.equal(ports.inUse('tcp', clientPort), false, "a connection's local port is not a listener");
    // the files, as before: the same answers
    const files = createLocalPorts({ externalAddresses: () => ['127.0.0.1'], sockDiag: false });
    for (const [p, port] of [
      ['tcp', tcpPort],
      ['tcp', tcp6Port],
      ['udp', udpPort],
      ['udp', udpConnectedPort],
      ['tcp', clientPort],
    ] as const)
      assert.equal(files.inUse(p, port), ports.inUse(p, port), `${p}/${port}`);
  });

  it('lists the same sockets as /proc/net/{tcp,udp}{,6} (ours: other processes open and close theirs meanwhile)', () => {
    const mine = new Set([tcpPort, tcp6Port, udpPort, udpConnectedPort, clientPort]);
    const keys = (xs: { port: number; ipv4: number | null }[]) =>
      [...new Set(xs.filter((s) => mine.has(s.port)).map((s) => `${s.port}/${s.ipv4}`))].sort();
    const d = openSockDiag();
    assert.equal(typeof d, 'object', String(d));
    if (typeof d === 'string') return;
    try {
      for (const p of ['tcp', 'udp'] as const) {
        const proc = [
          ...parseProcNet(readFileSync(`/proc/net/${p}`, 'latin1'), p),
          ...parseProcNet(readFileSync(`/proc/net/${p}6`, 'latin1'), p),
        ];
        assert.deepEqual(keys(d.list(p)), keys(proc), p);
        assert.ok(keys(proc).length > 0, `${p}: our sockets are in both lists`);
      }
    } finally {
      d.close();
    }
  });
});
