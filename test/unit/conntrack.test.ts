/**
 * conntrack.ts: ending the flows of ended leases lists the flows once and deletes only the ports that
 * have one (each `conntrack -D` walks the whole conntrack table, whether or not anything matches).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { flowDeleteArgs, flowDeleteArgsFor, parseFlows } from '../../src/dataplane/conntrack.js';
import type { DataplaneEntry } from '../../src/dataplane/types.js';

// `conntrack -L -f ipv4 --orig-dst 203.0.113.1` in the lab (conntrack v1.4.7), two flows
const LISTING = [
  'tcp      6 99 ESTABLISHED src=203.0.113.10 dst=203.0.113.1 sport=40000 dport=10001 src=192.168.77.11 ' +
    'dst=203.0.113.10 sport=10001 dport=40000 [ASSURED] mark=256 use=1',
  'udp      17 29 src=203.0.113.11 dst=203.0.113.1 sport=40001 dport=10002 [UNREPLIED] src=192.168.77.12 ' +
    'dst=203.0.113.11 sport=10002 dport=40001 mark=256 use=1',
  '',
].join('\n');

const entry = (
  id: string,
  protocol: 'tcp' | 'udp',
  port: number,
  extra: Partial<DataplaneEntry> = {},
): DataplaneEntry => ({
  id,
  protocol,
  externalAddress: '203.0.113.1',
  externalPort: port,
  externalPortEnd: port,
  internalAddress: '192.168.77.11',
  internalPort: port,
  remoteAddress: null,
  timeoutSeconds: 60,
  ...extra,
});

describe('conntrack: deleting only the flows that exist', () => {
  it('reads protocol, original source, destination and port from each line', () => {
    assert.deepEqual(parseFlows(LISTING), [
      { protocol: 'tcp', src: '203.0.113.10', dst: '203.0.113.1', dport: 10001 },
      { protocol: 'udp', src: '203.0.113.11', dst: '203.0.113.1', dport: 10002 },
    ]);
    assert.deepEqual(parseFlows('conntrack v1.4.7 (conntrack-tools): 0 flow entries have been shown.\n'), []);
  });

  it('ended leases without a flow cost no delete; a lease with one gets exactly its port', () => {
    const ended = [
      entry('a', 'tcp', 10001),
      entry('b', 'tcp', 10002),
      entry('c', 'udp', 10001),
      entry('d', 'udp', 10002),
    ];
    assert.equal(flowDeleteArgs(ended).length, 4, 'without a listing: one delete per port');
    assert.deepEqual(flowDeleteArgsFor(ended, parseFlows(LISTING)), [
      ['-D', '-f', 'ipv4', '-p', 'tcp', '--orig-dst', '203.0.113.1', '--orig-port-dst', '10001'],
      ['-D', '-f', 'ipv4', '-p', 'udp', '--orig-dst', '203.0.113.1', '--orig-port-dst', '10002'],
    ]);
    assert.deepEqual(flowDeleteArgsFor(ended, []), []);
  });

  it("ranges find their flows on any port, wide ones too; a peer-filtered lease only its peer's", () => {
    const flows = parseFlows(LISTING);
    assert.deepEqual(
      flowDeleteArgsFor([entry('r', 'tcp', 9000, { externalPortEnd: 20000 })], flows).map((a) => a[8]),
      ['10001'],
    );
    assert.deepEqual(
      flowDeleteArgsFor([entry('p', 'tcp', 10001, { remoteAddress: '198.51.100.7' })], flows),
      [],
      "another peer's flow stays",
    );
    assert.deepEqual(flowDeleteArgsFor([entry('q', 'tcp', 10001, { remoteAddress: '203.0.113.10' })], flows), [
      [
        '-D',
        '-f',
        'ipv4',
        '-p',
        'tcp',
        '--orig-dst',
        '203.0.113.1',
        '--orig-port-dst',
        '10001',
        '--orig-src',
        '203.0.113.10',
      ],
    ]);
    assert.deepEqual(
      flowDeleteArgsFor([entry('x', 'tcp', 10001, { externalAddress: '203.0.113.2' })], flows),
      [],
      'another external address',
    );
  });
});
