/**
 * The checks of `portd doctor`, each a pure function of the facts gathered once (gather.ts): what was found,
 * and what to do about it. Order here is the order of the report.
 */
import { checkNetAdmin, type CapabilitySets } from '../capabilities.js';
import { parseListen } from '../common/listen.js';
import { intToIpv4, ipv4ToInt } from '../common/net.js';
import { PORTD_CT_MARK } from '../dataplane/nftables-script.js';
import { evaluateHook, parseRuleset, type ChainVerdict, type PacketModel, type Ruleset } from './firewall.js';
import type { CheckResult, CheckStatus, DoctorFacts, PathFact } from './types.js';
import { classifyAddress } from '../common/address-kind.js';
import { createWanStatus } from '../dataplane/wan-status.js';
import pino from 'pino';

/** one line each: a tool's multi-line stderr is folded into the line */
const oneLine = (text: string) => text.replace(/\s*\n\s*/g, ' ').trim();
const result = (id: string, status: CheckStatus, message: string, fix: string | null = null): CheckResult => ({
  id,
  status,
  message: oneLine(message),
  fix: fix === null ? null : oneLine(fix),
});

const octal = (m: number) => (m & 0o777).toString(8).padStart(4, '0');
const MARK = `0x${PORTD_CT_MARK.toString(16)}`;

/** nft and conntrack-tools versions portd is tested with (Debian 12) and the oldest it can work with */
export const NFT_TESTED = [1, 0, 6] as const;
/** concatenated interval maps and `dnat ip to <concatenation> map` (fwd4_range, fwd4): nft 0.9.4 */
export const NFT_MINIMUM = [0, 9, 4] as const;
/** `conntrack -R` (one process for a tick's deletions): conntrack-tools 1.4.7 */
export const CONNTRACK_BATCH = [1, 4, 7] as const;

export function parseVersion(text: string): number[] | null {
  const m = /v?(\d+)\.(\d+)(?:\.(\d+))?/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

function older(v: readonly number[], than: readonly number[]): boolean {
  for (let i = 0; i < 3; i++) {
    const a = v[i] ?? 0;
    const b = than[i] ?? 0;
    if (a !== b) return a < b;
  }
  return false;
}

const usesNft = (f: DoctorFacts) => f.config.dataplane.driver === 'nftables';
const memoryNote = (id: string, what: string) =>
  result(id, 'info', `${what}: not used with dataplane.driver: memory (no kernel changes)`);

// ---------- kernel settings ----------

export function checkForwarding(f: DoctorFacts): CheckResult {
  const v = f.sysctl.ipv4Forward;
  if (v === null)
    return result(
      'forwarding',
      'warn',
      'cannot read /proc/sys/net/ipv4/ip_forward',
      'mount /proc, then run portd doctor again',
    );
  if (v === '1') return result('forwarding', 'ok', 'IPv4 forwarding is on (net.ipv4.ip_forward = 1)');
  if (!usesNft(f))
    return result(
      'forwarding',
      'info',
      `IPv4 forwarding is off (net.ipv4.ip_forward = ${v}); dataplane.driver: memory forwards nothing anyway`,
    );
  return result(
    'forwarding',
    'fail',
    `IPv4 forwarding is off (net.ipv4.ip_forward = ${v}): the gateway forwards no packet, so no mapping works`,
    'sysctl -w net.ipv4.ip_forward=1, and put net.ipv4.ip_forward = 1 in /etc/sysctl.d/90-portd.conf so it stays on ' +
      'after a reboot',
  );
}

export function checkIpv6Forwarding(f: DoctorFacts): CheckResult {
  const v = f.sysctl.ipv6Forward;
  if (v === null) return result('ipv6-forwarding', 'info', 'IPv6 is not available (no /proc/sys/net/ipv6)');
  return result(
    'ipv6-forwarding',
    'info',
    `IPv6 forwarding is ${v === '1' ? 'on' : 'off'} (net.ipv6.conf.all.forwarding = ${v}); portd maps IPv4 today, ` +
      `IPv6 pinholes will need it on`,
  );
}

export function checkConntrackTable(f: DoctorFacts): CheckResult {
  const { conntrackCount: c, conntrackMax: m, rpFilterWan, rpFilterAll } = f.sysctl;
  const rp = Math.max(Number(rpFilterAll ?? 0), Number(rpFilterWan ?? 0));
  const rpNote =
    rp === 1
      ? `; strict reverse-path filtering on ${f.config.interfaces.wan} (rp_filter 1): fine with one uplink, set 2 ` +
        `(loose) with two`
      : '';
  if (c === null || m === null)
    return result(
      'conntrack-table',
      'info',
      `nf_conntrack is not loaded yet (it loads with the first NAT rule)${rpNote}`,
    );
  const count = Number(c);
  const max = Number(m);
  if (max > 0 && count >= 0.9 * max)
    return result(
      'conntrack-table',
      'warn',
      `the conntrack table is ${Math.round((100 * count) / max)} % full (${count} of ${max}): when it is full, new ` +
        `flows (forwarded ones too) are dropped`,
      `sysctl -w net.netfilter.nf_conntrack_max=${max * 2} (and in /etc/sysctl.d/ to keep it)`,
    );
  return result('conntrack-table', 'ok', `conntrack table ${count} of ${max} entries${rpNote}`);
}

// ---------- the WAN address ----------

export function checkWanAddress(f: DoctorFacts): CheckResult {
  const wan = f.config.interfaces.wan;
  const fixed = f.config.externalAddress !== 'auto' ? f.config.externalAddress : null;
  if ('error' in f.wan)
    return result(
      'wan-address',
      'fail',
      `cannot read the addresses of the WAN interface ${wan}: ${f.wan.error}`,
      `set interfaces.wan to the interface that faces the internet (ip -br addr lists them)`,
    );
  const addrs = f.wan.addresses;
  if (addrs.length === 0 && !fixed)
    return result(
      'wan-address',
      'fail',
      `the WAN interface ${wan} has no IPv4 address: ` +
        'clients are told 0.0.0.0 and nothing is forwarded until it gets one',
      `bring ${wan} up with an address (DHCP from the modem), or set interfaces.wan to the interface that has it`,
    );
  const address = fixed ?? addrs[0]!;
  const notes: string[] = [];
  let status: CheckStatus = 'ok';
  let fix: string | null = null;
  if (fixed && addrs.length > 0 && !addrs.includes(fixed)) {
    status = 'warn';
    notes.push(
      `externalAddress is ${fixed} but ${wan} has ${addrs.join(', ')}: only packets sent to ${fixed} are forwarded`,
    );
    fix = `set externalAddress: auto (or to ${addrs[0]}), unless an upstream 1:1 NAT maps ${fixed} to this gateway`;
  }
  const { kind, block } = classifyAddress(address);
  const src = fixed ? 'externalAddress' : `the WAN address (${wan})`;
  const setStatus = (s: CheckStatus) => {
    if (s === 'fail' || (s === 'warn' && status !== 'fail')) status = s;
  };
  switch (kind) {
    case 'public':
      notes.unshift(`${src} ${address} is public: hosts on the internet reach mapped ports directly`);
      break;
    case 'documentation':
      notes.unshift(`${src} ${address} is in ${block} (a lab or example network): treated as public`);
      break;
    case 'private':
      setStatus('warn');
      notes.unshift(
        `${src} ${address} is private (${block}): another router is in front of this one (double NAT); a mapping ` +
          `opens the port on this gateway only, and hosts on the internet reach it only if the upstream router ` +
          `forwards the same port to ${address}`,
      );
      fix ??=
        `put this gateway in the upstream router's DMZ / exposed host (or bridge the modem), or forward the ` +
        `ports there too; clients that check for a public address (some consoles) report a strict NAT`;
      break;
    case 'shared':
      setStatus('warn');
      notes.unshift(
        `${src} ${address} is in ${block}: the ISP's carrier-grade NAT is in front of this gateway; hosts on the ` +
          `internet cannot reach any mapped port, whatever portd opens here`,
      );
      fix ??=
        `ask the ISP for a public IPv4 address (or a port-forwarding option on its CGN, e.g. PCP); until then ` +
        `clients behind portd get working mappings only towards the ISP's network`;
      break;
    default:
      setStatus('fail');
      notes.unshift(`${src} ${address} is ${block}: not an address hosts on the internet can reach`);
      fix ??=
        `check ${wan}'s configuration (no DHCP lease yet?) ` +
        'or set interfaces.wan to the interface facing the internet';
  }
  return result('wan-address', status, notes.join('; '), fix);
}

// ---------- double NAT (issue 16 part 3, docs/double-nat.md) ----------

/**
 * One line: is this gateway behind another NAT, and what to do. The same verdict as the running daemon's
 * (dataplane/wan-status.ts) from the WAN address's kind and, when stun.servers are configured, a STUN answer.
 */
export function checkDoubleNat(f: DoctorFacts): CheckResult {
  const fixed = f.config.externalAddress !== 'auto' ? f.config.externalAddress : null;
  const address = fixed ?? ('addresses' in f.wan ? (f.wan.addresses[0] ?? null) : null);
  const stunOn = (f.config.stun?.servers.length ?? 0) > 0;
  const wan = createWanStatus({
    clock: { now: () => 0 },
    log: pino({ level: 'silent' }), // the verdict's own log line is not wanted in a report
    stunEnabled: stunOn,
    stunMaxAgeMs: Number.POSITIVE_INFINITY,
  });
  wan.setWanAddress(address);
  if (f.stun?.ok) wan.stunLearned({ server: f.stun.server, address: f.stun.address, port: f.stun.port });
  else if (f.stun) wan.stunFailed(f.stun.error);
  const s = wan.snapshot();
  if (s.doubleNat === 'no') return result('double-nat', 'ok', `no double NAT: ${s.why}`, null);
  if (s.doubleNat === 'unknown') {
    if (!address) return result('double-nat', 'info', `double NAT unknown: ${s.why}`, null);
    return result(
      'double-nat',
      'warn',
      `double NAT unknown: ${s.why}`,
      'check stun.servers (host:port of a STUN server) and that outbound UDP to it leaves the WAN interface',
    );
  }
  const upstream =
    'or let portd chain each mapping to the upstream NAT (PCP, NAT-PMP or UPnP there; docs/double-nat.md)';
  const fix =
    s.kind === 'shared'
      ? `ask the ISP for a public IPv4 address or a port-forwarding option on its CGN (PCP), ${upstream}`
      : s.kind === 'private'
        ? `bridge the modem, or make this gateway the upstream router's DMZ / exposed host, ${upstream}`
        : `another NAT sits in front of the WAN address; if it is a 1:1 NAT nothing is needed, else ${upstream}`;
  return result('double-nat', 'warn', `double NAT: ${s.why}`, fix);
}

// ---------- the firewall ----------

function parsedRuleset(f: DoctorFacts): Ruleset | string {
  if ('error' in f.ruleset) return f.ruleset.error;
  try {
    return parseRuleset(f.ruleset.json);
  } catch (e) {
    return (e as Error).message;
  }
}

function where(v: ChainVerdict): string {
  if (!v.by) return `policy ${v.verdict}`;
  const inChain = v.by.chain !== v.chain.name ? ` in chain ${v.by.chain}` : '';
  return `rule "${v.by.text}"${inChain}${v.by.handle !== null ? ` (handle ${v.by.handle})` : ''}`;
}

const chainName = (v: ChainVerdict) => `table ${v.chain.family} ${v.chain.table} chain ${v.chain.name}`;

export function checkForwardChain(f: DoctorFacts): CheckResult {
  const id = 'firewall-forward';
  if (!usesNft(f)) return memoryNote(id, 'the forward chain');
  const rs = parsedRuleset(f);
  if (typeof rs === 'string')
    return result(
      id,
      'warn',
      `cannot read the ruleset (nft -j -t list ruleset): ${rs}`,
      'run portd doctor as root (or with CAP_NET_ADMIN)',
    );
  const table = f.config.dataplane.table;
  const wan = f.config.interfaces.wan;
  const lans = f.config.interfaces.lan.length > 0 ? f.config.interfaces.lan : [undefined];
  const ours = rs.chains.find((c) => c.family === 'inet' && c.table === table && c.name === 'forward' && c.hook);
  // the driver's forward chain runs at filter - 1 and sets the mark there; chains before it see no mark on a new flow
  const portdPrio = ours && 'prio' in ours ? ours.prio : -1;
  const worst = new Map<string, { v: ChainVerdict; scenario: string }>();
  const accepted = new Map<string, ChainVerdict>();
  const unsure = new Map<string, ChainVerdict>();
  for (const lan of lans)
    for (const l4proto of ['tcp', 'udp'] as const)
      for (const ctState of ['new', 'established'] as const) {
        const verdicts = evaluateHook(
          rs,
          'forward',
          (c): PacketModel => ({
            iifname: wan,
            ...(lan ? { oifname: lan } : {}),
            l4proto,
            ctState,
            ctStatus: ['dnat'],
            ctMark: ctState === 'new' && c.prio <= portdPrio ? 0 : PORTD_CT_MARK,
          }),
          (c) => !(c.family === 'inet' && c.table === table),
        );
        for (const v of verdicts) {
          const k = chainName(v);
          if (v.unknown.length > 0) unsure.set(k, v);
          if (v.verdict === 'drop') {
            if (!worst.has(k))
              worst.set(k, { v, scenario: `a ${ctState} ${l4proto} flow from ${wan}${lan ? ` to ${lan}` : ''}` });
          } else if (ctState === 'new' && !accepted.has(k)) accepted.set(k, v);
        }
      }
  const notOurs = ours ? '' : ` (portd's table inet ${table} is not there yet: run portd)`;
  if (worst.size > 0) {
    const messages: string[] = [];
    const fixes: string[] = [];
    for (const [k, { v, scenario }] of worst) {
      const early = v.chain.prio <= portdPrio;
      messages.push(
        `${k} (priority ${v.chain.prio}) drops portd's forwarded flows: ${scenario} meets ${where(v)}${
          early ? `; this chain runs before portd's forward chain (priority ${portdPrio}) sets mark ${MARK}` : ''
        }`,
      );
      const iptables = v.chain.family === 'ip' && /^[A-Z-]+$/.test(v.chain.name);
      if (iptables) fixes.push(`iptables -I ${v.chain.name} -m conntrack --ctstatus DNAT -j ACCEPT`);
      else if (early)
        fixes.push(`nft insert rule ${v.chain.family} ${v.chain.table} ${v.chain.name} ct status dnat accept`);
      else
        fixes.push(
          `nft insert rule ${v.chain.family} ${v.chain.table} ${v.chain.name} ct mark and ${MARK} == ${MARK} accept`,
        );
    }
    const unsureNote =
      unsure.size > 0
        ? ` (some rules could not be read: ${[...unsure.values()].map((v) => v.unknown[0]!.text).join('; ')})`
        : '';
    return result(
      id,
      unsure.size > 0 ? 'warn' : 'fail',
      messages.join('; ') + unsureNote + notOurs,
      `${fixes.join('; ')} — and add the same rule to that chain in /etc/nftables.conf (before anything that drops) ` +
        `so it survives a reload; see docs/nftables.md, "Coexistence with your firewall"`,
    );
  }
  if (unsure.size > 0)
    return result(
      id,
      'warn',
      `cannot tell whether ${[...unsure.keys()].join(', ')} accept portd's forwarded flows: ` +
        `rules this check cannot read (${[...unsure.values()].map((v) => v.unknown[0]!.text).join('; ')})${notOurs}`,
      `make sure the chain accepts ct mark & ${MARK} == ${MARK} (or ct status dnat) before anything that drops`,
    );
  if (accepted.size === 0)
    return result(id, 'ok', `no forward chain besides portd's own: forwarded flows pass${notOurs}`);
  const how = [...accepted.values()].map((v) => `${chainName(v)} accepts them (${where(v)})`).join('; ');
  return result(id, 'ok', how + notOurs);
}

/** `iptables -S FORWARD`: only a note (iptables-nft rules are in the nft ruleset and analysed there) */
export function checkIptables(f: DoctorFacts): CheckResult {
  if (!f.iptables) return result('iptables', 'ok', 'iptables is not installed: nothing to check there');
  const { version, forward } = f.iptables;
  const legacy = /legacy/.test(version);
  if (forward.code !== 0)
    return result('iptables', 'info', `${version.trim()}: iptables -S FORWARD failed: ${forward.stderr.trim()}`);
  const lines = forward.stdout.split('\n').map((l) => l.trim());
  const dropPolicy = lines.includes('-P FORWARD DROP');
  const accepts = lines.some(
    (l) => /-j ACCEPT/.test(l) && (/--ctstatus \S*DNAT/.test(l) || /connmark --mark 0x100\/0x100/.test(l)),
  );
  const rules = lines.filter((l) => l.startsWith('-A')).length;
  if (legacy && dropPolicy && !accepts)
    return result(
      'iptables',
      'warn',
      `${version.trim()}: the legacy FORWARD chain has policy DROP and no accept for forwarded (DNAT) flows: it ` +
        `drops portd's forwards as well`,
      'iptables -I FORWARD -m conntrack --ctstatus DNAT -j ACCEPT (and save it with your iptables-persistent rules)',
    );
  return result(
    'iptables',
    'info',
    `${version.trim()}: FORWARD policy ${dropPolicy ? 'DROP' : 'ACCEPT'}, ${rules} rule(s)` +
      (legacy ? '' : ' (nf_tables: analysed with the nft ruleset above)'),
  );
}

// ---------- tools ----------

export function checkNft(f: DoctorFacts): CheckResult {
  const id = 'nft';
  if (!usesNft(f)) return memoryNote(id, 'nft');
  const v = f.nftVersion;
  if (v.error || v.code !== 0)
    return result(
      id,
      'fail',
      `cannot run ${f.config.dataplane.nftPath}: ${v.error ?? v.stderr.trim()}`,
      'apt-get install nftables, or set dataplane.nftPath',
    );
  const text = v.stdout.trim();
  const ver = parseVersion(text);
  const kernel = f.kernel ? `, kernel ${f.kernel}` : '';
  if (!ver) return result(id, 'warn', `cannot read the nft version from "${text}"${kernel}`);
  const shown = ver.join('.');
  if (older(ver, NFT_MINIMUM))
    return result(
      id,
      'fail',
      `nft ${shown} is too old: portd needs ${NFT_MINIMUM.join('.')} or newer (concatenated interval maps)${kernel}`,
      'upgrade nftables (Debian 12 has 1.0.6)',
    );
  const c = f.nftCheck;
  if (c && c.code !== 0) {
    const perm = /Operation not permitted|Permission denied/i.test(c.stderr);
    return result(
      id,
      perm ? 'warn' : 'fail',
      perm
        ? `nft ${shown}${kernel}: cannot test portd's table without CAP_NET_ADMIN`
        : `nft ${shown}${kernel} refuses portd's table (nft -c): ${c.stderr.trim().split('\n')[0] ?? ''}`,
      perm
        ? 'run portd doctor as root'
        : 'upgrade nftables and the kernel (Debian 12: nft 1.0.6, kernel 6.1), modprobe nf_tables',
    );
  }
  const tested = c ? '; nft -c accepts the table portd writes' : '';
  if (older(ver, NFT_TESTED))
    return result(
      id,
      'warn',
      `nft ${shown}${kernel}: older than ${NFT_TESTED.join('.')}, the version portd is tested with${tested}`,
      'upgrade nftables if you see nft batch failed in the log',
    );
  return result(id, 'ok', `nft ${shown}${kernel}${tested}`);
}

export function checkConntrackTool(f: DoctorFacts): CheckResult {
  const id = 'conntrack';
  if (!usesNft(f)) return memoryNote(id, 'conntrack');
  const v = f.conntrackVersion;
  const triggers = f.config.triggers.some((t) => t.enabled);
  if (v.error || v.code !== 0)
    return result(
      id,
      triggers ? 'fail' : 'warn',
      `cannot run ${f.config.dataplane.conntrackPath}: ${v.error ?? v.stderr.trim()}: established flows of an ended ` +
        `lease end only by the kernel rule${triggers ? ', and port triggers never fire' : ''}`,
      'apt-get install conntrack, or set dataplane.conntrackPath',
    );
  const text = (v.stdout || v.stderr).trim();
  const ver = parseVersion(text);
  if (ver && older(ver, CONNTRACK_BATCH))
    return result(
      id,
      'warn',
      `conntrack ${ver.join('.')}: older than ${CONNTRACK_BATCH.join('.')}, so each flow deletion is its own process ` +
        `(conntrack -R needs ${CONNTRACK_BATCH.join('.')})`,
      'upgrade conntrack (Debian 12 has 1.4.7)',
    );
  return result(id, 'ok', `conntrack ${ver ? ver.join('.') : text}`);
}

export function checkNetlink(f: DoctorFacts): CheckResult {
  const id = 'netlink';
  if (!usesNft(f)) return memoryNote(id, 'the nf_tables netlink socket');
  if (!f.config.dataplane.netlink)
    return result(
      id,
      'info',
      'dataplane.netlink is false: every tick goes through nft (≈ 0.3 ms instead of ≈ 0.02 ms)',
    );
  if (f.netlink === true) return result(id, 'ok', 'the nf_tables netlink socket opens: ticks are written in-process');
  return result(
    id,
    'warn',
    `the nf_tables netlink socket does not open (${f.netlink}): portd works, with every tick through nft (slower ` +
      `under load)`,
    'check that koffi loads on this platform (npm ls koffi) and that the kernel has nf_tables',
  );
}

function capsMessage(who: string, sets: CapabilitySets | null): { ok: boolean; message: string; hint: string | null } {
  const c = checkNetAdmin(sets);
  if (c.ok)
    return {
      ok: true,
      message:
        `${who} ` +
        (sets!.euid === 0 ? 'runs as root' : `runs as uid ${sets!.euid} with CAP_NET_ADMIN effective and ambient`),
      hint: null,
    };
  return { ok: false, message: `${who}: ${c.message}`, hint: c.hint };
}

export function checkCapabilities(f: DoctorFacts): CheckResult {
  const id = 'capabilities';
  if (!usesNft(f)) return memoryNote(id, 'CAP_NET_ADMIN');
  const parts: string[] = [];
  let status: CheckStatus = 'ok';
  let fix: string | null = null;
  const running = f.lock?.alive ? f.lock : null;
  if (running?.capabilities) {
    const d = capsMessage(`the running portd (pid ${running.pid})`, running.capabilities);
    parts.push(d.message);
    if (!d.ok) {
      status = 'fail';
      fix = d.hint;
    }
  }
  const self = capsMessage('portd doctor', f.capabilities);
  parts.push(
    self.ok
      ? `${self.message}; portd started the same way can change nftables`
      : `${self.message} (portd started the same way could not change nftables)`,
  );
  if (!self.ok && !running) {
    status = status === 'fail' ? 'fail' : 'warn';
    fix ??= `${self.hint}; the packaged unit (config/portd.service) grants it`;
  }
  return result(id, status, parts.join('; '), fix);
}

// ---------- files ----------

function pathProblem(
  p: PathFact,
  kind: 'file' | 'dir',
  euid: number,
): { status: CheckStatus; text: string; fix: string } | null {
  if (!p.exists) return null;
  if (p.writable === false)
    return {
      status: 'fail',
      text: `${p.path} is not writable by uid ${euid}${p.uid !== undefined ? ` (owner uid ${p.uid})` : ''}`,
      fix: `chown portd: ${p.path} (the user portd runs as), or run portd as its owner`,
    };
  const want = kind === 'dir' ? 0o700 : 0o600;
  if (p.mode !== undefined && (p.mode & 0o077) !== 0)
    return {
      status: 'warn',
      text: `${p.path} is mode ${octal(p.mode)}, open to ${p.mode & 0o007 ? 'every user' : 'its group'}`,
      fix:
        `chmod ${octal(want).slice(1)} ${p.path} (portd also sets it on start when the ` +
        `${kind === 'dir' ? 'directory holds only its files' : 'file is its own'})`,
    };
  return null;
}

function worse(a: CheckStatus, b: CheckStatus): CheckStatus {
  const rank: Record<CheckStatus, number> = { ok: 0, info: 1, warn: 2, fail: 3 };
  return rank[b] > rank[a] ? b : a;
}

/** a missing path is fine when its nearest existing ancestor lets this user create it */
function creatable(
  missing: PathFact,
  parent: PathFact | null,
  euid: number,
): { status: CheckStatus; text: string; fix: string | null } {
  if (parent?.writable)
    return { status: 'ok', text: `${missing.path} does not exist yet: portd creates it (0700)`, fix: null };
  return {
    status: 'fail',
    text:
      `${missing.path} does not exist and uid ${euid} cannot create it` +
      (parent ? ` (${parent.path} is not writable)` : ''),
    fix: `install -d -m 0700 -o portd ${missing.path} (the packaged postinst does it)`,
  };
}

export function checkDatabase(f: DoctorFacts): CheckResult {
  const id = 'database';
  const { database, databaseDir, wal, databaseParent } = f.files;
  const euid = f.euid;
  let status: CheckStatus = 'ok';
  const notes: string[] = [];
  const fixes: string[] = [];
  if (!databaseDir.exists) {
    const c = creatable(databaseDir, databaseParent, euid);
    status = worse(status, c.status);
    notes.push(c.text);
    if (c.fix) fixes.push(c.fix);
  } else {
    const d = pathProblem(databaseDir, 'dir', euid);
    if (d) {
      status = worse(status, d.status);
      notes.push(d.text);
      fixes.push(d.fix);
    }
  }
  if (database.exists) {
    for (const p of [database, wal]) {
      const pr = pathProblem(p, 'file', euid);
      if (pr) {
        status = worse(status, pr.status);
        notes.push(pr.text);
        fixes.push(pr.fix);
      }
    }
    if (status === 'ok') notes.unshift(`${database.path} is writable, mode ${octal(database.mode ?? 0o600)}`);
  } else if (databaseDir.exists && databaseDir.writable) {
    notes.unshift(`${database.path} does not exist yet: portd creates it on first start`);
  }
  const lock = f.lock;
  if (lock?.alive) {
    notes.push(`in use by the running portd (pid ${lock.pid}; doctor only reads)`);
    const daemonUid = lock.capabilities?.euid;
    if (daemonUid !== undefined && daemonUid !== 0 && database.uid !== undefined && database.uid !== daemonUid) {
      status = worse(status, 'warn');
      notes.push(`owned by uid ${database.uid}, but portd runs as uid ${daemonUid}`);
      fixes.push(`chown ${daemonUid}: ${database.path}*`);
    }
  } else if (lock && lock.pid !== null) {
    notes.push(`stale lock file (pid ${lock.pid} is gone): portd takes it over on start`);
  }
  return result(id, status, notes.join('; '), fixes.length > 0 ? fixes.join('; ') : null);
}

export function checkStateDir(f: DoctorFacts): CheckResult {
  const id = 'state-dir';
  const { stateDir, stateParent, adminToken } = f.files;
  if (!stateDir.exists) {
    const c = creatable(stateDir, stateParent, f.euid);
    return result(id, c.status, c.text, c.fix);
  }
  let status: CheckStatus = 'ok';
  const notes: string[] = [];
  const fixes: string[] = [];
  for (const [p, kind] of [
    [stateDir, 'dir'],
    [adminToken, 'file'],
  ] as const) {
    const pr = pathProblem(p, kind, f.euid);
    if (pr) {
      status = worse(status, pr.status);
      notes.push(pr.text);
      fixes.push(pr.fix);
    }
  }
  if (status === 'ok') notes.push(`${stateDir.path} is writable, mode ${octal(stateDir.mode ?? 0o700)}`);
  return result(id, status, notes.join('; '), fixes.length > 0 ? fixes.join('; ') : null);
}

// ---------- front-ends closed from the WAN ----------

export interface FrontendBinding {
  readonly id: string;
  readonly name: string;
  readonly protocol: 'tcp' | 'udp';
  readonly port: number;
  readonly addresses: readonly string[];
  /** the configuration key that sets these addresses */
  readonly key: string;
  /** the configuration key that sets the port */
  readonly portKey: string;
}

/** where each enabled front-end listens, as portd would bind it from this configuration */
export function frontendBindings(f: DoctorFacts): FrontendBinding[] {
  const c = f.config;
  const listenKey = c.listenAddresses ? 'listenAddresses' : 'interfaces.lan';
  const addrs = c.listenAddresses ?? c.interfaces.lan.flatMap((n) => f.lanAddresses[n] ?? []);
  const out: FrontendBinding[] = [];
  if (c.upnp.enabled) {
    out.push({
      id: 'frontend-upnp',
      name: 'UPnP HTTP',
      protocol: 'tcp',
      port: c.upnp.httpPort,
      addresses: addrs,
      key: listenKey,
      portKey: 'upnp.httpPort',
    });
    if (c.upnp.ssdp)
      out.push({
        id: 'frontend-ssdp',
        name: 'SSDP',
        protocol: 'udp',
        port: 1900,
        addresses: addrs,
        key: listenKey,
        portKey: 'upnp.ssdp',
      });
  }
  if (c.pcp.enabled || c.natpmp.enabled)
    out.push({
      id: 'frontend-pcp',
      name: 'PCP/NAT-PMP',
      protocol: 'udp',
      port: c.pcp.port,
      addresses: addrs,
      key: listenKey,
      portKey: 'pcp.port',
    });
  const admin = parseListen(c.admin.listen); // validated at load
  if (admin)
    out.push({
      id: 'frontend-admin',
      name: 'admin API',
      protocol: 'tcp',
      port: admin.port,
      addresses: [admin.host],
      key: 'admin.listen',
      portKey: 'admin.listen',
    });
  return out;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '::ffff:0.0.0.0']);

export function checkFrontends(f: DoctorFacts): CheckResult[] {
  const c = f.config;
  const wan = c.interfaces.wan;
  const wanAddrs = new Set('addresses' in f.wan ? f.wan.addresses : []);
  if (c.externalAddress !== 'auto') wanAddrs.add(c.externalAddress);
  const rs = parsedRuleset(f);
  return frontendBindings(f).map((b) => {
    const exposed = b.addresses.filter((a) => WILDCARDS.has(a) || wanAddrs.has(a));
    const where =
      `${b.protocol} ` +
      `${b.addresses.map((a) => (a.includes(':') ? `[${a}]` : a)).join(', ') || '(no address)'} port ${b.port}`;
    if (b.addresses.length === 0)
      return result(
        b.id,
        'warn',
        `${b.name}: no LAN address to listen on (${c.interfaces.lan.join(', ')} have no IPv4 address)`,
        'set interfaces.lan to the LAN bridge, or listenAddresses',
      );
    // portd not running: a socket that holds the port keeps it from starting (SSDP shares its port on purpose)
    const live = (f.sockets ?? []).filter((s) => s.protocol === b.protocol && s.port === b.port && s.ipv4 !== null);
    const ours = b.addresses.map((a) => (WILDCARDS.has(a) ? 0 : ipv4ToInt(a)));
    const holder = live.find((s) => s.ipv4 === 0 || ours.includes(0) || ours.includes(s.ipv4));
    if (holder && !running(f) && b.id !== 'frontend-ssdp')
      return result(
        b.id,
        'fail',
        `${b.name}: another program already listens on ${b.protocol} ${intToIpv4(holder.ipv4!)} port ${b.port} ` +
          `(miniupnpd still running?): portd cannot bind it`,
        `stop that program (ss -${b.protocol === 'tcp' ? 't' : 'u'}lpn sport = :${b.port} names it), ` +
          `or change ${b.portKey}`,
      );
    // a socket bound to a wildcard or WAN address now (a running portd with another configuration, another program)
    for (const s of live) {
      const a = intToIpv4(s.ipv4!);
      if ((s.ipv4 === 0 || wanAddrs.has(a)) && !exposed.includes(a) && !(s.ipv4 === 0 && exposed.includes('0.0.0.0')))
        exposed.push(`${a} (a socket there now)`);
    }
    if (exposed.length === 0) {
      const loop = b.addresses.every((a) => a.startsWith('127.') || a === '::1');
      return result(b.id, 'ok', `${b.name} listens on ${where}: ${loop ? 'loopback only' : 'not on the WAN'}`);
    }
    // would the firewall drop such a packet arriving on the WAN interface? (any base chain's drop is final)
    let dropped: ChainVerdict | null = null;
    if (typeof rs !== 'string') {
      const daddr = [...wanAddrs][0];
      const verdicts = evaluateHook(rs, 'input', () => ({
        iifname: wan,
        l4proto: b.protocol,
        dport: b.port,
        ...(daddr ? { daddr } : {}),
        ctState: 'new',
        ctStatus: [],
        ctMark: 0,
      }));
      dropped = verdicts.find((v) => v.verdict === 'drop' && v.unknown.length === 0) ?? null;
    }
    const why = `bound to ${exposed.join(', ')}`;
    const fix =
      b.key === 'admin.listen'
        ? `set admin.listen to 127.0.0.1:${b.port} (or a LAN address, e.g. ` +
          `${f.lanAddresses[c.interfaces.lan[0] ?? '']?.[0] ?? '192.168.1.1'}:${b.port})`
        : 'set listenAddresses to the LAN addresses only' +
          (c.interfaces.lan.length > 0 ? ` (or null: the addresses of ${c.interfaces.lan.join(', ')})` : '');
    if (dropped)
      return result(
        b.id,
        'warn',
        `${b.name} listens on ${where} (${why}): reachable from ${wan}, but the input chain drops it now (table ` +
          `${dropped.chain.family} ${dropped.chain.table} chain ${dropped.chain.name}, ` +
          `${dropped.by ? `rule "${dropped.by.text}"` : 'policy drop'})`,
        fix,
      );
    return result(
      b.id,
      'fail',
      `${b.name} listens on ${where} (${why}) and no input chain drops ${b.protocol} port ${b.port} from ${wan}: it ` +
        `answers hosts on the internet`,
      fix,
    );
  });
}

// ---------- the daemon ----------

/** a portd holds the database lock or answers on the admin API */
function running(f: DoctorFacts): boolean {
  return !!f.lock?.alive || !!f.daemon?.reachable;
}

export function checkDaemon(f: DoctorFacts): CheckResult {
  const id = 'daemon';
  const table = f.config.dataplane.table;
  const rs = parsedRuleset(f);
  const tablePresent = typeof rs === 'string' ? null : rs.tables.some((t) => t.family === 'inet' && t.name === table);
  const tableNote =
    !usesNft(f) || tablePresent === null
      ? ''
      : tablePresent
        ? `; table inet ${table} is present`
        : `; table inet ${table} is not there`;
  const d = f.daemon;
  if (!running(f))
    return result(
      id,
      'info',
      `portd is not running${d && !d.reachable ? ` (admin API: ${d.error})` : ''}${tableNote}` +
        (tablePresent ? ' (its elements keep expiring in the kernel)' : ''),
    );
  let status: CheckStatus = 'ok';
  let fix: string | null = null;
  const parts: string[] = [`portd is running${f.lock?.alive ? ` (pid ${f.lock.pid})` : ''}`];
  if (d?.reachable && d.httpStatus === 200) {
    const b = d.body as {
      version?: string;
      externalAddress?: string;
      leases?: { total?: number };
      dataplane?: { ok?: boolean; driver?: string; detail?: string };
    };
    parts.push(
      `version ${b.version ?? '?'}, ${b.leases?.total ?? '?'} active leases, external address ` +
        `${b.externalAddress ?? '?'}, dataplane ${b.dataplane?.driver ?? '?'} ` +
        (b.dataplane?.ok === false ? `NOT ok${b.dataplane.detail ? ` (${b.dataplane.detail})` : ''}` : 'ok'),
    );
    if (b.dataplane?.ok === false) {
      status = 'fail';
      fix = 'read portd\'s log (journalctl -u portd) for "nft batch failed" or "dataplane"';
    }
  } else if (d?.reachable) {
    parts.push(
      `the admin API answers ${d.httpStatus}` +
        (d.httpStatus === 401 ? ' (pass its token for details: PORTD_ADMIN_TOKEN)' : ''),
    );
  } else if (d) {
    status = 'warn';
    parts.push(`but its admin API does not answer (${d.error})`);
    fix = "check admin.listen, and portd's log";
  }
  if (usesNft(f) && tablePresent === false) {
    status = 'fail';
    fix =
      `restart portd (systemctl restart portd): it rebuilds table inet ${table}; if it keeps disappearing, ` +
      `something flushes the ruleset (see docs/nftables.md, "Careful with flush ruleset")`;
  }
  return result(id, status, parts.join(', ') + tableNote, fix);
}

/** every check, in the report's order */
export function runChecks(f: DoctorFacts): CheckResult[] {
  return [
    checkForwarding(f),
    checkIpv6Forwarding(f),
    checkConntrackTable(f),
    checkWanAddress(f),
    checkDoubleNat(f),
    checkForwardChain(f),
    checkIptables(f),
    checkNft(f),
    checkConntrackTool(f),
    checkNetlink(f),
    checkCapabilities(f),
    checkDatabase(f),
    checkStateDir(f),
    ...checkFrontends(f),
    checkDaemon(f),
  ];
}
