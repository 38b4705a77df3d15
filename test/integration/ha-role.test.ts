/**
 * How portd follows keepalived (src/ha/keepalived.ts, src/ha/role.ts): notify_fifo lines parsed; a real FIFO
 * written as keepalived writes it (opened read-write, lines left in it while portd was away) read up to the
 * current state; the role controller's transitions, one at a time, latest state wins, fenced → standby. ≈ 1 s.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync, constants } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import pino from 'pino';
import { parseNotifyLine, type VrrpState, watchNotifyFifo } from '../../src/ha/keepalived.js';
import { createHaRole } from '../../src/ha/role.js';

const log = pino({ level: 'silent' });

describe('keepalived notify_fifo', () => {
  test('lines as keepalived 2.2 writes them', () => {
    assert.deepEqual(parseNotifyLine('INSTANCE "gw" MASTER 150'), {
      type: 'INSTANCE',
      name: 'gw',
      state: 'MASTER',
      priority: 150,
    });
    assert.equal(parseNotifyLine('GROUP "pair" BACKUP')?.state, 'BACKUP');
    assert.equal(parseNotifyLine('INSTANCE "gw" DELETED 0')?.state, 'STOP');
    assert.equal(parseNotifyLine('VS "10.0.0.1:80" UP'), null);
    assert.equal(parseNotifyLine('INSTANCE "gw" BOGUS 1'), null);
    assert.equal(parseNotifyLine('garbage'), null);
  });

  test('a FIFO with lines left in it while nobody read: read up to the current state, then live lines', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-ha-fifo-'));
    const path = join(dir, 'notify.fifo');
    try {
      execFileSync('mkfifo', [path]);
      // keepalived's end: read-write, so writes never block and never fail for want of a reader
      const w = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
      writeSync(w, 'INSTANCE "other" MASTER 100\nINSTANCE "gw" MASTER 150\nINSTANCE "gw" FAULT 0\n');
      const seen: VrrpState[] = [];
      const watcher = watchNotifyFifo({ path, instance: 'gw', onState: (s) => seen.push(s) });
      const until = async (n: number) => {
        for (let i = 0; i < 100 && seen.length < n; i++) await new Promise((r) => setTimeout(r, 10));
      };
      await until(2);
      assert.deepEqual(seen, ['MASTER', 'FAULT']);
      writeSync(w, 'INSTANCE "gw" BACK');
      writeSync(w, 'UP 150\n');
      await until(3);
      assert.deepEqual(seen, ['MASTER', 'FAULT', 'BACKUP']);
      watcher.close();
      closeSync(w);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a FIFO that appears later is found', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'portd-ha-fifo-'));
    const path = join(dir, 'notify.fifo');
    const seen: VrrpState[] = [];
    const errors: string[] = [];
    const watcher = watchNotifyFifo({
      path,
      instance: 'gw',
      onState: (s) => seen.push(s),
      onError: (m) => errors.push(m),
      retryMs: 20,
    });
    try {
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(errors.length, 1, 'said once');
      execFileSync('mkfifo', [path]);
      const w = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
      writeSync(w, 'INSTANCE "gw" MASTER 150\n');
      for (let i = 0; i < 100 && !seen.length; i++) await new Promise((r) => setTimeout(r, 10));
      assert.deepEqual(seen, ['MASTER']);
      closeSync(w);
    } finally {
      watcher.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('HA role controller', () => {
  function harness(opts: { failTakes?: number } = {}) {
    const calls: string[] = [];
    let gen = 0;
    let failTakes = opts.failTakes ?? 0;
    const role = createHaRole({
      log,
      retryMs: 20,
      follower: {
        start: () => calls.push('follow'),
        stop: async () => {
          calls.push('unfollow');
        },
      },
      takeFence: async () => {
        await new Promise((r) => setTimeout(r, 10));
        if (failTakes-- > 0) throw new Error('database unreachable');
        calls.push(`take ${++gen}`);
        return gen;
      },
      activate: async (t) => {
        calls.push(`activate ${t}`);
        return {
          stop: async () => {
            calls.push(`deactivate ${t}`);
          },
        };
      },
    });
    return { role, calls };
  }

  test('standby until keepalived speaks; MASTER takes the fence and activates; BACKUP stands down', async () => {
    const { role, calls } = harness();
    role.start();
    assert.equal(role.role(), 'standby');
    role.vrrp('MASTER');
    await role.idle();
    assert.equal(role.role(), 'active');
    assert.equal(role.token(), 1);
    role.vrrp('BACKUP');
    await role.idle();
    assert.equal(role.role(), 'standby');
    assert.deepEqual(calls, ['follow', 'unfollow', 'take 1', 'activate 1', 'deactivate 1', 'follow']);
    await role.stop();
  });

  test('states arriving during a transition: the latest wins, none is applied twice', async () => {
    const { role, calls } = harness();
    role.start();
    role.vrrp('MASTER');
    role.vrrp('FAULT');
    role.vrrp('MASTER');
    await role.idle();
    assert.equal(role.role(), 'active');
    assert.deepEqual(calls, ['follow', 'unfollow', 'take 1', 'activate 1']);
    role.vrrp('FAULT');
    await role.idle();
    assert.equal(role.role(), 'fault');
    await role.stop();
  });

  test('the takeover fails (database away): it follows meanwhile and tries again while MASTER', async () => {
    const { role, calls } = harness({ failTakes: 2 });
    role.start();
    role.vrrp('MASTER');
    for (let i = 0; i < 100 && role.role() !== 'active'; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(role.role(), 'active');
    assert.deepEqual(calls.slice(-2), ['take 1', 'activate 1']);
    assert.equal(calls.filter((c) => c === 'follow').length, 3, 'followed after each failed try');
    await role.stop();
  });

  test('fenced while active: stands by even though keepalived still says MASTER', async () => {
    const { role, calls } = harness();
    role.start();
    role.vrrp('MASTER');
    await role.idle();
    role.fenced();
    await role.idle();
    assert.equal(role.role(), 'standby');
    assert.deepEqual(calls.slice(-2), ['deactivate 1', 'follow']);
    await role.stop();
  });
});
