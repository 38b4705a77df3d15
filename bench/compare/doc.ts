/** docs/benchmarks.md is assembled from sections, each between `<!-- name:begin -->` and `<!-- name:end -->`. */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BENCHMARKS_MD = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'docs', 'benchmarks.md');

/** replaces the named section's body (or appends the section) */
export function writeSection(name: string, markdown: string, file = BENCHMARKS_MD): void {
  const begin = `<!-- ${name}:begin -->`,
    end = `<!-- ${name}:end -->`;
  const body = `${begin}\n${markdown.trim()}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const i = text.indexOf(begin),
    j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + body + text.slice(j + end.length);
  else text = `${text.trimEnd()}\n\n${body}\n`;
  writeFileSync(file, text);
}

export function mdTable(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '';
  const cols = Object.keys(rows[0]!);
  const cell = (v: unknown) => (v === null || v === undefined ? '' : String(v)).replace(/\|/g, '\\|');
  return [
    `| ${cols.join(' | ')} |`,
    `|${cols.map(() => '---').join('|')}|`,
    ...rows.map((r) => `| ${cols.map((c) => cell(r[c])).join(' | ')} |`),
  ].join('\n');
}
