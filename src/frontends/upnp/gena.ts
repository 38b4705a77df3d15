import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { Logger } from 'pino';
import { encodePropertySet, parseCallbackHeader, parseTimeoutHeader } from '../../../protocols/upnp/index.js';
import { unmapIPv4 } from '../../common/net.js';
import type { Metrics } from '../../metrics.js';
import type { LogGate } from '../../common/log-gate.js';
import { createPerClientCounter } from '../rate-limit.js';

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
  /** deadline of one NOTIFY delivery, connect to status line, all callback URLs together (default 3000 ms) */
  readonly notifyTimeoutMs?: number;
  /** NOTIFYs outstanding at once, all subscribers together (default 32) */
  readonly maxConcurrentNotifies?: number;
  /** of those, held by subscriptions that have never answered one (default half) */
  readonly maxUnprovenNotifies?: number;
  /** NOTIFYs outstanding at once to one subscriber address (default 4) */
  readonly maxNotifiesPerSubscriber?: number;
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
  /** waiting in the delivery queue */
  queued: boolean;
  /** the initial event has been asked for (after the SUBSCRIBE response) */
  initial: boolean;
  /** has answered a NOTIFY: no longer limited to the unproven share of the slots */
  proven: boolean;
  /** variables to send next, coalesced */
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
  const notifyTimeoutMs = opts.notifyTimeoutMs ?? 3000;
  const subs = new Map<string, Subscription>();
  const maxPerSubscriber = Math.min(opts.maxPerSubscriber ?? opts.maxSubscriptions, opts.maxSubscriptions);
  const refusedLog = (key: string, fields: Record<string, unknown>, msg: string) => {
    const n = opts.gate ? opts.gate.pass(key) : 0;
    if (n !== null) log.warn({ ...fields, suppressed: n }, msg);
  };
  let closed = false;

  const grant = (asked: number | 'infinite' | null) =>
    asked === null || asked === 'infinite' ? defaultTimeout : Math.min(defaultTimeout, Math.max(minTimeout, asked));

  function sweep() {
    const now = opts.now();
    for (const [sid, s] of subs)
      if (s.expiresAt <= now) {
        subs.delete(sid);
        metrics.gena.inc({ kind: 'expired' });
      }
  }

  function subscribe(
    path: string,
    subscriberAddr: string,
    callbackHeader: string | undefined,
    timeoutHeader: string | undefined,
  ): SubscribeResult {
    sweep();
    const subscriber = unmapIPv4(subscriberAddr);
    const callbacks = parseCallbackHeader(callbackHeader);
    if (!callbacks) {
      metrics.badInput.inc({ frontend: 'upnp', kind: 'gena_callback' });
      refusedLog(
        `gena-cb:${subscriber}`,
        { client: subscriber, callback: (callbackHeader ?? '').slice(0, 200) },
        'gena refused a missing or malformed CALLBACK',
      );
      return { ok: false, status: 412, reason: 'missing or malformed CALLBACK' };
    }
    for (const u of callbacks) {
      const host = u.hostname.replace(/^\[|\]$/g, '');
      if (unmapIPv4(host) !== subscriber) {
        refusedLog(
          `gena-cb:${subscriber}`,
          { client: subscriber, callback: u.href },
          'gena refused callback to another host (CallStranger)',
        );
        metrics.badInput.inc({ frontend: 'upnp', kind: 'gena_callback' });
        return { ok: false, status: 412, reason: 'CALLBACK must point to the subscribing host' };
      }
    }
    if (subs.size >= opts.maxSubscriptions) {
      refusedLog(
        `gena-max:${subscriber}`,
        { client: subscriber, max: opts.maxSubscriptions },
        'gena refused subscription: limit reached',
      );
      metrics.gena.inc({ kind: 'refused' });
      return { ok: false, status: 503, reason: 'too many subscriptions' };
    }
    let mine = 0;
    for (const s of subs.values()) if (s.subscriber === subscriber) mine++;
    if (mine >= maxPerSubscriber) {
      // one host cannot take every slot from the others
      refusedLog(
        `gena-client:${subscriber}`,
        { client: subscriber, max: maxPerSubscriber },
        'gena refused subscription: client limit reached',
      );
      metrics.gena.inc({ kind: 'refused' });
      return { ok: false, status: 503, reason: 'too many subscriptions from this client' };
    }
    const timeout = grant(parseTimeoutHeader(timeoutHeader));
    const sid = `uuid:${randomUUID()}`;
    subs.set(sid, {
      sid,
      path,
      subscriber,
      callbacks,
      expiresAt: opts.now() + timeout * 1000,
      seq: 0,
      inFlight: false,
      queued: false,
      initial: false,
      proven: false,
      pending: null,
    });
    metrics.gena.inc({ kind: 'subscribe' });
    log.info({ client: subscriber, path, sid, timeout }, 'gena subscribed');
    return { ok: true, sid, timeout };
  }

  function renew(
    path: string,
    sid: string,
    subscriberAddr: string,
    timeoutHeader: string | undefined,
  ): SubscribeResult {
    sweep();
    const s = subs.get(sid.trim());
    if (!s || s.path !== path || s.subscriber !== unmapIPv4(subscriberAddr))
      return { ok: false, status: 412, reason: 'unknown SID' };
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

  /**
   * Delivery (issue 14): a black-holed callback (a connect that never completes, a server that
   * accepts and never answers, or one that dribbles a byte a second) must not delay anyone else's
   * events. So: one NOTIFY in flight per subscription, its later changes coalesced into the next
   * one; at most `maxPerSubscriber` in flight per subscriber address; a deadline on the whole
   * request, not an idle timeout; no shared agent (a fresh connection each time, as UDA 1.1 §4.2.1
   * expects of a publisher that closes after each NOTIFY); and at most `maxConcurrent` NOTIFYs
   * outstanding in all, of which subscriptions that have not yet answered one (every black hole)
   * may hold only `maxUnproven`. A subscriber that has answered keeps the other slots, so new
   * black holes, however many, leave it room; one that stops answering is dropped at its deadline.
   */
  const maxConcurrent = Math.max(1, opts.maxConcurrentNotifies ?? 32);
  const maxUnproven = Math.max(
    1,
    Math.min(maxConcurrent - 1, opts.maxUnprovenNotifies ?? Math.floor(maxConcurrent / 2)),
  );
  const perHostMax = Math.max(1, opts.maxNotifiesPerSubscriber ?? 4);
  const perHost = createPerClientCounter(perHostMax);
  const queue: Subscription[] = [];
  const active = new Set<http.ClientRequest>();
  let inFlight = 0;
  let unprovenInFlight = 0;

  function post(s: Subscription, url: URL, body: string, seq: number, budgetMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (ok: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(deadline);
        active.delete(req);
        resolve(ok);
      };
      const req = http.request(
        {
          agent: false,
          method: 'NOTIFY',
          host: url.hostname.replace(/^\[|\]$/g, ''),
          port: url.port || 80,
          path: `${url.pathname}${url.search}`,
          headers: {
            HOST: url.host,
            'CONTENT-TYPE': 'text/xml; charset="utf-8"',
            'CONTENT-LENGTH': Buffer.byteLength(body),
            NT: 'upnp:event',
            NTS: 'upnp:propchange',
            SID: s.sid,
            SEQ: String(seq),
            CONNECTION: 'close',
          },
        },
        (res) => {
          res.resume();
          // the status line is the answer: the body (if any) is not waited for
          done((res.statusCode ?? 500) < 300);
          req.destroy();
        },
      );
      // connect and answer together, so neither a stalled connect nor a dribbling answer outlives it
      const deadline = setTimeout(() => {
        req.destroy(new Error('timeout'));
        done(false);
      }, budgetMs);
      active.add(req);
      req.on('error', () => done(false));
      req.end(body);
    });
  }

  function eligible(s: Subscription): boolean {
    if (inFlight >= maxConcurrent) return false;
    if (!s.proven && unprovenInFlight >= maxUnproven) return false;
    return perHost.get(s.subscriber) < perHostMax;
  }

  function pump() {
    for (let i = 0; i < queue.length && inFlight < maxConcurrent; ) {
      const s = queue[i]!;
      if (!subs.has(s.sid) || closed) {
        queue.splice(i, 1);
        s.queued = false;
        continue;
      }
      if (!eligible(s)) {
        i++;
        continue;
      }
      queue.splice(i, 1);
      s.queued = false;
      void deliver(s);
    }
  }

  async function deliver(s: Subscription) {
    const vars = s.pending!;
    s.pending = null;
    s.inFlight = true;
    const proven = s.proven;
    inFlight++;
    if (!proven) unprovenInFlight++;
    perHost.take(s.subscriber);
    const seq = s.seq;
    // SEQ wraps to 1, never back to 0 (UDA 1.1 §4.2.1)
    s.seq = s.seq >= 0xffffffff ? 1 : s.seq + 1;
    const body = encodePropertySet([...vars]);
    const started = performance.now();
    let delivered = false;
    for (const url of s.callbacks) {
      const budget = notifyTimeoutMs - (performance.now() - started);
      if (closed || budget <= 0) break;
      if (await post(s, url, body, seq, budget)) {
        delivered = true;
        break;
      }
    }
    s.inFlight = false;
    inFlight--;
    if (!proven) unprovenInFlight--;
    perHost.give(s.subscriber);
    if (!delivered) {
      if (subs.delete(s.sid)) {
        metrics.gena.inc({ kind: 'dropped' });
        log.info({ client: s.subscriber, sid: s.sid }, 'gena dropped subscription: callback failed');
      }
    } else {
      s.proven = true;
      metrics.gena.inc({ kind: 'notify' });
      if (s.pending && subs.has(s.sid) && !closed) {
        s.queued = true;
        queue.push(s);
      }
    }
    if (!closed) pump();
  }

  function enqueue(s: Subscription, vars: EventVars) {
    s.pending ??= new Map();
    for (const [k, v] of vars) s.pending.set(k, v);
    if (s.inFlight || s.queued) return; // coalesced into the next NOTIFY
    s.queued = true;
    queue.push(s);
    pump();
  }

  /** the initial event with every evented variable (UDA 1.1 §4.2.1): call after the SUBSCRIBE response went out */
  function sendInitial(sid: string) {
    const s = subs.get(sid);
    if (!s || closed) return;
    s.initial = true;
    enqueue(s, opts.stateOf(s.path));
  }

  /** variables of an event path changed */
  function changed(path: string, vars: EventVars) {
    if (closed || vars.length === 0) return;
    sweep();
    // before its initial event is asked for, a subscription has nothing to add to: that event reads the state then
    for (const s of subs.values()) if (s.path === path && s.initial) enqueue(s, vars);
  }

  function close() {
    closed = true;
    subs.clear();
    queue.length = 0;
    for (const r of active) r.destroy();
    active.clear();
  }

  return {
    subscribe,
    renew,
    unsubscribe,
    sendInitial,
    changed,
    close,
    count: () => {
      sweep();
      return subs.size;
    },
  };
}
export type Gena = ReturnType<typeof createGena>;
