import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { ErrorCode, errorRegistry, httpStatus } from '../../src/errors.js';

/** the table rows of docs/errors.md: `| \`CODE\` | status | meaning | what to do |` */
function docRows(): { code: string; status: string }[] {
  const doc = readFileSync('docs/errors.md', 'utf8');
  return [...doc.matchAll(/^\| `([^`]+)` \| ([^|]*) \|/gm)].map((m) => ({ code: m[1]!, status: m[2]!.trim() }));
}

it('every error code has its row in docs/errors.md', () => {
  const documented = new Set(docRows().map((r) => r.code));
  const missing = Object.values(ErrorCode).filter((c) => !documented.has(c));
  assert.deepEqual(missing, [], `codes without a row in docs/errors.md: ${missing.join(', ')}`);
});

it('every row of docs/errors.md (and every PORTD_ code it names) is a code in the registry', () => {
  const codes = new Set<string>(Object.values(ErrorCode));
  const rows = docRows().map((r) => r.code);
  const unknown = rows.filter((c) => !codes.has(c));
  assert.deepEqual(unknown, [], `rows in docs/errors.md without a code in src/errors.ts: ${unknown.join(', ')}`);
  assert.equal(new Set(rows).size, rows.length, 'a code has two rows in docs/errors.md');
  const named = [...readFileSync('docs/errors.md', 'utf8').matchAll(/PORTD_[A-Z0-9_]+/g)].map((m) => m[0]);
  const strays = named.filter((c) => !codes.has(c));
  assert.deepEqual(strays, [], `docs/errors.md names codes the registry does not have: ${strays.join(', ')}`);
});

it('the HTTP status documented for each code is the registry one (— for a code never sent over HTTP)', () => {
  const byCode = new Map(Object.values(errorRegistry).map((e) => [e.code as string, e.status]));
  const wrong = docRows()
    .map((r) => ({ ...r, want: byCode.get(r.code) }))
    .filter((r) => r.want !== undefined)
    .filter((r) => (r.want === null ? r.status !== '—' : r.status.split(' ')[0] !== String(r.want)))
    .map((r) => `${r.code}: docs say "${r.status}", src/errors.ts says ${r.want ?? '—'}`);
  assert.deepEqual(wrong, []);
});

it('the status table of docs/admin-api.md names each code under its registry status', () => {
  const byCode = new Map(Object.values(errorRegistry).map((e) => [e.code as string, e.status]));
  const doc = readFileSync('docs/admin-api.md', 'utf8');
  const rows = [...doc.matchAll(/^\| (\d{3}) \|.*\|([^|]*)\|$/gm)];
  assert.ok(rows.length >= 5, 'the status table is where it was');
  const wrong = rows.flatMap((m) =>
    [...m[2]!.matchAll(/PORTD_[A-Z0-9_]+/g)]
      .map((c) => c[0])
      .filter((c) => byCode.get(c) !== Number(m[1]))
      .map((c) => `${c} under ${m[1]}, src/errors.ts says ${byCode.get(c) ?? 'no such code'}`),
  );
  assert.deepEqual(wrong, []);
});

it('codes are unique and stable-looking, statuses are HTTP error statuses', () => {
  const values = Object.values(ErrorCode);
  assert.equal(new Set(values).size, values.length);
  for (const v of values) assert.match(v, /^PORTD_[A-Z0-9_]+$/);
  for (const [key, e] of Object.entries(errorRegistry)) {
    assert.equal(ErrorCode[key as keyof typeof ErrorCode], e.code);
    if (e.status !== null) assert.ok(e.status >= 400 && e.status <= 599, `${e.code}: ${e.status}`);
  }
  assert.equal(httpStatus(ErrorCode.LEASE_CONFLICT), 409);
  assert.equal(httpStatus(ErrorCode.ADMIN_FORBIDDEN_HOST), 421);
});
