/**
 * Ready-made port-triggering rules for applications that neither speak UPnP/PCP nor live with a
 * fixed forward. Usable from config by name (`triggers: [{ preset: irc-ident }]`); every field
 * can be overridden there. Data only: validated by src/config like a hand-written rule.
 *
 * The port sets are the ones router vendors ship in their "well-known applications" lists, or
 * the application vendor's own firewall notes; `source` cites where each one comes from.
 * `match` = outbound destination ports that fire the rule; `open` = inbound ports opened to the
 * host that fired it.
 *
 * Note: quicktime opens UDP 6970-32000 (as in the vendors' lists), which overlaps realaudio and
 * asherons-call; such presets cannot be used together — the validator reports the overlap.
 */

export type PresetProtocol = 'tcp' | 'udp' | 'both';

export interface TriggerPreset {
  /** what the application is, for docs and the dashboard */
  readonly description: string;
  readonly match: { readonly protocol: PresetProtocol; readonly ports: string };
  readonly open: readonly { readonly protocol: PresetProtocol; readonly ports: string }[];
  /** seconds without traffic before the opening closes */
  readonly idleTimeout: number;
  /** where the port set comes from */
  readonly source: string;
}

/** Netgear's port-triggering timeout defaults to 20 minutes (R6400/R7900P user manuals). */
const NETGEAR_DEFAULT_IDLE = 1200;

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}

export const TRIGGER_PRESETS: Readonly<Record<string, TriggerPreset>> = deepFreeze({
  'irc-ident': {
    description: "IRC: the server connects back to the client's ident service (RFC 1413) on TCP 113",
    match: { protocol: 'tcp', ports: '6667' },
    open: [{ protocol: 'tcp', ports: '113' }],
    idleTimeout: NETGEAR_DEFAULT_IDLE,
    source:
      'Netgear router user manuals, "Application Example: Port Triggering for Internet Relay Chat" ' +
      '(e.g. R6400 / R7900P / AC1600 manuals): outgoing TCP 6667 opens incoming TCP 113',
  },
  battlenet: {
    description: 'Classic Battle.net games (Diablo, StarCraft, Warcraft II BNE, Warcraft III) hosting games',
    match: { protocol: 'tcp', ports: '6112' },
    open: [
      { protocol: 'tcp', ports: '6112-6119' },
      { protocol: 'udp', ports: '6112-6119' },
    ],
    idleTimeout: 600,
    source:
      'Blizzard, "Firewalls and hosting games" (us.battle.net forums, bnet topic 11642844210): ' +
      'Diablo/Warcraft II BNE 6112-6119 TCP+UDP in and out; StarCraft 6112 TCP+UDP; Warcraft III 6112 TCP in, ' +
      '6113-6119 when the game port is changed',
  },
  quicktime: {
    description: 'QuickTime 4 client: RTSP control on TCP 554, media streams arrive over UDP',
    match: { protocol: 'tcp', ports: '554' },
    open: [{ protocol: 'udp', ports: '6970-32000' }],
    idleTimeout: 600,
    source:
      'ASUSWRT "well-known applications" list for port trigger (github.com/RMerl/asuswrt-merlin, ' +
      'release/src/router/www/Advanced_PortTrigger_Content.asp): "Quicktime 4 Client" TCP 554 -> UDP 6970:32000',
  },
  realaudio: {
    description: 'RealAudio/RealPlayer: control on TCP 7070, media streams arrive over UDP',
    match: { protocol: 'tcp', ports: '7070' },
    open: [{ protocol: 'udp', ports: '6970-7170' }],
    idleTimeout: 600,
    source:
      'ASUSWRT "well-known applications" list for port trigger (github.com/RMerl/asuswrt-merlin, ' +
      'release/src/router/www/Advanced_PortTrigger_Content.asp): "Real Audio" TCP 7070 -> UDP 6970:7170',
  },
  icq: {
    description: 'ICQ (legacy client): direct connections and file transfers',
    match: { protocol: 'udp', ports: '4000' },
    open: [{ protocol: 'tcp', ports: '20000-20059' }],
    idleTimeout: 600,
    source:
      'port-trigger application list of Realtek/Ralink-SDK router web UIs shipped by several ISP CPE vendors ' +
      '(pages app_nat_porttrig.asp / d_nat_portrigger.asp): "ICQ" UDP 4000 -> TCP 20000-20059',
  },
  'aim-talk': {
    description: 'AOL Instant Messenger voice (AIM Talk)',
    match: { protocol: 'tcp', ports: '4099' },
    open: [{ protocol: 'tcp', ports: '5191' }],
    idleTimeout: 600,
    source:
      'port-trigger application list of Realtek/Ralink-SDK router web UIs (app_nat_porttrig.asp / ' +
      'd_nat_portrigger.asp): ' +
      '"Aim Talk" TCP 4099 -> TCP 5191',
  },
  'asherons-call': {
    description: "Asheron's Call (MMO)",
    match: { protocol: 'udp', ports: '9000-9013' },
    open: [{ protocol: 'udp', ports: '9000-9013' }],
    idleTimeout: 600,
    source:
      'port-trigger application list of Realtek/Ralink-SDK router web UIs (app_nat_porttrig.asp / ' +
      'd_nat_portrigger.asp): ' +
      '"Asheron\'s Call" UDP 9000-9013 -> UDP 9000-9013',
  },
  'rainbow-six': {
    description: 'Rainbow Six / Rogue Spear multiplayer',
    match: { protocol: 'tcp', ports: '2346' },
    open: [{ protocol: 'both', ports: '2436-2438' }],
    idleTimeout: 600,
    source:
      'port-trigger application list of Realtek/Ralink-SDK router web UIs (app_nat_porttrig.asp / ' +
      'd_nat_portrigger.asp): ' +
      '"Rainbow Six/Rogue Spear" TCP 2346 -> TCP/UDP 2436-2438',
  },
  'delta-force': {
    description: 'Delta Force (client/server multiplayer)',
    match: { protocol: 'udp', ports: '3568' },
    open: [{ protocol: 'both', ports: '3100-3999' }],
    idleTimeout: 600,
    source:
      'port-trigger application list of Realtek/Ralink-SDK router web UIs (app_nat_porttrig.asp / ' +
      'd_nat_portrigger.asp): ' +
      '"Delta Force (Client/Server)" UDP 3568 -> TCP/UDP 3100-3999',
  },
} satisfies Record<string, TriggerPreset>);

export const TRIGGER_PRESET_NAMES: readonly string[] = Object.freeze(Object.keys(TRIGGER_PRESETS));
