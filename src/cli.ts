import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH, describeConfig, loadConfig } from './config/index.js';
import type { Config } from './config/types.js';
import { ErrorCode, PortdError } from './errors.js';
import { createLogger } from './logger.js';
import { VERSION, startPortd } from './main.js';

const HELP = `portd ${VERSION} — one lease table for UPnP IGD, PCP, NAT-PMP, port triggers and static forwards

Usage:
  portd start [--config FILE]          run the daemon (default config ${DEFAULT_CONFIG_PATH})
  portd check-config [--config FILE]   validate a configuration and print the effective one
  portd leases [--source S] [--json]   list active leases (through the admin API)
  portd revoke ID                      end a lease now
  portd forward add PROTO EXT[-END] HOST[:PORT] [--description D] [--lifetime S]
  portd forward rm ID                  remove a static forward
  portd status [--json]                daemon status
  portd doctor [--config F] [--json]   check this gateway and say what to fix (forwarding, WAN address,
                                       firewall, nft/conntrack, capabilities, files, front-ends on the WAN)
  portd --help | --version

Admin commands talk to the admin API at admin.listen from --config (or --url URL), with the token from
--token, PORTD_ADMIN_TOKEN or the configuration.

Exit codes: 0 ok, 1 runtime error (doctor: a check failed), 2 usage or configuration error, 3 database locked by
another portd.`;

export const EXIT = { OK: 0, RUNTIME: 1, USAGE: 2, LOCKED: 3 } as const;

function fail(e: unknown): number {
  if (e instanceof PortdError) {
    process.stderr.write(`portd: ${e.toUserString()}\n`);
    if (e.code === ErrorCode.DATABASE_LOCKED) return EXIT.LOCKED;
    if (
      e.code === ErrorCode.CONFIG_INVALID ||
      e.code === ErrorCode.CONFIG_NOT_FOUND ||
      e.code === ErrorCode.CONFIG_PARSE ||
      e.code === ErrorCode.USAGE
    )
      return EXIT.USAGE;
    return EXIT.RUNTIME;
  }
  process.stderr.write(`portd: ${(e as Error)?.stack ?? String(e)}\n`);
  return EXIT.RUNTIME;
}

function readConfigFile(path: string | undefined): Config {
  const file = path ?? DEFAULT_CONFIG_PATH;
  if (!path && !existsSync(file)) {
    throw new PortdError(
      ErrorCode.CONFIG_NOT_FOUND,
      `no --config given and ${DEFAULT_CONFIG_PATH} does not exist`,
      'copy config/router.example.yaml to /etc/portd/portd.yaml, or run with --config FILE (npm start uses ' +
        'config/portd.yaml)',
    );
  }
  return loadConfig(file);
}

async function start(configPath: string | undefined): Promise<number> {
  const config = readConfigFile(configPath);
  const log = createLogger(config.logLevel);
  log.info(
    { version: VERSION, config: configPath ?? DEFAULT_CONFIG_PATH, driver: config.dataplane.driver },
    'portd starting',
  );
  let portd;
  try {
    portd = await startPortd(config, log);
  } catch (e) {
    log.fatal({ err: (e as Error).message, code: (e as PortdError).code }, 'portd could not start');
    log.flush?.();
    const code = fail(e);
    // parts that did start (a listening socket) must not keep a failed start alive
    setTimeout(() => process.exit(code), 200).unref();
    return code;
  }
  log.info({ active: portd.leases.countActive().total }, 'portd ready');
  // keep the process alive even when no front-end holds a socket (all disabled)
  const keepAlive = setInterval(() => {}, 1 << 30);
  let stopping = false;
  const stop = async (sig: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(keepAlive);
    log.info({ signal: sig }, 'portd stopping; leases stay in the table and the kernel');
    const force = setTimeout(() => {
      log.error('shutdown took over 10 s; exiting');
      process.exit(EXIT.RUNTIME);
    }, 10_000);
    force.unref();
    await portd.close();
    log.info('portd stopped');
    log.flush?.();
    process.exitCode = EXIT.OK;
    setTimeout(() => process.exit(EXIT.OK), 50).unref();
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGHUP', () => {
    try {
      const next = readConfigFile(configPath);
      void portd.reload(next).catch((e) => log.error({ err: (e as Error).message }, 'reload failed'));
    } catch (e) {
      log.error(
        { err: e instanceof PortdError ? e.message : String(e) },
        'SIGHUP: new configuration refused; the running one stays',
      );
    }
  });
  return -1; // keep running
}

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(HELP + '\n');
    return cmd ? EXIT.OK : EXIT.USAGE;
  }
  if (cmd === '--version' || cmd === '-v') {
    process.stdout.write(`${VERSION}\n`);
    return EXIT.OK;
  }
  try {
    switch (cmd) {
      case 'start': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
        return await start(values.config);
      }
      case 'check-config': {
        const { values } = parseArgs({ args: rest, options: { config: { type: 'string', short: 'c' } }, strict: true });
        const config = readConfigFile(values.config);
        process.stdout.write(describeConfig(config));
        process.stderr.write(`portd: ${values.config ?? DEFAULT_CONFIG_PATH} is valid\n`);
        return EXIT.OK;
      }
      case 'doctor': {
        const { values } = parseArgs({
          args: rest,
          options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } },
          strict: true,
        });
        const config = readConfigFile(values.config);
        const { runDoctor } = await import('./doctor/index.js');
        return await runDoctor({
          configPath: values.config ?? DEFAULT_CONFIG_PATH,
          config,
          json: values.json ?? false,
          env: process.env,
          out: process.stdout,
        });
      }
      case 'leases':
      case 'revoke':
      case 'forward':
      case 'status': {
        const { runCliAdminCommand } = await import('./cli-admin.js');
        return await runCliAdminCommand(cmd, rest, readConfigFile);
      }
      default:
        throw new PortdError(ErrorCode.USAGE, `unknown command "${cmd}"`, 'run portd --help');
    }
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith?.('ERR_PARSE_ARGS'))
      return fail(new PortdError(ErrorCode.USAGE, (e as Error).message, 'run portd --help'));
    return fail(e);
  }
}

const code = await main(process.argv.slice(2));
if (code >= 0) process.exitCode = code;
