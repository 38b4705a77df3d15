import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, stringify } from 'yaml';
import type { Config } from './types.js';
import { ErrorCode, PortdError } from '../errors.js';
import { validateConfig } from './validate.js';
import { formatPolicyRule } from './rules.js';
import { externalPorts, formatPortRange } from '../common/port-range.js';
import { triggerToDocument } from './triggers.js';

export interface ParseOptions {
  /** names the source in messages, e.g. the file path */
  readonly sourceName?: string;
}

/**
 * Parses YAML text and validates it. An empty document means "all defaults".
 * Throws PortdError CONFIG_PARSE for YAML syntax errors (with line and column) and
 * ConfigError (CONFIG_INVALID) listing every schema problem.
 */
export function parseConfig(yamlText: string, opts: ParseOptions = {}): Config {
  const sourceName = opts.sourceName ?? 'configuration';
  const lineCounter = new LineCounter();
  // YAML 1.2 core schema: `yes`/`on` stay strings, so a boolean must be written true/false
  const doc = parseDocument(yamlText, { lineCounter, prettyErrors: true, uniqueKeys: true, merge: false });
  if (doc.errors.length > 0) {
    const lines = doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      return `  - ${pos ? `line ${pos.line}, column ${pos.col}: ` : ''}${e.message.split('\n')[0]}`;
    });
    throw new PortdError(
      ErrorCode.CONFIG_PARSE,
      `${sourceName}: not valid YAML\n${lines.join('\n')}`,
      'fix the YAML syntax; keys and nesting are described in docs/configuration.md',
    );
  }
  const obj: unknown = doc.toJS({ maxAliasCount: 100 });
  return validateConfig(obj ?? {}, sourceName);
}

/**
 * Reads and validates a config file. Relative paths inside it (database.path, stateDir, ...)
 * are left as written and so resolve against the working directory of the portd process.
 */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new PortdError(
        ErrorCode.CONFIG_NOT_FOUND,
        `configuration file ${path} does not exist`,
        'pass --config <file>; config/router.example.yaml is a commented starting point',
      );
    }
    throw new PortdError(
      ErrorCode.CONFIG_NOT_FOUND,
      `cannot read configuration file ${path}: ${(e as Error).message}`,
      code === 'EACCES' ? 'check the file permissions' : undefined,
    );
  }
  return parseConfig(text, { sourceName: path });
}

export interface DescribeOptions {
  /** replace admin.token with "<redacted>" (default true): check-config output ends up in bug reports */
  readonly redact?: boolean;
}

/** the effective config in the file's own shape, which parseConfig accepts again (when not redacted) */
export function configToDocument(config: Config, opts: DescribeOptions = {}): Record<string, unknown> {
  const redact = opts.redact ?? true;
  return {
    logLevel: config.logLevel,
    interfaces: { wan: config.interfaces.wan, lan: [...config.interfaces.lan] },
    externalAddress: config.externalAddress,
    listenAddresses: config.listenAddresses ? [...config.listenAddresses] : null,
    stateDir: config.stateDir,
    database: { ...config.database },
    dataplane: { ...config.dataplane },
    policy: {
      secureMode: config.policy.secureMode,
      maxLeasesPerClient: config.policy.maxLeasesPerClient,
      reservedPorts: [...config.policy.reservedPorts],
      lifetime: {
        pcp: { ...config.policy.lifetime.pcp },
        natpmp: { ...config.policy.lifetime.natpmp },
        upnp: { ...config.policy.lifetime.upnp },
        trigger: { ...config.policy.lifetime.trigger },
      },
      rules: config.policy.rules.map(formatPolicyRule),
      historyRetention: config.policy.historyRetention,
    },
    upnp: { ...config.upnp },
    pcp: { ...config.pcp, thirdParty: [...config.pcp.thirdParty] },
    natpmp: { ...config.natpmp },
    admin: {
      listen: config.admin.listen,
      token: config.admin.token !== null && redact ? '<redacted>' : config.admin.token,
      tokenFile: config.admin.tokenFile,
      allowedHosts: [...(config.admin.allowedHosts ?? [])],
    },
    staticForwards: config.staticForwards.map((f) => ({
      protocol: f.protocol,
      externalPort: f.externalPort === f.externalPortEnd ? f.externalPort : formatPortRange(externalPorts(f)),
      internal: `${f.internalAddress}:${f.internalPort}`,
      remoteHost: f.remoteAddress,
      description: f.description,
    })),
    triggers: config.triggers.map(triggerToDocument),
    ...(config.upstream ? { upstream: { ...config.upstream } } : {}),
  };
}

/** the effective configuration as YAML, for `portd check-config` */
export function describeConfig(config: Config, opts: DescribeOptions = {}): string {
  return stringify(configToDocument(config, opts), { lineWidth: 0 });
}
