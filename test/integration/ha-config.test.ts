/**
 * `ha:` keys (src/config/ha.ts): off by default; on, it needs the postgres driver and a node name, and every
 * error names its key.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../../src/config/validate.js';

const pgDb = { driver: 'postgres', url: 'postgresql://portd@db.example/portd' };
const refusal = (obj: unknown): string => {
  try {
    validateConfig(obj);
  } catch (e) {
    return (e as Error).message;
  }
  return '';
};

describe('ha config', () => {
  test('defaults: off', () => {
    const c = validateConfig({});
    assert.equal(c.ha?.enabled, false);
    assert.equal(c.ha?.keepalived.instance, 'portd');
  });
  test('on with postgres and a node name', () => {
    const c = validateConfig({
      database: pgDb,
      ha: { enabled: true, node: 'gw-a', keepalived: { fifo: '/run/k.fifo', instance: 'gw' }, lockTimeout: 500 },
    });
    assert.equal(c.ha?.node, 'gw-a');
    assert.equal(c.ha?.keepalived.fifo, '/run/k.fifo');
    assert.equal(c.ha?.lockTimeout, 500);
  });
  test('on without postgres, without a node, with a relative fifo, with an unknown key: each key named', () => {
    assert.match(refusal({ ha: { enabled: true, node: 'a' } }), /ha\.enabled.*database\.driver: postgres/);
    assert.match(refusal({ database: pgDb, ha: { enabled: true } }), /ha\.node.*required/);
    assert.match(
      refusal({ database: pgDb, ha: { enabled: true, node: 'a', keepalived: { fifo: 'x.fifo' } } }),
      /ha\.keepalived\.fifo.*absolute/,
    );
    assert.match(refusal({ ha: { enable: true } }), /ha\.enable/);
    assert.match(refusal({ ha: { lockTimeout: 5 } }), /ha\.lockTimeout/);
  });
});
