import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PortMap } from '../../src/leases/port-map.js';
import { createPolicy } from '../../src/policy/policy.js';
import type { LeaseRequest } from '../../src/leases/types.js';
import { testPolicy } from '../helpers/leases.js';

const req = (over: Partial<LeaseRequest> = {}): LeaseRequest => ({
  source: 'pcp',
  identity: 'internal',
  protocol: 'tcp',
  owner: '192.168.77.11',
  internalAddress: '192.168.77.11',
  internalPort: 4000,
  externalPort: 0,
  allowOtherPort: true,
  lifetime: 3600,
  ...over,
});
const rule = (
  action: 'allow' | 'deny',
  ext: [number, number],
  address: string,
  prefix: number,
  int: [number, number] = [0, 65535],
) => ({
  action,
  extStart: ext[0],
  extEnd: ext[1],
  address,
  prefix,
  intStart: int[0],
  intEnd: int[1],
  text: `${action} ${ext.join('-')} ${address}/${prefix}`,
});

describe('port map', () => {
  it('records the holder of every port of a range and forgets it on release', () => {
    const m = new PortMap();
    m.take('tcp', 6000, 6009, 'static-1');
    assert.equal(m.holderIn('tcp', 6005, 6005), 'static-1');
    assert.equal(m.holderIn('tcp', 5990, 6000), 'static-1');
    assert.equal(m.holderIn('udp', 6005, 6005), undefined);
    assert.equal(m.holderIn('tcp', 6010, 6020), undefined);
    m.release('tcp', 6000, 6009);
    assert.equal(m.holderIn('tcp', 6000, 6009), undefined);
    assert.equal(m.isFree('tcp', 6000, 6009), true);
  });

  it('a full allowed block costs a handful of checks, not a walk over the whole port space', () => {
    const m = new PortMap();
    m.take('tcp', 40000, 40255, 'x');
    let calls = 0;
    assert.equal(
      m.findFreeIn('tcp', [[40000, 40255]], 40010, () => {
        calls++;
        return true;
      }),
      null,
    );
    assert.equal(calls, 0, 'no free port was offered to accept()');
    // the same search over the whole space, accepting nothing (what a confined client used to cost)
    calls = 0;
    assert.equal(
      m.findFree('tcp', 1024, 65535, 40010, () => {
        calls++;
        return false;
      }),
      null,
    );
    assert.ok(calls > 60000, `the old search asked about every free port (${calls})`);
  });

  it('searches from the hint onwards, then the following ranges, wrapping around', () => {
    const m = new PortMap();
    m.take('udp', 3000, 3002, 'x');
    const ranges: [number, number][] = [
      [1000, 1001],
      [3000, 3005],
      [5000, 5001],
    ];
    assert.equal(
      m.findFreeIn('udp', ranges, 3000, () => true),
      3003,
    );
    assert.equal(
      m.findFreeIn('udp', ranges, 4000, () => true),
      5000,
    );
    assert.equal(
      m.findFreeIn('udp', ranges, 6000, () => true),
      1000,
    );
    // within the hint's own range the search wraps first (3004, 3005 refused: 3003)
    assert.equal(
      m.findFreeIn('udp', ranges, 3004, (p) => p !== 3004 && p !== 3005),
      3003,
    );
    assert.equal(
      m.findFreeIn('udp', ranges, 3004, (p) => p > 3005),
      5000,
    );
    assert.equal(
      m.findFreeIn('udp', [], 1, () => true),
      null,
    );
  });
});

describe('policy: allowed ranges for allocation', () => {
  it('no rules: the whole range', () => {
    assert.deepEqual(createPolicy(testPolicy()).allowedRanges(req(), 1024, 65535), [[1024, 65535]]);
  });

  it("first match wins between the rules' edges; rules for other hosts or internal ports do not apply", () => {
    const p = createPolicy(
      testPolicy({
        rules: [
          rule('deny', [5000, 5000], '192.168.77.0', 24),
          rule('allow', [2000, 9000], '192.168.77.0', 24, [1024, 65535]),
          rule('allow', [20000, 20010], '192.168.77.99', 32),
          rule('deny', [0, 65535], '0.0.0.0', 0),
        ],
      }),
    );
    assert.deepEqual(p.allowedRanges(req(), 1024, 65535), [
      [2000, 4999],
      [5001, 9000],
    ]);
    // internal port 80: the allow rule (1024-65535 internal) does not match, so only the deny rules apply
    assert.deepEqual(p.allowedRanges(req({ internalPort: 80 }), 1024, 65535), []);
    assert.deepEqual(p.allowedRanges(req({ owner: '192.168.77.99', internalAddress: '192.168.77.99' }), 1024, 65535), [
      [2000, 4999],
      [5001, 9000],
      [20000, 20010],
    ]);
    // every port of the answer is allowed, every port outside it is not
    for (const [port, open] of [
      [1999, false],
      [2000, true],
      [5000, false],
      [9000, true],
      [9001, false],
    ] as const) {
      assert.equal(p.portAllowed(req(), port), open, `port ${port}`);
    }
  });

  it('admin sources are not bound by the rules', () => {
    const p = createPolicy(testPolicy({ rules: [rule('deny', [0, 65535], '0.0.0.0', 0)] }));
    assert.deepEqual(p.allowedRanges(req({ source: 'static' }), 1024, 2000), [[1024, 2000]]);
  });
});
