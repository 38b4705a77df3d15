/** The checks that keep web pages out of the UPnP front-end (src/frontends/upnp/request-guard.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkOrigin, checkSoapHeaders, hostHeaderAddress } from '../../src/frontends/upnp/request-guard.js';

test('hostHeaderAddress: address literals with an optional port; names, other spellings and junk are null', () => {
  assert.deepEqual(hostHeaderAddress('192.168.1.1:5000'), { address: '192.168.1.1', port: 5000 });
  assert.deepEqual(hostHeaderAddress('192.168.1.1'), { address: '192.168.1.1', port: 80 });
  assert.deepEqual(hostHeaderAddress(' 192.168.1.1:5000 '), { address: '192.168.1.1', port: 5000 });
  assert.deepEqual(hostHeaderAddress('[FE80::0001]:5000'), { address: 'fe80::1', port: 5000 });
  assert.deepEqual(hostHeaderAddress('[::1]'), { address: '::1', port: 80 });
  for (const bad of [
    'router.lan:5000',
    'localhost',
    '192.168.1.1.:5000',
    '192.168.1.1.',
    '0xc0a80101:5000',
    '3232235777:5000',
    '192.168.1:5000',
    '192.168.1.256:5000',
    '192.168.01.1:5000',
    '::1:5000',
    '[::1%25lo]:5000',
    '[::1]:',
    '192.168.1.1:0',
    '192.168.1.1:65536',
    '192.168.1.1:5000:5000',
    '192.168.1.1:5000@x',
    '',
    '[]:5000',
    '[fe80::1:5000',
  ]) {
    assert.equal(hostHeaderAddress(bad), null, bad);
  }
});

test('checkOrigin: any Origin refused; Host must be the local address and port (IPv4-mapped local addresses unmapped)', () => {
  const local = { address: '192.168.1.1', port: 5000 };
  assert.equal(checkOrigin({ host: '192.168.1.1:5000' }, local), null);
  assert.equal(checkOrigin({}, local), null, 'HTTP/1.0 without Host');
  assert.equal(checkOrigin({ host: '192.168.1.1:5000' }, { address: '::ffff:192.168.1.1', port: 5000 }), null);
  assert.equal(checkOrigin({ host: '[::ffff:192.168.1.1]:5000' }, local)?.kind, 'foreign_host');
  assert.equal(checkOrigin({ host: '192.168.1.1' }, local)?.kind, 'foreign_host', 'no port = 80');
  assert.equal(checkOrigin({ host: '192.168.1.1' }, { address: '192.168.1.1', port: 80 }), null);
  assert.equal(checkOrigin({ host: '192.168.1.2:5000' }, local)?.kind, 'foreign_host');
  assert.equal(checkOrigin({ host: 'evil.example:5000' }, local)?.status, 403);
  assert.equal(checkOrigin({ host: '192.168.1.1:5000', origin: 'null' }, local)?.kind, 'origin');
  assert.equal(checkOrigin({ host: '[fe80::1]:5000' }, { address: 'FE80:0:0::1', port: 5000 }), null);
});

test('checkSoapHeaders: text/xml or application/xml (any parameters, any case) and a non-empty SOAPAction', () => {
  const sa = '"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"';
  for (const ct of ['text/xml', 'text/xml; charset="utf-8"', 'TEXT/XML;charset=utf-8', 'application/xml'])
    assert.equal(checkSoapHeaders({ 'content-type': ct, soapaction: sa }), null, ct);
  for (const ct of [
    undefined,
    '',
    'text/plain',
    'application/soap+xml',
    'application/x-www-form-urlencoded',
    'multipart/form-data; boundary=x',
    'text/xmlx',
  ]) {
    assert.equal(checkSoapHeaders({ 'content-type': ct, soapaction: sa })?.status, 415, String(ct));
  }
  for (const a of [undefined, '', '""', ' " " ', ['a', 'b']])
    assert.equal(checkSoapHeaders({ 'content-type': 'text/xml', soapaction: a })?.status, 400, JSON.stringify(a));
});
