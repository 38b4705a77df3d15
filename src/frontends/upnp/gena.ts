import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Logger } from 'pino';
import { encodePropertySet, formatTimeoutHeader, parseCallbackHeader, parseTimeoutHeader } from '../../../protocols/upnp/index.js';
import { unmapIPv4 } from '../../config/net.js';
import type { Metrics } from '../../metrics.js';
import type { LogGate } from '../rate-limit.js';

export type EventVars = readonly (readonly [string, string | number])[];

export interface GenaOptions {
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly now: () => number;
  readonly maxSubscriptions: number;
  /** initial state of an event path (all evented variables) */
  readonly stateOf: (eventPath: string) => EventVars;
  /** seconds granted when the client asks for none or for infinite; also the cap */
  readonly defaultTimeout?: number;
  readonly minTimeout?: number;
  readonly notifyTimeoutMs?: number;
  /** subscriptions one subscriber address may hold (default: maxSubscriptions) */
  readonly maxPerSubscriber?: number;
  /** "once per client per interval" for refusal log lines (default: every refusal logged) */
  readonly gate?: LogGate;
}

interface Subscription {
  readonly sid: string;
  readonly path: string;
  readonly subscriber: string;
  readonly callbacks: readonly URL[];
  expiresAt: number;
  seq: number;
  inFlight: boolean;
  pending: Map<string, string | number> | null;
}

export type SubscribeResult =
  | { readonly ok: true; readonly sid: string; readonly timeout: number }
  | { readonly ok: false; readonly status: number; readonly reason: string };

/**
 * GENA subscriptions (UDA 1.1 §4.1) and event delivery (§4.2). Callback URLs must point at the
 * subscribing host itself: otherwise a LAN page could make the gateway send traffic anywhere
 * (CallStranger, CVE-2020-12695). A callback that fails is dropped with its subscription.
 */
export function createGena(opts: GenaOptions) {
  const { log, metrics } = opts;
  const defaultTimeout = opts.defaultTimeout ?? 1800;
  const minTimeout = opts.minTimeout ?? 60;
  const notifyTimeoutMs = opts.notifyTimeoutMs ?? 5000;
  const subs = new Map<string, Subscription>();
  const maxPerSubscriber = Math.min(opts.maxPerSubscriber ?? opts.maxSubscriptions, opts.maxSubscriptions);
  const refusedLog = (key: string, fields: Record<string, unknown>, msg: string) => {
    const n = opts.gate ? opts.gate.pass(key) : 0;
    if (n !== null) log.warn({ ...fields, suppressed: n }, msg);
  };
  const agent = new http.Agent({ keepAlive: false, maxSockets: 16 });
  let closed = false;

  const grant = (asked: number | 'infinite' | null) => (asked === null || asked === 'infinite' ? defaultTimeout : Math.min(defaultTimeout, Math.max(minTimeout, asked)));

  function sweep() {
    const now = opts.now();
    for (const [sid, s] of subs) if (s.expiresAt <= now) { subs.delete(sid); metrics.gena.inc({ kind: 'expired' }); }
  }

  function subscribe(path: string, subscriberAddr: string, callbackHeader: string | undefined, timeoutHeader: string | undefined): SubscribeResult {
    sweep();
    const subscriber = unmapIPv4(subscriberAddr);
    const callbacks = parseCallbackHeader(callbackHeader);
    if (!callbacks) {
      metrics.badInput.inc({ frontend: 'upnp', kind: 'gena_callback' });
      refusedLog(`gena-cb:${subscriber}`, { client: subscriber, callback: (callbackHeader ?? '').slice(0, 200) }, 'gena refused a missing or malformed CALLBACK');
      return { ok: false, status: 412, reason: 'missing or malformed CALLBACK' };
    }
    for (const u of callbacks) {
      const host = u.hostname.replace(/^\[|\]$/g, '');
      if (unmapIPv4(host) !== subscriber) {
        refusedLog(`gena-cb:${subscriber}`, { client: subscriber, callback: u.href }, 'gena refused callback to another host (CallStranger)');
        metrics.badInput.inc({ frontend: 'upnp', kind: 'gena_callback' });
        return { ok: false, status: 412, reason: 'CALLBACK must point to the subscribing host' };
      }
    }
    if (subs.size >= opts.maxSubscriptions) {
      refusedLog(`gena-max:${subscriber}`, { client: subscriber, max: opts.maxSubscriptions }, 'gena refused subscription: limit reached');
      metrics.gena.inc({ kind: 'refused' });
      return { ok: false, status: 503, reason: 'too many subscriptions' };
    }
    let mine = 0;
    for (const s of subs.values()) if (s.subscriber === subscriber) mine++;
    if (mine >= maxPerSubscriber) {
      // one host cannot take every slot from the others
      refusedLog(`gena-client:${subscriber}`, { client: subscriber, max: maxPerSubscriber }, 'gena refused subscription: client limit reached');
      metrics.gena.inc({ kind: 'refused' });
      return { ok: false, status: 503, reason: 'too many subscriptions from this client' };
    }
    const timeout = grant(parseTimeoutHeader(timeoutHeader));
    const sid = `uuid:${randomUUID()}`;
    subs.set(sid, { sid, path, subscriber, callbacks, expiresAt: opts.now() + timeout * 1000, seq: 0, inFlight: false, pending: null });
    metrics.gena.inc({ kind: 'subscribe' });
    log.info({ client: subscriber, path, sid, timeout }, 'gena subscribed');
    return { ok: true, sid, timeout };
  }

  function renew(path: string, sid: string, subscriberAddr: string, timeoutHeader: string | undefined): SubscribeResult {
    sweep();
    const s = subs.get(sid.trim());
    if (!s || s.path !== path || s.subscriber !== unmapIPv4(subscriberAddr)) return { ok: false, status: 412, reason: 'unknown SID' };
    const timeout = grant(parseTimeoutHeader(timeoutHeader));
    s.expiresAt = opts.now() + timeout * 1000;
    metrics.gena.inc({ kind: 'renew' });
    return { ok: true, sid: s.sid, timeout };
  }

  function unsubscribe(path: string, sid: string, subscriberAddr: string): boolean {
    const s = subs.get(sid.trim());
    if (!s || s.path !== path || s.subscriber !== unmapIPv4(subscriberAddr)) return false;
    subs.delete(s.sid);
    metrics.gena.inc({ kind: 'unsubscribe' });
    log.info({ client: s.subscriber, sid: s.sid }, 'gena unsubscribed');
    return true;
  }

  function post(s: Subscription, url: URL, body: string, seq: number): Promise<boolean> {
    return new Promise((resolve) => {
      const req = http.request({
        agent, method: 'NOTIFY', host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port || 80, path: `${url.pathname}${url.search}`,
        headers: {
          HOST: url.host, 'CONTENT-TYPE': 'text/xml; charset="utf-8"', 'CONTENT-LENGTH': Buffer.byteLength(body),
          NT: 'upnp:event', NTS: 'upnp:propchange', SID: s.sid, SEQ: String(seq),
        },
        timeout: notifyTimeoutMs,
      }, (res) => {
        res.resume();
        resolve((res.statusCode ?? 500) < 300);
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', () => resolve(false));
      req.end(body);
    });
  }

  async function deliver(s: Subscription, vars: Map<string, string | number>) {
    s.inFlight = true;
    const seq = s.seq;
    // SEQ wraps to 1, never back to 0 (UDA 1.1 §4.2.1)
    s.seq = s.seq >= 0xffffffff ? 1 : s.seq + 1;
    const body = encodePropertySet([...vars]);
    let delivered = false;
    for (const url of s.callbacks) {
      if (closed) break;
      if (await post(s, url, body, seq)) { delivered = true; break; }
    }
    s.inFlight = false;
    if (!delivered) {
      if (subs.delete(s.sid)) {
        metrics.gena.inc({ kind: 'dropped' });
        log.info({ client: s.subscriber, sid: s.sid }, 'gena dropped subscription: callback failed');
      }
      return;
    }
    metrics.gena.inc({ kind: 'notify' });
    if (s.pending && subs.has(s.sid) && !closed) {
      const next = s.pending;
      s.pending = null;
      void deliver(s, next);
    }
  }

  function enqueue(s: Subscription, vars: EventVars) {
    if (s.inFlight) {
      s.pending ??= new Map();
      for (const [k, v] of vars) s.pending.set(k, v);
      return;
    }
    void deliver(s, new Map(vars));
  }

  /** the initial event with every evented variable (UDA 1.1 §4.2.1): call after the SUBSCRIBE response went out */
  function sendInitial(sid: string) {
    const s = subs.get(sid);
    if (s && !closed) enqueue(s, opts.stateOf(s.path));
  }

  /** variables of an event path changed */
  function changed(path: string, vars: EventVars) {
    if (closed || vars.length === 0) return;
    sweep();
    // a subscription whose initial event has not started yet will carry the new values anyway
    for (const s of subs.values()) if (s.path === path && s.seq > 0) enqueue(s, vars);
  }

  function close() {
    closed = true;
    subs.clear();
    agent.destroy();
  }

  return { subscribe, renew, unsubscribe, sendInitial, changed, close, count: () => { sweep(); return subs.size; } };
}
export type Gena = ReturnType<typeof createGena>;
