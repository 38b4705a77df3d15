/**
 * The UPnP front-end's upstream hook (src/frontends/upnp/actions.ts) with a scripted upstream: the port a
 * client hears, and each upstream refusal as its UPnP error (docs/double-nat.md, the refusal table).
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, test } from 'node:test';
import type { UpstreamChain, UpstreamOutcome } from '../../src/leases/upstream.js';
import {
  IPC1,
  IPC2,
  errorCodeOf,
  field,
  soap,
  startUpnp,
  type UpnpHarness,
  revokeAll,
  addMappingArgs,
} from './upnp-helpers.js';

let h: UpnpHarness;
let next: (port: number) => UpstreamOutcome = () => ({ kind: 'local' });
const upstream: UpstreamChain = {
  chain: async (l) => next(l.externalPort),
  recordFor: () => null,
};
before(async () => {
  h = await startUpnp({ extra: { upstream } });
});
after(async () => {
  await h?.close();
});
beforeEach(() => revokeAll(h));

const c1 = () => `${h.base}/igd1/ctl/IPConn`;
const c2 = () => `${h.base}/igd2/ctl/IPConn`;
const add = addMappingArgs;

test('mapped upstream on the same port: AddPortMapping succeeds; AddAnyPortMapping reports the public port', async () => {
  next = (p) => ({ kind: 'mapped', externalAddress: '198.51.100.7', externalPort: p, lifetime: 3600 });
  assert.equal((await soap(c1(), IPC1, 'AddPortMapping', add())).status, 200);
  next = () => ({ kind: 'mapped', externalAddress: '198.51.100.7', externalPort: 31000, lifetime: 3600 });
  const r = await soap(c2(), IPC2, 'AddAnyPortMapping', add({ NewExternalPort: 20001, NewInternalPort: 2001 }));
  assert.equal(r.status, 200, r.body);
  assert.equal(field(r.body, 'NewReservedPort'), '31000');
});

test('AddPortMapping whose public port would differ is a 718, and the local lease goes', async () => {
  next = () => ({ kind: 'mapped', externalAddress: '198.51.100.7', externalPort: 31001, lifetime: 3600 });
  const r = await soap(c1(), IPC1, 'AddPortMapping', add({ NewExternalPort: 20002 }));
  assert.equal(errorCodeOf(r.body), 718);
  assert.equal(h.env.table.findByExternal('tcp', 20002), null);
});

for (const [reason, v1, v2] of [
  ['not_authorized', 606, 606],
  ['cannot_provide_external', 718, 718],
  ['no_resources', 501, 728],
  ['unavailable', 501, 501],
] as const) {
  test(`an upstream ${reason} refusal is UPnP ${v1} (v1) / ${v2} (v2)`, async () => {
    next = () => ({ kind: 'refused', reason, detail: 'scripted' });
    const a = await soap(c1(), IPC1, 'AddPortMapping', add({ NewExternalPort: 20010 }));
    assert.equal(errorCodeOf(a.body), v1, a.body);
    const b = await soap(c2(), IPC2, 'AddPortMapping', add({ NewExternalPort: 20011 }));
    assert.equal(errorCodeOf(b.body), v2, b.body);
  });
}
