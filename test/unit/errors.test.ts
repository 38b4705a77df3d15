import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { it } from 'node:test';
import { ErrorCode } from '../../src/errors.js';

it('every error code has its line in docs/errors.md', () => {
  const doc = readFileSync('docs/errors.md', 'utf8');
  const missing = Object.values(ErrorCode).filter((c) => !new RegExp(`^\\| \`${c}\` \\|`, 'm').test(doc));
  assert.deepEqual(missing, [], `codes without a doc line: ${missing.join(', ')}`);
});

it('codes are unique and stable-looking', () => {
  const values = Object.values(ErrorCode);
  assert.equal(new Set(values).size, values.length);
  for (const v of values) assert.match(v, /^PORTD_[A-Z0-9_]+$/);
});
