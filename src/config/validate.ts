import { parseListen } from '../common/listen.js';
import type { Config, LifetimeBounds, LogLevel, PolicyRule, StaticForwardConfig, TriggerConfig } from './types.js';
import { ConfigError, Issues, joinPath, show } from './errors.js';
import {
  type Raw,
  bool,
  cidrList,
  int,
  list,
  nullableStr,
  oneOf,
  parseAt,
  section,
  str,
  isIpAddress,
} from './check.js';
import { DEFAULTS } from './defaults.js';
import { parsePolicyRule } from './rules.js';
import { isUsableIPv4Host } from '../common/net.js';
import { checkStaticOverlaps, readStaticForward } from './static-forwards.js';
import { readTrigger } from './triggers.js';
import { deepFreeze } from './freeze.js';
import { readStun } from './stun.js';
import { readHa } from './ha.js';
import { readUpstream } from './upstream.js';

export const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const TOP_KEYS = [
  'logLevel',
  'interfaces',
  'externalAddress',
  'listenAddresses',
  'stateDir',
  'warmup',
  'database',
  'dataplane',
  'policy',
  'upnp',
  'pcp',
  'natpmp',
  'admin',
  'limits',
  'stun',
  'ha',
  'staticForwards',
  'triggers',
  'upstream',
] as const;

/** Linux interface names: 1-15 characters, no '/', ':' or whitespace */
const IFNAME = /^[^\s/:]{1,15}$/;
const IFNAME_EXPECTED = 'must be a network interface name (1-15 characters, no spaces, "/" or ":")';

function lifetime(obj: Raw, key: string, path: string, def: LifetimeBounds, issues: Issues): LifetimeBounds {
  const p = joinPath(path, key);
  const s = section(obj[key], p, ['min', 'max'], issues);
  const min = int(s, 'min', p, def.min, { min: 1 }, issues);
  const max = int(s, 'max', p, def.max, { min: 1 }, issues);
  if (min > max) issues.add(joinPath(p, 'min'), `must be ≤ max (${max}), got ${min}`);
  return { min, max };
}

export function readConfig(doc: unknown): { config: Config; issues: Issues } {
  const issues = new Issues();
  const root = section(doc, '', TOP_KEYS, issues);

  const logLevel = oneOf(root, 'logLevel', '', DEFAULTS.logLevel, LOG_LEVELS, issues);

  // interfaces
  const ifs = section(root['interfaces'], 'interfaces', ['wan', 'lan'], issues);
  const wan = str(
    ifs,
    'wan',
    'interfaces',
    DEFAULTS.interfaces.wan,
    { pattern: IFNAME, expected: IFNAME_EXPECTED },
    issues,
  );
  let lan: string[] = [...DEFAULTS.interfaces.lan];
  const rawLan = ifs['lan'];
  if (rawLan !== undefined) {
    if (typeof rawLan === 'string') {
      if (rawLan.trim() === '') issues.add('interfaces.lan', 'must list at least one interface');
      else lan = [rawLan];
    } else if (!Array.isArray(rawLan) || rawLan.length === 0)
      issues.add('interfaces.lan', `must be a non-empty list of interface names like [br-lan], got ${show(rawLan)}`);
    else {
      lan = [];
      rawLan.forEach((v, i) => {
        const p = `interfaces.lan[${i}]`;
        if (typeof v !== 'string' || !IFNAME.test(v)) issues.add(p, `${IFNAME_EXPECTED}, got ${show(v)}`);
        else if (lan.includes(v)) issues.add(p, `${show(v)} is listed twice`);
        else lan.push(v);
      });
    }
  }

  // external address
  let externalAddress: string = DEFAULTS.externalAddress;
  const ea = root['externalAddress'];
  if (ea !== undefined) {
    if (ea === 'auto' || (typeof ea === 'string' && isUsableIPv4Host(ea))) externalAddress = ea;
    else issues.add('externalAddress', `must be auto or a unicast IPv4 address like 192.0.2.1, got ${show(ea)}`);
  }

  // listen addresses
  let listenAddresses: string[] | null = DEFAULTS.listenAddresses;
  const la = root['listenAddresses'];
  if (la !== undefined && la !== null) {
    if (!Array.isArray(la) || la.length === 0)
      issues.add(
        'listenAddresses',
        `must be null (use the addresses of interfaces.lan) or a non-empty list of IP addresses, got ${show(la)}`,
      );
    else {
      listenAddresses = [];
      la.forEach((v, i) => {
        if (!isIpAddress(v))
          issues.add(`listenAddresses[${i}]`, `must be an IP address like 127.0.0.1, got ${show(v)}`);
        else if (listenAddresses!.includes(v)) issues.add(`listenAddresses[${i}]`, `${show(v)} is listed twice`);
        else listenAddresses!.push(v);
      });
    }
  }

  const stateDir = str(root, 'stateDir', '', DEFAULTS.stateDir, {}, issues);
  const warmup = int(root, 'warmup', '', DEFAULTS.warmup, { min: 0, max: 100_000 }, issues);

  // database
  const db = section(root['database'], 'database', ['path', 'synchronous', 'driver', 'url'], issues);
  const driver = oneOf(db, 'driver', 'database', DEFAULTS.database.driver, ['sqlite', 'postgres'] as const, issues);
  const url = nullableStr(
    db,
    'url',
    'database',
    DEFAULTS.database.url,
    { pattern: /^postgres(ql)?:\/\/\S+$/, expected: 'must be a postgresql:// connection URL' },
    issues,
  );
  if (driver === 'postgres' && url === null) {
    issues.add('database.url', 'is required with database.driver: postgres (a postgresql:// connection URL)');
  } else if (driver === 'sqlite' && url !== null) {
    issues.add('database.url', 'applies only with database.driver: postgres (the sqlite driver uses database.path)');
  }
  const database = {
    driver,
    url,
    path: str(db, 'path', 'database', DEFAULTS.database.path, {}, issues),
    synchronous: oneOf(
      db,
      'synchronous',
      'database',
      DEFAULTS.database.synchronous,
      ['normal', 'full'] as const,
      issues,
    ),
  };

  // dataplane
  const dpd = DEFAULTS.dataplane;
  const dp = section(
    root['dataplane'],
    'dataplane',
    ['driver', 'table', 'hairpin', 'reconcileInterval', 'grace', 'nftPath', 'netlink', 'conntrackPath'],
    issues,
  );
  const dataplane = {
    driver: oneOf(dp, 'driver', 'dataplane', dpd.driver, ['nftables', 'memory'] as const, issues),
    table: str(
      dp,
      'table',
      'dataplane',
      dpd.table,
      {
        pattern: /^[A-Za-z_][A-Za-z0-9_]{0,31}$/,
        expected: 'must be an nftables table name (letters, digits, _; at most 32; not starting with a digit)',
      },
      issues,
    ),
    hairpin: bool(dp, 'hairpin', 'dataplane', dpd.hairpin, issues),
    reconcileInterval: int(dp, 'reconcileInterval', 'dataplane', dpd.reconcileInterval, { min: 0, max: 86400 }, issues),
    grace: int(dp, 'grace', 'dataplane', dpd.grace, { min: 0, max: 3600 }, issues),
    nftPath: str(dp, 'nftPath', 'dataplane', dpd.nftPath, {}, issues),
    netlink: bool(dp, 'netlink', 'dataplane', dpd.netlink, issues),
    conntrackPath: str(dp, 'conntrackPath', 'dataplane', dpd.conntrackPath, {}, issues),
  };

  // with the memory driver (loopback default) WAN and LAN may both be `lo`: nothing is forwarded
  if (dataplane.driver === 'nftables' && lan.includes(wan)) {
    issues.add('interfaces.lan', `must not include the WAN interface ${show(wan)}: front-ends never listen on the WAN`);
  }

  // policy
  const pd = DEFAULTS.policy;
  const pol = section(
    root['policy'],
    'policy',
    [
      'secureMode',
      'ipv6Pinholes',
      'maxLeasesPerClient',
      'reservedPorts',
      'lifetime',
      'rules',
      'historyRetention',
      'checkPortInUse',
    ],
    issues,
  );
  let reservedPorts: number[] = [...pd.reservedPorts];
  const rp = list(pol, 'reservedPorts', 'policy', issues, 'ports like [22, 53, 80, 443]');
  if (rp) {
    reservedPorts = [];
    rp.forEach((v, i) => {
      if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535)
        issues.add(`policy.reservedPorts[${i}]`, `must be an integer between 1 and 65535, got ${show(v)}`);
      else if (!reservedPorts.includes(v)) reservedPorts.push(v);
    });
    reservedPorts.sort((a, b) => a - b);
  }
  const lt = section(pol['lifetime'], 'policy.lifetime', ['pcp', 'natpmp', 'upnp', 'trigger'], issues);
  const lifetimes = {
    pcp: lifetime(lt, 'pcp', 'policy.lifetime', pd.lifetime.pcp, issues),
    natpmp: lifetime(lt, 'natpmp', 'policy.lifetime', pd.lifetime.natpmp, issues),
    upnp: lifetime(lt, 'upnp', 'policy.lifetime', pd.lifetime.upnp, issues),
    trigger: lifetime(lt, 'trigger', 'policy.lifetime', pd.lifetime.trigger, issues),
  };
  let rules: PolicyRule[] = [];
  const rr = list(pol, 'rules', 'policy', issues, 'rules like "allow 1024-65535 192.168.0.0/24 1024-65535"');
  (rr ?? pd.rules).forEach((v, i) => {
    const r = parseAt(`policy.rules[${i}]`, issues, () => parsePolicyRule(v));
    if (r) rules.push(r);
  });
  if (rr === undefined && pol['rules'] !== undefined) rules = [];
  const policy = {
    secureMode: bool(pol, 'secureMode', 'policy', pd.secureMode, issues),
    ipv6Pinholes: bool(pol, 'ipv6Pinholes', 'policy', pd.ipv6Pinholes, issues),
    maxLeasesPerClient: int(pol, 'maxLeasesPerClient', 'policy', pd.maxLeasesPerClient, { min: 1 }, issues),
    reservedPorts,
    lifetime: lifetimes,
    rules,
    historyRetention: int(pol, 'historyRetention', 'policy', pd.historyRetention, { min: 0 }, issues),
    checkPortInUse: bool(pol, 'checkPortInUse', 'policy', pd.checkPortInUse, issues),
  };

  // upnp
  const ud = DEFAULTS.upnp;
  const up = section(
    root['upnp'],
    'upnp',
    [
      'enabled',
      'httpPort',
      'ssdp',
      'friendlyName',
      'manufacturer',
      'modelName',
      'notifyInterval',
      'ssdpMxDelay',
      'listAllLeases',
      'maxSubscriptions',
      'rateLimit',
      'ipv6',
    ],
    issues,
  );
  const upnp = {
    enabled: bool(up, 'enabled', 'upnp', ud.enabled, issues),
    httpPort: int(up, 'httpPort', 'upnp', ud.httpPort, { min: 0, max: 65535 }, issues),
    ssdp: bool(up, 'ssdp', 'upnp', ud.ssdp, issues),
    // UPnP Device Architecture: friendlyName and manufacturer < 64 characters, modelName < 32
    friendlyName: str(up, 'friendlyName', 'upnp', ud.friendlyName, { maxLength: 63 }, issues),
    manufacturer: str(up, 'manufacturer', 'upnp', ud.manufacturer, { maxLength: 63 }, issues),
    modelName: str(up, 'modelName', 'upnp', ud.modelName, { maxLength: 31 }, issues),
    notifyInterval: int(up, 'notifyInterval', 'upnp', ud.notifyInterval, { min: 10, max: 86400 }, issues),
    ssdpMxDelay: bool(up, 'ssdpMxDelay', 'upnp', ud.ssdpMxDelay, issues),
    listAllLeases: bool(up, 'listAllLeases', 'upnp', ud.listAllLeases, issues),
    maxSubscriptions: int(up, 'maxSubscriptions', 'upnp', ud.maxSubscriptions, { min: 0 }, issues),
    rateLimit: int(up, 'rateLimit', 'upnp', ud.rateLimit, { min: 0 }, issues),
    ipv6: bool(up, 'ipv6', 'upnp', ud.ipv6, issues),
  };

  // pcp
  const cd = DEFAULTS.pcp;
  const pc = section(
    root['pcp'],
    'pcp',
    ['enabled', 'port', 'peer', 'thirdParty', 'allowAllProtocols', 'rateLimit', 'ipv6'],
    issues,
  );
  const pcp = {
    enabled: bool(pc, 'enabled', 'pcp', cd.enabled, issues),
    port: int(pc, 'port', 'pcp', cd.port, { min: 0, max: 65535 }, issues),
    peer: bool(pc, 'peer', 'pcp', cd.peer, issues),
    thirdParty: pc['thirdParty'] === undefined ? [...cd.thirdParty] : cidrList(pc, 'thirdParty', 'pcp', issues),
    allowAllProtocols: bool(pc, 'allowAllProtocols', 'pcp', cd.allowAllProtocols, issues),
    rateLimit: int(pc, 'rateLimit', 'pcp', cd.rateLimit, { min: 0 }, issues),
    ipv6: bool(pc, 'ipv6', 'pcp', cd.ipv6, issues),
  };

  const nm = section(root['natpmp'], 'natpmp', ['enabled'], issues);
  const natpmp = { enabled: bool(nm, 'enabled', 'natpmp', DEFAULTS.natpmp.enabled, issues) };

  // admin
  const ad = section(root['admin'], 'admin', ['listen', 'token', 'tokenFile', 'allowedHosts'], issues);
  let listen: string = DEFAULTS.admin.listen;
  if (ad['listen'] !== undefined) {
    if (typeof ad['listen'] === 'string' && parseListen(ad['listen'])) listen = ad['listen'];
    else
      issues.add('admin.listen', `must be "address:port" like 127.0.0.1:8080 or [::1]:8080, got ${show(ad['listen'])}`);
  }
  const token = nullableStr(
    ad,
    'token',
    'admin',
    null,
    {
      minLength: 16,
      pattern: /^\S+$/,
      expected: 'must be null (generated) or a string of at least 16 characters without spaces',
    },
    issues,
  );
  const tokenFile = nullableStr(ad, 'tokenFile', 'admin', null, {}, issues);
  if (token !== null && tokenFile !== null)
    issues.add('admin.tokenFile', 'set either admin.token or admin.tokenFile, not both');
  // names the admin API also answers to (Host / Origin checks against DNS rebinding, src/admin/request-guard.ts)
  const allowedHosts: string[] = [];
  list(ad, 'allowedHosts', 'admin', issues, 'host names like router.lan')?.forEach((v, i) => {
    if (
      typeof v === 'string' &&
      /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/.test(
        v,
      )
    )
      allowedHosts.push(v.toLowerCase().replace(/\.$/, ''));
    else
      issues.add(`admin.allowedHosts.${i}`, `must be a host name like router.lan (no port, no scheme), got ${show(v)}`);
  });
  const admin = { listen, token, tokenFile, allowedHosts };

  // limits
  const ld = DEFAULTS.limits;
  const lm = section(root['limits'], 'limits', Object.keys(ld), issues);
  const limits = {
    maxActiveLeases: int(lm, 'maxActiveLeases', 'limits', ld.maxActiveLeases, { min: 0 }, issues),
    maxEndedLeases: int(lm, 'maxEndedLeases', 'limits', ld.maxEndedLeases, { min: 0 }, issues),
    historyPerLease: int(lm, 'historyPerLease', 'limits', ld.historyPerLease, { min: 2 }, issues),
    pcpRequestsPerSecond: int(lm, 'pcpRequestsPerSecond', 'limits', ld.pcpRequestsPerSecond, { min: 0 }, issues),
    soapRequestsPerSecond: int(lm, 'soapRequestsPerSecond', 'limits', ld.soapRequestsPerSecond, { min: 0 }, issues),
    ssdpSearchesPerSecond: int(lm, 'ssdpSearchesPerSecond', 'limits', ld.ssdpSearchesPerSecond, { min: 0 }, issues),
    peerLookupsPerSecond: int(lm, 'peerLookupsPerSecond', 'limits', ld.peerLookupsPerSecond, { min: 0 }, issues),
  };

  const stun = readStun(root['stun'], issues);
  const ha = readHa(root['ha'], database.driver, issues);

  const adminPort = parseListen(listen)?.port ?? 0;
  if (upnp.enabled && upnp.httpPort !== 0 && upnp.httpPort === adminPort) {
    issues.add('upnp.httpPort', `${upnp.httpPort} is also the admin port (admin.listen ${listen}): choose another`);
  }

  // static forwards
  const staticForwards: StaticForwardConfig[] = [];
  const sfTagged: { fwd: StaticForwardConfig; path: string }[] = [];
  list(
    root,
    'staticForwards',
    '',
    issues,
    'forwards like { protocol: tcp, externalPort: 8443, internal: "192.168.1.20:443" }',
  )?.forEach((v, i) => {
    const p = `staticForwards[${i}]`;
    for (const fwd of readStaticForward(v, p, reservedPorts, issues)) {
      staticForwards.push(fwd);
      sfTagged.push({ fwd, path: p });
    }
  });
  checkStaticOverlaps(sfTagged, issues);

  // triggers: each one is checked against the rules before it and the static forwards
  const triggers: TriggerConfig[] = [];
  list(root, 'triggers', '', issues, 'trigger rules')?.forEach((v, i) => {
    const t = readTrigger(
      v,
      `triggers[${i}]`,
      {
        reservedPorts,
        lifetime: lifetimes.trigger,
        existing: triggers,
        staticForwards,
      },
      issues,
    );
    if (t) triggers.push(t);
  });

  const upstream = readUpstream(root['upstream'], issues);

  const config: Config = {
    logLevel,
    interfaces: { wan, lan },
    externalAddress,
    listenAddresses,
    stateDir,
    warmup,
    database,
    dataplane,
    policy,
    upnp,
    pcp,
    natpmp,
    admin,
    limits,
    stun,
    ha,
    staticForwards,
    triggers,
    upstream,
  };
  return { config, issues };
}

/**
 * Validates a parsed document (e.g. from YAML or JSON) against the schema, fills in the router
 * defaults and returns the deep-frozen effective config. Throws ConfigError listing every problem.
 */
export function validateConfig(obj: unknown, sourceName = 'configuration'): Config {
  const { config, issues } = readConfig(obj);
  if (issues.count > 0) throw new ConfigError(issues.list, sourceName);
  return deepFreeze(config);
}
