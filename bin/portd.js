#!/usr/bin/env node
// The `portd` command. In a checkout (src/ present, tsx installed by `npm ci`) it runs the TypeScript
// through tsx, so `npm start` works right after `npm ci`; the Debian package ships no src/ and no tsx
// (scripts/package.mjs) and runs the compiled dist/ instead.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'cli.js');
const source = join(root, 'src', 'cli.ts');
const hasTsx = () => {
  try {
    createRequire(import.meta.url).resolve('tsx/esm/api');
    return true;
  } catch {
    return false;
  }
};
if (existsSync(source) && (hasTsx() || !existsSync(built))) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(source).href);
} else {
  await import(pathToFileURL(built).href);
}
