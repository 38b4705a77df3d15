import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH } from './config/index.js';
import type { Config } from './config/types.js';

/** `portd leases|revoke|forward|status`: find the admin API from the config (or --url), then talk to it */
export async function runCliAdminCommand(cmd: string, rest: string[], readConfig: (path: string | undefined) => Config): Promise<number> {
  const { values, tokens } = parseArgs({
    args: rest, strict: false, tokens: true,
    options: { config: { type: 'string', short: 'c' }, url: { type: 'string' }, token: { type: 'string' } },
  });
  // strip the connection flags; the command parser sees the rest
  const drop = new Set<number>();
  for (const t of tokens ?? []) if (t.kind === 'option' && ['config', 'url', 'token'].includes(t.name)) {
    drop.add(t.index);
    if (t.value !== undefined && t.inlineValue === false) drop.add(t.index + 1);
  }
  const args = rest.filter((_, i) => !drop.has(i));
  let baseUrl = typeof values.url === 'string' ? values.url : null;
  let token = typeof values.token === 'string' ? values.token : process.env.PORTD_ADMIN_TOKEN ?? null;
  if (!baseUrl) {
    const config = readConfig(typeof values.config === 'string' ? values.config : (process.env.PORTD_CONFIG ?? DEFAULT_CONFIG_PATH));
    const listen = config.admin.listen.replace(/^0\.0\.0\.0:/, '127.0.0.1:').replace(/^\[::\]:/, '[::1]:');
    baseUrl = `http://${listen}`;
    token ??= config.admin.token;
    if (!token && config.admin.tokenFile) {
      try { token = (await import('node:fs')).readFileSync(config.admin.tokenFile, 'utf8').trim(); } catch { /* the server may not need one */ }
    }
  }
  const { runAdminCommand } = await import('./admin/cli-commands.js');
  return runAdminCommand([cmd, ...args], { baseUrl, token, out: process.stdout, err: process.stderr });
}
