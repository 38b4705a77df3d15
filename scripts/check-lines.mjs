#!/usr/bin/env node
// Lines stay within 120 columns in code, tests, benches and scripts. Biome's formatter wraps code at
// 120 but leaves long string literals and comments alone; this check catches those. Exempt: a comment
// line holding a URL (a URL cannot be wrapped), and a test's title line (`it('…', async () => {`:
// splitting the title makes the formatter re-indent the whole test body).
// Usage: node scripts/check-lines.mjs [dir|file ...]
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export const MAX_COLUMNS = 120;
const DEFAULT_ROOTS = ['src', 'protocols', 'test', 'bench', 'scripts', 'bin'];
const EXTENSIONS = /\.(ts|mts|cts|js|mjs|cjs)$/;
const SKIP_DIRS = new Set(['node_modules', 'dist', '.git']);
const COMMENT_WITH_URL = /^\s*(\/\/|\/?\*).*\bhttps?:\/\//;
const TEST_TITLE = /^\s*(it|test|describe)(\.\w+)?\(.*(=>|function\s*\([^)]*\))\s*\{$/;

function* files(path) {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st) return;
  if (st.isFile()) {
    if (EXTENSIONS.test(path)) yield path;
    return;
  }
  if (!st.isDirectory()) return;
  for (const name of readdirSync(path).sort()) if (!SKIP_DIRS.has(name)) yield* files(join(path, name));
}

/** the lines over the bound: { line (1-based), columns } */
export function longLines(text, max = MAX_COLUMNS) {
  const out = [];
  text.split('\n').forEach((line, i) => {
    const columns = [...line].length; // code points: a '—' or '≤' is one column
    if (columns > max && !COMMENT_WITH_URL.test(line) && !TEST_TITLE.test(line)) out.push({ line: i + 1, columns });
  });
  return out;
}

const roots = process.argv.slice(2).length > 0 ? process.argv.slice(2) : DEFAULT_ROOTS;
let bad = 0;
let checked = 0;
for (const root of roots) {
  for (const file of files(root)) {
    checked++;
    for (const l of longLines(readFileSync(file, 'utf8'))) {
      bad++;
      console.error(`${relative('.', file)}:${l.line}: ${l.columns} columns (at most ${MAX_COLUMNS})`);
    }
  }
}
if (bad > 0) {
  console.error(
    `check-lines: ${bad} line(s) over ${MAX_COLUMNS} columns: wrap the comment, or split the string ('a ' + 'b')`,
  );
  process.exit(1);
}
console.error(`check-lines: ${checked} files, every line within ${MAX_COLUMNS} columns`);
