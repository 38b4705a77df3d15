#!/usr/bin/env node
// The `portd` command. Runs the TypeScript through tsx, so `npm start` works right after `npm ci`;
// a package shipped without src/ (built with `npm run build`) runs dist/ instead.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'cli.js');
if (!existsSync(join(root, 'src', 'cli.ts')) && existsSync(built)) {
  await import(pathToFileURL(built).href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(root, 'src', 'cli.ts')).href);
}
