import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_CONFIG_PATH } from './config/index.js';
import type { Config } from './config/types.js';

/**
 * `portd leases|revoke|forward|status`: find the admin API (--url, PORTD_ADMIN_URL, admin.listen of --config
 * or /etc/portd/portd.yaml, else 127.0.0.1:8080) and its token (--token, PORTD_ADMIN_TOKEN, admin.token,
 * admin.tokenFile, <stateDir>/admin-token), then run the command against it.
 */
export async function runCliAdminCommand(
  cmd: string,
  rest: string[],
  readConfig: (path: string | undefined) => Config,
): Promise<number> {
  const args: string[] = [];
  let configPath: string | undefined;
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--config' || a === '-c') configPath = rest[++i];
    else if (a.startsWith('--config=')) configPath = a.slice('--config='.length);
    else args.push(a);
  }
  const hasUrl = args.some((a) => a === '--url' || a.startsWith('--url=')) || !!process.env.PORTD_ADMIN_URL;
  let config: Config | null = null;
  if (configPath) config = readConfig(configPath);
  else if (!hasUrl && existsSync(DEFAULT_CONFIG_PATH)) config = readConfig(DEFAULT_CONFIG_PATH);
  let tokenFromFile: string | null = null;
  let unreadable: string | null = null;
  for (const f of [config?.admin.tokenFile, config ? join(config.stateDir, 'admin-token') : null]) {
    if (!f || tokenFromFile) continue;
    try {
      tokenFromFile = readFileSync(f, 'utf8').trim() || null;
    } catch (e) {
      // 0600 on purpose: only root and portd's user may make changes through the CLI
      if ((e as NodeJS.ErrnoException).code === 'EACCES') unreadable ??= f;
    }
  }
  const { adminClientTarget, runAdminCommand } = await import('./admin/index.js');
  const flag = (name: string) => {
    const i = args.indexOf(`--${name}`);
    if (i >= 0) {
      const v = args[i + 1];
      args.splice(i, 2);
      return v;
    }
    const j = args.findIndex((a) => a.startsWith(`--${name}=`));
    if (j >= 0) {
      const v = args[j]!.slice(name.length + 3);
      args.splice(j, 1);
      return v;
    }
    return undefined;
  };
  const url = flag('url');
  const token = flag('token');
  const target = adminClientTarget({
    config,
    env: process.env,
    ...(url ? { url } : {}),
    ...(token ? { token } : {}),
    tokenFromFile,
  });
  return runAdminCommand([cmd, ...args], {
    baseUrl: target.baseUrl,
    token: target.token,
    out: process.stdout,
    err: process.stderr,
    ...(unreadable && !target.token
      ? { tokenHint: `cannot read ${unreadable} (permission denied): run as root or portd's user, or pass --token` }
      : {}),
  });
}
