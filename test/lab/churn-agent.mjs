// A LAN client for the crash and fault suites, run inside a lab namespace:
//   ip netns exec NS node churn-agent.mjs LABEL SELF_ADDRESS GATEWAY_ADDRESS
// Speaks PCP MAP (RFC 6887, hand-encoded here so the test does not trust portd's own codec) and
// UPnP SOAP (AddPortMapping / DeletePortMapping / GetExternalIPAddress) and GENA SUBSCRIBE, either one
// request at a time or as a random churn. Every answer is recorded as an event with wall-clock times
// so the test knows exactly what clients were told. JSON commands on stdin, one JSON reply per line.
// Every wait is bounded.
import dgram from 'node:dgram';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { serve } from './agent-serve.mjs';

const [label = 'churn', self = '0.0.0.0', gw = '192.168.77.1'] = process.argv.slice(2);
const PCP_PORT = 5351;
const UPNP_PORT = 5000;
const CONTROL = '/igd1/ctl/IPConn';
const EVENTS = '/igd1/evt/IPConn';
const SERVICE = 'urn:schemas-upnp-org:service:WANIPConnection:1';

const nonces = new Map();
const events = [];

// ---------- PCP ----------
function v4mapped(a) {
  const b = Buffer.alloc(16);
  b[10] = 0xff;
  b[11] = 0xff;
  a.split('.').forEach((o, i) => {
    b[12 + i] = Number(o);
  });
  return b;
}

function pcpMapPacket(proto, internalPort, suggestedPort, lifetime, nonce) {
  const b = Buffer.alloc(60);
  b[0] = 2;
  b[1] = 1; // version 2, MAP request
  b.writeUInt32BE(lifetime, 4);
  v4mapped(self).copy(b, 8); // client address = our source address
  nonce.copy(b, 24);
  b[36] = proto === 'tcp' ? 6 : 17;
  b.writeUInt16BE(internalPort, 40);
  b.writeUInt16BE(suggestedPort, 42);
  v4mapped('0.0.0.0').copy(b, 44);
  return b;
}

/** one PCP MAP; lifetime 0 deletes. Resolves {outcome:'ack'|'refused'|'noanswer', ...} */
function pcpMap({ proto, internalPort, suggestedPort = 0, lifetime, timeoutMs = 800 }) {
  const key = `pcp/${proto}/${internalPort}`;
  let nonce = nonces.get(key);
  if (!nonce) {
    nonce = randomBytes(12);
    nonces.set(key, nonce);
  }
  const sentAt = Date.now();
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      try {
        s.close();
      } catch {
        /* closed */
      }
      const ev = {
        kind: 'pcp',
        key,
        proto,
        internalPort,
        action: lifetime === 0 ? 'del' : 'map',
        sentAt,
        at: Date.now(),
        ...r,
      };
      events.push(ev);
      resolve(ev);
    };
    const t = setTimeout(() => finish({ outcome: 'noanswer' }), timeoutMs);
    s.on('error', (e) => finish({ outcome: 'noanswer', error: e.message }));
    s.on('message', (m) => {
      if (m.length < 60 || m[0] !== 2 || m[1] !== 0x81 || !m.subarray(24, 36).equals(nonce)) return;
      const code = m[3];
      const granted = m.readUInt32BE(4);
      const epoch = m.readUInt32BE(8);
      const extPort = m.readUInt16BE(42);
      const extAddr = [...m.subarray(56, 60)].join('.');
      finish(
        code === 0
          ? { outcome: 'ack', code, lifetime: granted, epoch, extPort, extAddr }
          : { outcome: 'refused', code, lifetime: granted, epoch },
      );
    });
    s.bind(0, self, () =>
      s.send(pcpMapPacket(proto, internalPort, suggestedPort, lifetime, nonce), PCP_PORT, gw, (err) => {
        if (err) finish({ outcome: 'noanswer', error: err.message });
      }),
    );
  });
}

// ---------- UPnP ----------
function soap(action, args, timeoutMs = 2000) {
  const body =
    '<?xml version="1.0"?>\r\n<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
    `s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:${action} xmlns:u="${SERVICE}">` +
    Object.entries(args)
      .map(([k, v]) => `<${k}>${v}</${k}>`)
      .join('') +
    `</u:${action}></s:Body></s:Envelope>\r\n`;
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: gw,
        port: UPNP_PORT,
        path: CONTROL,
        method: 'POST',
        localAddress: self,
        agent: false,
        timeout: timeoutMs,
        headers: {
          'Content-Type': 'text/xml; charset="utf-8"',
          SOAPAction: `"${SERVICE}#${action}"`,
          Connection: 'close',
          'Content-Length': Buffer.byteLength(body),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => {
          text += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        res.on('error', (e) => resolve({ status: 0, body: '', error: e.message }));
      },
    );
    const t = setTimeout(() => {
      req.destroy(new Error('timeout'));
    }, timeoutMs);
    req.on('close', () => clearTimeout(t));
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ status: 0, body: '', error: e.message }));
    req.end(body);
  });
}

function upnpErrorCode(body) {
  const m = /<errorCode>(\d+)<\/errorCode>/.exec(body);
  return m ? Number(m[1]) : null;
}

async function upnpAdd({ proto, extPort, internalPort, duration }) {
  const key = `upnp/${proto}/${extPort}`;
  const sentAt = Date.now();
  const r = await soap('AddPortMapping', {
    NewRemoteHost: '',
    NewExternalPort: extPort,
    NewProtocol: proto.toUpperCase(),
    NewInternalPort: internalPort,
    NewInternalClient: self,
    NewEnabled: 1,
    NewPortMappingDescription: `churn ${label}`,
    NewLeaseDuration: duration,
  });
  const ev = {
    kind: 'upnp',
    key,
    proto,
    extPort,
    internalPort,
    action: 'map',
    sentAt,
    at: Date.now(),
    lifetime: duration,
    ...(r.status === 200
      ? { outcome: 'ack' }
      : r.status === 0
        ? { outcome: 'noanswer', error: r.error }
        : { outcome: 'refused', code: upnpErrorCode(r.body), http: r.status }),
  };
  events.push(ev);
  return ev;
}

async function upnpDel({ proto, extPort }) {
  const key = `upnp/${proto}/${extPort}`;
  const sentAt = Date.now();
  const r = await soap('DeletePortMapping', {
    NewRemoteHost: '',
    NewExternalPort: extPort,
    NewProtocol: proto.toUpperCase(),
  });
  const code = upnpErrorCode(r.body);
  // 714 NoSuchEntryInArray: it is gone either way, which is what the client wanted
  const ok = r.status === 200 || code === 714;
  const ev = {
    kind: 'upnp',
    key,
    proto,
    extPort,
    action: 'del',
    sentAt,
    at: Date.now(),
    ...(ok
      ? { outcome: 'ack', code }
      : r.status === 0
        ? { outcome: 'noanswer', error: r.error }
        : { outcome: 'refused', code, http: r.status }),
  };
  events.push(ev);
  return ev;
}

// ---------- churn ----------
let churn = null;

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function startChurn(msg) {
  if (churn) return { ok: false, error: 'already churning' };
  const rand = rng(msg.seed ?? 1);
  const pick = (arr) => arr[Math.floor(rand() * arr.length)];
  const keys = [];
  for (const proto of ['tcp', 'udp']) {
    for (const p of msg.pcpPorts ?? []) keys.push({ kind: 'pcp', proto, port: p });
    for (const p of msg.upnpPorts ?? []) keys.push({ kind: 'upnp', proto, port: p });
  }
  const held = new Set();
  const busy = new Set();
  const shortLifetimes = msg.shortLifetimes ?? [2, 3, 4];
  const longLifetimes = msg.longLifetimes ?? [60, 300];
  const state = { stop: false, loops: [], ops: 0 };
  async function loop() {
    while (!state.stop) {
      const free = keys.filter((k) => !busy.has(`${k.kind}/${k.proto}/${k.port}`));
      if (free.length === 0) {
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      const k = pick(free);
      const id = `${k.kind}/${k.proto}/${k.port}`;
      busy.add(id);
      const del = held.has(id) && rand() < 0.35;
      const lifetime = rand() < 0.3 ? pick(shortLifetimes) : pick(longLifetimes);
      let ev;
      try {
        if (k.kind === 'pcp')
          ev = await pcpMap({
            proto: k.proto,
            internalPort: k.port,
            suggestedPort: k.port + (msg.pcpExtOffset ?? 1000),
            lifetime: del ? 0 : lifetime,
          });
        else
          ev = del
            ? await upnpDel({ proto: k.proto, extPort: k.port })
            : await upnpAdd({ proto: k.proto, extPort: k.port, internalPort: k.port, duration: lifetime });
      } finally {
        busy.delete(id);
      }
      state.ops++;
      if (ev.outcome === 'ack') {
        if (ev.action === 'del') held.delete(id);
        else held.add(id);
      }
      if (ev.outcome === 'noanswer')
        await new Promise((r) => setTimeout(r, 50)); // portd is down: do not spin
      else if (msg.gapMs) await new Promise((r) => setTimeout(r, Math.floor(rand() * msg.gapMs)));
    }
  }
  for (let i = 0; i < (msg.concurrency ?? 2); i++) state.loops.push(loop());
  churn = state;
  return { ok: true };
}

async function pauseChurn() {
  if (!churn) return { ok: true, ops: 0, events: events.splice(0) };
  churn.stop = true;
  await Promise.all(churn.loops);
  const ops = churn.ops;
  churn = null;
  return { ok: true, ops, events: events.splice(0) };
}

// ---------- PCP announcements and GENA notifications, collected for a while ----------
function listenAnnounce() {
  return new Promise((resolve) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    const got = [];
    s.on('message', (m, r) => {
      if (m[0] === 2 && m[1] === 0x80)
        got.push({
          from: r.address,
          version: 2,
          opcode: 'ANNOUNCE',
          result: m[3],
          epoch: m.readUInt32BE(8),
          at: Date.now(),
        });
      else if (m[0] === 0 && m[1] === 128 && m.length >= 12)
        got.push({
          from: r.address,
          version: 0,
          opcode: 'EXTERNAL_ADDRESS',
          result: m.readUInt16BE(2),
          epoch: m.readUInt32BE(4),
          address: [...m.subarray(8, 12)].join('.'),
          at: Date.now(),
        });
    });
    s.on('error', (e) => resolve({ ok: false, error: e.message }));
    s.bind(5350, '0.0.0.0', () => {
      try {
        s.addMembership('224.0.0.1', self);
      } catch {
        /* all-hosts is joined anyway */
      }
      resolve({ ok: true });
      announceSock = { s, got };
    });
  });
}
let announceSock = null;

let genaServer = null;
const notifications = [];
function genaListen(msg) {
  return new Promise((resolve) => {
    genaServer = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => {
        body += d.toString();
      });
      req.on('end', () => {
        notifications.push({ at: Date.now(), seq: req.headers['seq'], sid: req.headers['sid'], body });
        res.writeHead(200);
        res.end();
      });
    });
    genaServer.on('error', (e) => resolve({ ok: false, error: e.message }));
    genaServer.listen(msg.port, self, () => resolve({ ok: true }));
  });
}
function subscribe(msg) {
  return new Promise((resolve) => {
    const req = http.request(
      {
        host: gw,
        port: UPNP_PORT,
        path: msg.path ?? EVENTS,
        method: 'SUBSCRIBE',
        localAddress: self,
        agent: false,
        headers: { CALLBACK: `<http://${self}:${msg.port}/>`, NT: 'upnp:event', TIMEOUT: 'Second-300' },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ ok: res.statusCode === 200, status: res.statusCode, sid: res.headers['sid'] }));
      },
    );
    req.setTimeout(3000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ ok: false, error: e.message }));
    req.end();
  });
}

const ops = {
  ping: async () => ({ ok: true, label }),
  pcp: async (m) => ({ ok: true, ev: await pcpMap(m) }),
  upnpAdd: async (m) => ({ ok: true, ev: await upnpAdd(m) }),
  upnpDel: async (m) => ({ ok: true, ev: await upnpDel(m) }),
  soap: async (m) => {
    const r = await soap(m.action, m.args ?? {}, m.timeoutMs ?? 2000);
    return { ok: r.status === 200, status: r.status, body: r.body, error: r.error };
  },
  churn: async (m) => startChurn(m),
  pause: async () => pauseChurn(),
  drain: async () => ({ ok: true, events: events.splice(0) }),
  listenAnnounce: async () => listenAnnounce(),
  announcements: async () => ({ ok: true, got: announceSock ? announceSock.got.splice(0) : [] }),
  genaListen: async (m) => genaListen(m),
  subscribe: async (m) => subscribe(m),
  notifications: async () => ({ ok: true, got: notifications.splice(0) }),
};

serve(ops);
