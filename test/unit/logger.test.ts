import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';

const LOGGER = pathToFileURL(join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'logger.ts')).href;

/**
 * runs `body` in a child node whose stdout is a pipe (as under journald), counting write(2)s to fd 1 from
 * JavaScript
 */
function child(body: string): { lines: Record<string, unknown>[]; writes: number } {
  const script = `
import fs from 'node:fs';
let writes = 0;
for (const k of ['write', 'writeSync']) {
  const orig = fs[k];
  fs[k] = function (fd, ...rest) { if (fd === 1) writes++; return orig.call(this, fd, ...rest); };
}
process.on('exit', () => process.stderr.write('WRITES ' + writes + '\\n'));
const { createLogger } = await import(${JSON.stringify(LOGGER)});
const log = createLogger('info', { pretty: false });
${body}
`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const writes = Number(/WRITES (\d+)/.exec(r.stderr)?.[1] ?? NaN);
  return {
    lines: r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>),
    writes,
  };
}

test('lines logged a moment apart (one per writer tick at concurrency 1) share writes, whole and in order', () => {
  const { lines, writes } = child(
    `for (let i = 0; i < 300; i++) { log.info({ i, id: 'x'.repeat(40) }, 'lease granted'); await new Promise((r) => ` +
      `setTimeout(r, 1)); }`,
  );
  assert.equal(lines.length, 300);
  assert.deepEqual(
    lines.map((l) => l['i']),
    Array.from({ length: 300 }, (_, i) => i),
  );
  // 4 KiB or 100 ms a write: about 10 (one write per line, as before, is 300)
  assert.ok(writes <= 20, `${writes} writes for 300 lines`);
});

test('a lone line is on stdout within a moment while the process keeps running (it waits for no next line)', async () => {
  const script = `const { createLogger } = await import(${JSON.stringify(LOGGER)});
createLogger('info', { pretty: false }).info('portd ready');
setTimeout(() => {}, 2000);`;
  const c = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const t0 = performance.now();
  let exited: number | null = null;
  c.once('exit', () => {
    exited = performance.now();
  });
  const arrived = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no line in 10 s')), 10_000);
    c.stdout.on('data', (d: Buffer) => {
      if (d.toString().includes('portd ready')) {
        clearTimeout(t);
        resolve(performance.now());
      }
    });
  });
  // the child lives 2 s after its line: a line held until the next one, or until exit, would come with the exit
  assert.equal(exited, null, 'the line came only with the exit');
  c.kill();
  assert.ok(arrived > t0);
});

test('lines logged just before process.exit are not lost', () => {
  const { lines } = child(`for (let i = 0; i < 5; i++) log.info({ i }, 'stopping'); process.exit(0);`);
  assert.equal(lines.length, 5);
});
