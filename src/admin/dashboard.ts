/**
 * The dashboard: one page, vanilla JS, no build step. Served as strings so `tsc` output
 * needs no asset copying. The script is a separate URL so the CSP can forbid inline scripts.
 * Everything from the API is put into the page with textContent, never as HTML.
 */

export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>portd</title>
<style>
  :root { --bg:#f6f7f9; --fg:#1d2330; --muted:#667085; --line:#e3e6eb; --card:#fff; --accent:#2f6fed; --bad:#c0392b;
    --upnp:#2f6fed; --pcp:#0f9d58; --natpmp:#00897b; --trigger:#e67e22; --static:#7e57c2; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
    background:var(--bg); color:var(--fg); }
  header { background:#1d2330; color:#fff; padding:10px 16px; display:flex; flex-wrap:wrap; gap:6px 18px;
    align-items:baseline; }
  header h1 { font-size:18px; margin:0 8px 0 0; }
  header .kv { font-size:13px; color:#cfd6e4; } header .kv b { color:#fff; font-weight:600; }
  #live { font-size:12px; padding:1px 8px; border-radius:10px; background:#555; }
  #live.on { background:#0f9d58; } #live.off { background:var(--bad); }
  main { padding:12px 16px; max-width:1280px; margin:0 auto; }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px; margin-bottom:14px; }
  h2 { font-size:15px; margin:0 0 10px; }
  .counts span { display:inline-block; margin:0 10px 4px 0; }
  .chip { display:inline-block; padding:1px 8px; border-radius:10px; color:#fff; font-size:12px; font-weight:600; }
  .up-active { background:#2e7d32; } .up-pending { background:#b7791f; } .up-failed { background:#c62828; }
  .src-upnp { background:var(--upnp); } .src-pcp { background:var(--pcp); } .src-natpmp { background:var(--natpmp); }
  .src-trigger { background:var(--trigger); } .src-static { background:var(--static); }
  tr.row-upnp td:first-child { border-left:4px solid var(--upnp); }
  tr.row-pcp td:first-child { border-left:4px solid var(--pcp); }
  tr.row-natpmp td:first-child { border-left:4px solid var(--natpmp); }
  tr.row-trigger td:first-child { border-left:4px solid var(--trigger); }
  tr.row-static td:first-child { border-left:4px solid var(--static); }
  .toolbar { display:flex; flex-wrap:wrap; gap:8px; margin-bottom:8px; }
  #filter { flex:1; min-width:200px; max-width:480px; }
  input, select, button { font:inherit; padding:6px 8px; border:1px solid #c7ccd6; border-radius:6px; background:#fff; }
  button { cursor:pointer; background:var(--accent); color:#fff; border-color:var(--accent); }
  button.revoke { background:#fff; color:var(--bad); border-color:var(--bad); padding:3px 10px; }
  table { width:100%; border-collapse:collapse; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { font-size:12px; color:var(--muted); font-weight:600; text-transform:uppercase; }
  td.mono { font-family:ui-monospace, SFMono-Regular, Menlo, monospace; font-size:13px; }
  .muted { color:var(--muted); } .err { color:var(--bad); } .ok { color:#0f9d58; }
  #empty { padding:12px 8px; }
  form.grid { display:grid; grid-template-columns:repeat(auto-fill, minmax(150px, 1fr)); gap:8px; align-items:end; }
  form.grid label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); gap:3px; }
  #login { max-width:420px; margin:40px auto; }
  #login form { display:flex; gap:8px; } #login input { flex:1; }
  [hidden] { display:none !important; }
  @media (max-width: 700px) {
    header { padding:8px 10px; } main { padding:8px; }
    table, thead, tbody, tr, td { display:block; width:100%; }
    thead { display:none; }
    tr { border:1px solid var(--line); border-radius:8px; margin-bottom:8px; padding:4px 0; }
    td { border:0; padding:3px 10px; display:flex; justify-content:space-between; gap:10px; }
    td::before { content:attr(data-label); color:var(--muted); font-size:12px; }
    tr[class^="row-"] td:first-child { border-left:0; }
  }
</style>
</head>
<body>
<header>
  <h1>portd</h1>
  <span id="live">connecting</span>
  <span class="kv">version <b id="s-version">–</b></span>
  <span class="kv">external <b id="s-external">–</b></span>
  <span class="kv">up <b id="s-uptime">–</b></span>
  <span class="kv">dataplane <b id="s-dataplane">–</b></span>
  <span class="kv">PCP epoch <b id="s-epoch">–</b></span>
  <span class="kv">double NAT <b id="s-doublenat">–</b></span>
</header>
<div id="login" hidden>
  <section>
    <h2>Admin token</h2>
    <p class="muted">Changes need the admin token (and everything does when portd listens off loopback): enter it
      from the config, PORTD_ADMIN_TOKEN or the admin-token file in the state directory.</p>
    <form id="login-form"><input id="login-token" type="password" autocomplete="current-password" placeholder="token"
      required><button type="submit">Log in</button><button type="button" id="login-cancel"
      hidden>Cancel</button></form>
    <p id="login-msg" class="err"></p>
  </section>
</div>
<main id="app" hidden>
  <section>
    <h2>Leases <span class="muted" id="lease-count"></span></h2>
    <div class="counts" id="counts"></div>
    <div class="toolbar">
      <input id="filter" type="search" placeholder="filter: address, port, description, source…" aria-label="filter">
      <select id="state" aria-label="state"><option value="active">active</option><option value="ended">ended</option>
        <option value="all">all</option></select>
      <select id="family" aria-label="address family"><option value="">IPv4 + IPv6</option>
        <option value="4">IPv4 mappings</option><option value="6">IPv6 pinholes</option></select>
    </div>
    <table id="leases">
      <thead><tr><th>Source</th><th>Protocol</th><th>External</th><th>Internal</th><th>Owner</th><th>Remote</th>
        <th>Description</th><th>Time left</th><th></th></tr></thead>
      <tbody id="lease-rows"></tbody>
    </table>
    <div id="empty" class="muted" hidden>No leases.</div>
    <p id="table-msg" class="err"></p>
  </section>
  <section>
    <h2>Add a static forward</h2>
    <form id="forward-form" class="grid">
      <label>Protocol<select name="protocol"><option>tcp</option><option>udp</option></select></label>
      <label>External port(s)<input name="ports" placeholder="8080 or 6000-6010" required></label>
      <label>Internal address<input name="internalAddress" placeholder="192.168.1.20 (IPv6: a pinhole)" required>
        </label>
      <label>Internal port<input name="internalPort" placeholder="same as external" inputmode="numeric"></label>
      <label>Remote host<input name="remoteAddress" placeholder="anyone"></label>
      <label>Lifetime (s)<input name="lifetime" placeholder="no expiry" inputmode="numeric"></label>
      <label>Description<input name="description" maxlength="200"></label>
      <button type="submit" id="forward-submit">Add forward</button>
    </form>
    <p id="forward-msg"></p>
  </section>
  <section id="triggers">
    <h2>Port triggers</h2>
    <div id="triggers-body" class="muted">Loading…</div>
    <p id="triggers-msg"></p>
  </section>
  <section id="wan-box">
    <h2>WAN</h2>
    <div id="wan" class="muted"></div>
  </section>
  <section>
    <h2>Front-ends</h2>
    <div id="frontends" class="muted"></div>
  </section>
</main>
<script src="/dashboard.js"></script>
</body>
</html>
`;

export const DASHBOARD_JS = `'use strict';
(function () {
  var API = '/api/v1';
  var leases = new Map();
  var status = null;
  var skew = 0;          // server clock minus ours, ms
  var es = null;
  var statusTimer = null;

  function $(id) { return document.getElementById(id); }
  function el(tag, props, children) {
    var e = document.createElement(tag);
    if (props) for (var k in props) {
      if (k === 'text') e.textContent = props[k];
      else if (k === 'cls') e.className = props[k];
      else e.setAttribute(k, props[k]);
    }
    (children || []).forEach(function (c) { e.appendChild(c); });
    return e;
  }

  function api(method, path, body) {
    var init = { method: method, credentials: 'same-origin', headers: {} };
    if (body !== undefined) { init.headers['content-type'] = 'application/json'; init.body = JSON.stringify(body); }
    return fetch(path, init).then(function (r) {
      var date = r.headers.get('date');
      if (date) { var d = Date.parse(date); if (!isNaN(d)) skew = d - Date.now(); }
      if (r.status === 401 && path !== API + '/login') {
        // a change refused for want of a session (on loopback, reads need none): ask for the token, then send it again
        if (method !== 'GET') return new Promise(function (resolve, reject) {
          pending.push({ retry: function () { api(method, path, body).then(resolve, reject); }, reject: reject });
          showLogin();
        });
        showLogin(); throw new Error('unauthorized');
      }
      return r.text().then(function (t) {
        var data = null; try { data = t ? JSON.parse(t) : null; } catch (e) { data = { message: t }; }
        if (!r.ok) {
          var err = new Error((data && data.message) || ('HTTP ' + r.status));
          err.status = r.status; err.data = data; throw err;
        }
        return data;
      });
    });
  }

  var pending = [];      // changes waiting for a login
  function showLogin() {
    var readsOpen = status && status.auth && !status.auth.required && pending.length > 0;
    if (es && !readsOpen) { es.close(); es = null; setLive('off', 'logged out'); }
    $('app').hidden = true; $('login').hidden = false;
    $('login-cancel').hidden = !readsOpen;
    $('login-token').focus();
  }
  $('login-cancel').addEventListener('click', function () {
    var p = pending; pending = [];
    p.forEach(function (x) { x.reject(new Error('not logged in: the change was not made')); });
    $('login').hidden = true; $('app').hidden = false;
  });

  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    $('login-msg').textContent = '';
    api('POST', API + '/login', { token: $('login-token').value }).then(function () {
      $('login-token').value = '';
      var p = pending; pending = [];
      start().then(function () { p.forEach(function (x) { x.retry(); }); });
    }).catch(function (e) { $('login-msg').textContent = e.status === 401 ? 'Token not accepted.' : e.message; });
  });

  function setLive(cls, text) { var l = $('live'); l.className = cls; l.textContent = text; }

  function fmtDuration(s) {
    if (s < 0) s = 0;
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var sec = Math.floor(s % 60);
    if (d) return d + 'd ' + h + 'h';
    if (h) return h + 'h ' + m + 'm';
    if (m) return m + 'm ' + (sec < 10 ? '0' : '') + sec + 's';
    return sec + 's';
  }
  function serverNow() { return Date.now() + skew; }
  function timeLeft(l) {
    if (l.state !== 'active') return l.endReason || 'ended';
    if (l.expiresAt === null) return 'no expiry';
    return fmtDuration((l.expiresAt - serverNow()) / 1000);
  }
  function ports(l) {
    return l.externalPortEnd !== l.externalPort ? l.externalPort + '-' + l.externalPortEnd : String(l.externalPort);
  }
  // an IPv6 endpoint in brackets, so its port is not read as one more group
  function ep(addr, port) { return addr.indexOf(':') >= 0 ? '[' + addr + ']:' + port : addr + ':' + port; }
  function internalOf(l) {
    var end = l.externalPortEnd !== l.externalPort ? '-' + (l.internalPort + l.externalPortEnd - l.externalPort) : '';
    return ep(l.internalAddress, l.internalPort + end);
  }

  // ---- status ----
  function loadStatus() {
    return api('GET', API + '/status').then(function (s) {
      status = s; status.loadedAt = Date.now();
      $('s-version').textContent = s.version;
      $('s-external').textContent = s.externalAddress;
      $('s-dataplane').textContent = s.dataplane.driver + (s.dataplane.ok ? ' ok' : ' FAILING');
      $('s-dataplane').className = s.dataplane.ok ? '' : 'err';
      $('s-epoch').textContent = s.pcpEpoch === null ? 'off' : String(s.pcpEpoch);
      var counts = $('counts'); counts.textContent = '';
      Object.keys(s.leases.bySource).forEach(function (src) {
        counts.appendChild(el('span', null, [
          el('span', { cls: 'chip src-' + src, text: src }),
          document.createTextNode(' ' + s.leases.bySource[src]),
        ]));
      });
      var fe = $('frontends'); fe.textContent = '';
      if (!s.frontends.length) fe.textContent = 'none listening';
      s.frontends.forEach(function (f) {
        fe.appendChild(el('div', { text: f.name + ': ' + (f.listening.join(', ') || 'off') }));
      });
      s.upnpDescriptionUrls.forEach(function (u) { fe.appendChild(el('div', { text: 'UPnP description: ' + u })); });
      showWan(s.wan);
      tickUptime();
    });
  }
  // the WAN block (docs/double-nat.md): address and kind, what STUN saw, double NAT and why, what clients are told
  function showWan(w) {
    var box = $('wan'); box.textContent = '';
    var dn = $('s-doublenat');
    if (!w) { dn.textContent = '–'; box.textContent = 'not reported'; return; }
    dn.textContent = w.doubleNat; dn.className = w.doubleNat === 'yes' ? 'err' : '';
    var line = function (k, v, cls) {
      box.appendChild(el('div', null, [el('span', { cls: 'muted', text: k + ': ' }),
        el('span', { cls: cls || '', text: v })]));
    };
    line('address', (w.address || 'none') + (w.kind ? ' (' + w.kind + (w.block ? ', ' + w.block : '') + ')' : ''));
    if (!w.stun.enabled) line('STUN', 'off (no stun.servers configured)');
    else if (w.stun.publicAddress)
      line('STUN', w.stun.publicAddress + ':' + w.stun.publicPort + ' seen by ' + w.stun.server + ' at ' +
        new Date(w.stun.learnedAt).toLocaleString());
    else line('STUN', 'no answer' + (w.stun.lastError ? ': ' + w.stun.lastError : ''), 'err');
    if (w.upstreamAddress) line('upstream', w.upstreamAddress);
    line('double NAT', w.doubleNat + ': ' + w.why, w.doubleNat === 'yes' ? 'err' : '');
    line('clients are told', w.reportedAddress + ' (' + w.reportedBecause + ')');
  }
  function scheduleStatus() {
    if (statusTimer) return;
    statusTimer = setTimeout(function () { statusTimer = null; loadStatus().catch(function () {}); }, 400);
  }
  function tickUptime() {
    if (status) $('s-uptime').textContent = fmtDuration(status.uptimeSeconds + (Date.now() - status.loadedAt) / 1000);
  }

  // ---- lease table ----
  function matches(l) {
    var f = $('filter').value.trim().toLowerCase();
    var st = $('state').value;
    if (st !== 'all' && l.state !== st) return false;
    var fam = $('family').value;
    if (fam && String(l.family || 4) !== fam) return false;
    if (!f) return true;
    var hay = [l.id, l.source, l.protocol, ep(l.externalAddress, ports(l)), internalOf(l),
      l.family === 6 ? 'ipv6 pinhole' : 'ipv4', l.owner, l.remoteAddress || '', l.description, l.rule || '']
      .join(' ').toLowerCase();
    return f.split(/\\s+/).every(function (w) { return hay.indexOf(w) >= 0; });
  }

  function row(l) {
    var tr = el('tr', { 'data-id': l.id, 'data-source': l.source, 'data-family': String(l.family || 4),
      cls: 'row-' + l.source });
    function td(label, text, cls) {
      var c = el('td', { 'data-label': label, text: text });
      if (cls) c.className = cls;
      tr.appendChild(c);
      return c;
    }
    var s = td('Source', ''); s.appendChild(el('span', { cls: 'chip src-' + l.source, text: l.source }));
    if (l.family === 6) s.appendChild(el('span', { cls: 'chip', text: 'IPv6', title: 'pinhole: no translation' }));
    td('Protocol', l.protocol);
    var ext = td('External', ep(l.externalAddress, ports(l)), 'mono');
    // behind another NAT: the public endpoint the upstream gave, or its state (docs/double-nat.md)
    if (l.upstream) {
      var u = l.upstream;
      ext.appendChild(document.createTextNode(' '));
      ext.appendChild(el('span', { cls: 'chip up-' + u.state, 'data-upstream': u.state,
        text: u.state === 'active'
          ? 'public ' + ep(u.externalAddress || '?', String(u.externalPort))
          : 'upstream ' + u.state,
        title: u.protocol + ' via ' + u.server + (u.detail ? ': ' + u.detail : '') }));
    }
    td('Internal', internalOf(l), 'mono');
    td('Owner', l.owner, 'mono');
    td('Remote', l.remoteAddress || 'any', 'mono');
    td('Description', l.description || (l.rule ? 'rule ' + l.rule : ''));
    var left = td('Time left', timeLeft(l)); left.setAttribute('data-left', '1');
    var act = td('', '');
    if (l.state === 'active' && !l.readOnly) {
      var b = el('button',
        { cls: 'revoke', type: 'button', text: 'Revoke', 'data-revoke': l.id, title: 'close this port now' });
      b.addEventListener('click', function () { revoke(l); });
      act.appendChild(b);
    } else if (l.readOnly) act.appendChild(el('span', { cls: 'muted', text: 'config' }));
    return tr;
  }

  function render() {
    var body = $('lease-rows');
    var list = Array.from(leases.values()).filter(matches);
    list.sort(function (a, b) { return a.externalPort - b.externalPort || a.protocol.localeCompare(b.protocol); });
    body.textContent = '';
    list.forEach(function (l) { body.appendChild(row(l)); });
    $('empty').hidden = list.length > 0;
    $('lease-count').textContent = '(' + list.length + (list.length !== leases.size ? ' of ' + leases.size : '') + ')';
  }

  function tickLeft() {
    var rows = $('lease-rows').children;
    for (var i = 0; i < rows.length; i++) {
      var l = leases.get(rows[i].getAttribute('data-id'));
      var c = rows[i].querySelector('[data-left]');
      if (l && c) c.textContent = timeLeft(l);
    }
    tickUptime();
  }

  function loadLeases() {
    var st = $('state').value;
    return api('GET', API + '/leases?limit=1000&state=' + encodeURIComponent(st)).then(function (r) {
      leases.clear();
      r.leases.forEach(function (l) { leases.set(l.id, l); });
      $('table-msg').textContent =
        r.total > r.leases.length ? 'Showing the first ' + r.leases.length + ' of ' + r.total + ' leases.' : '';
      render();
    });
  }

  function revoke(l) {
    var what = l.protocol + ' ' + ports(l) + ' → ' + internalOf(l) + ' (' + l.source + ')';
    if (!window.confirm('Revoke ' + what + '?')) return;
    api('DELETE', API + '/leases/' + encodeURIComponent(l.id)).then(function (r) {
      if ($('state').value === 'active') leases.delete(l.id); else leases.set(l.id, r.lease);
      render(); scheduleStatus();
    }).catch(function (e) { $('table-msg').textContent = 'Revoke failed: ' + e.message; });
  }

  // ---- events ----
  function connect() {
    if (es) es.close();
    es = new EventSource(API + '/events');
    es.onopen = function () { setLive('on', 'live'); loadLeases().catch(function () {}); };
    es.onerror = function () {
      setLive('off', 'reconnecting');
      // EventSource hides the status: ask the API whether we are still logged in
      loadStatus().catch(function () {});
    };
    ['granted', 'renewed'].forEach(function (t) {
      es.addEventListener(t, function (m) {
        var e = JSON.parse(m.data);
        if (e.lease && $('state').value !== 'ended') { leases.set(e.lease.id, e.lease); render(); }
        if (t === 'granted') scheduleStatus();
        if (e.source === 'trigger') scheduleTriggers();
      });
    });
    ['released', 'expired', 'revoked', 'replaced'].forEach(function (t) {
      es.addEventListener(t, function (m) {
        var e = JSON.parse(m.data);
        var st = $('state').value;
        if (st === 'active') leases.delete(e.leaseId);
        else if (e.lease) leases.set(e.lease.id, e.lease);
        render(); scheduleStatus();
        if (e.source === 'trigger') scheduleTriggers();
      });
    });
    es.addEventListener('refused', function (m) {
      var e = JSON.parse(m.data);
      if (e.source === 'trigger') scheduleTriggers();
    });
  }

  // ---- add a static forward ----
  $('forward-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var f = ev.target, msg = $('forward-msg');
    msg.className = ''; msg.textContent = '';
    var m = /^\\s*(\\d+)\\s*(?:-\\s*(\\d+))?\\s*$/.exec(f.ports.value);
    if (!m) { msg.className = 'err'; msg.textContent = 'External port: a number or a range like 6000-6010.'; return; }
    var body = { protocol: f.protocol.value, externalPort: Number(m[1]),
      internalAddress: f.internalAddress.value.trim(), description: f.description.value };
    if (m[2]) body.externalPortEnd = Number(m[2]);
    if (f.internalPort.value.trim()) body.internalPort = Number(f.internalPort.value);
    if (f.remoteAddress.value.trim()) body.remoteAddress = f.remoteAddress.value.trim();
    if (f.lifetime.value.trim()) body.lifetime = Number(f.lifetime.value);
    api('POST', API + '/leases', body).then(function (r) {
      leases.set(r.lease.id, r.lease); render(); scheduleStatus();
      msg.className = 'ok';
      msg.textContent = (r.created ? 'Added ' : 'Renewed ') + r.lease.protocol + ' ' + ports(r.lease) + ' → ' +
        internalOf(r.lease) + '.';
      f.reset();
    }).catch(function (e) { msg.className = 'err'; msg.textContent = e.message; });
  });

  $('filter').addEventListener('input', render);
  $('family').addEventListener('change', render);
  $('state').addEventListener('change', function () { loadLeases().catch(function () {}); });

  // ---- triggers (the panel fills in when the API offers /api/v1/triggers) ----
  var triggerTimer = null;
  function scheduleTriggers() {
    if (triggerTimer) return;
    triggerTimer = setTimeout(function () { triggerTimer = null; loadTriggers(); }, 300);
  }
  function triggerState(t) {
    if (t.state === 'held')
      return 'held by ' + t.holder + (t.until ? ' until ' + new Date(t.until - skew).toLocaleTimeString() : '');
    if (t.state === 'error') return 'not in force: ' + (t.error || 'invalid');
    return t.state;
  }
  function triggerRow(t) {
    var tr = el('tr', { 'data-trigger': t.name, cls: 'row-trigger' });
    function td(label, text, cls) {
      var c = el('td', { 'data-label': label, text: text });
      if (cls) c.className = cls;
      tr.appendChild(c);
      return c;
    }
    var n = td('Rule', t.name + ' ');
    n.appendChild(el('span', { cls: 'muted', text: t.origin === 'config' ? '(config)' : '(api)' }));
    td('Trigger → opens', t.summary, 'mono');
    td('Idle', fmtDuration(t.idleTimeout) + (t.maxLifetime ? ' (max ' + fmtDuration(t.maxLifetime) + ')' : ''));
    var st = td('State', triggerState(t));
    st.setAttribute('data-state', t.state);
    if (t.state === 'error') st.className = 'err';
    td('Fired / renewed / refused', t.counters.fired + ' / ' + t.counters.renewed + ' / ' + t.counters.refused);
    var lr = t.lastRefusal;
    td('Last refusal', lr
      ? lr.host + (lr.holder ? ' (held by ' + lr.holder.source + ' ' + lr.holder.owner + ')' : ' (' + lr.reason + ')')
      : '');
    var act = td('', '');
    if (t.state !== 'error') {
      var f = el('button', { cls: 'revoke', type: 'button', text: 'Fire…', 'data-fire': t.name,
        title: 'open it for a LAN host now, as if the host had sent a packet' });
      f.addEventListener('click', function () {
        var host = window.prompt('Fire ' + t.name + ' for which LAN host?', t.holder || '');
        if (!host) return;
        api('POST', API + '/triggers/' + encodeURIComponent(t.name) + '/fire', { host: host.trim() })
          .then(function () {
            $('triggers-msg').className = 'ok';
            $('triggers-msg').textContent = t.name + ' opened for ' + host + '.';
            loadTriggers();
          })
          .catch(function (e) {
            $('triggers-msg').className = 'err';
            $('triggers-msg').textContent = t.name + ': ' + e.message;
            loadTriggers();
          });
      });
      act.appendChild(f);
    }
    if (!t.readOnly) {
      var d = el('button', { cls: 'revoke', type: 'button', text: 'Delete', 'data-delete-trigger': t.name });
      d.addEventListener('click', function () {
        if (!window.confirm('Delete trigger rule ' + t.name + '? Its opening closes.')) return;
        api('DELETE', API + '/triggers/' + encodeURIComponent(t.name)).then(loadTriggers)
          .catch(function (e) { $('triggers-msg').className = 'err'; $('triggers-msg').textContent = e.message; });
      });
      act.appendChild(d);
    }
    return tr;
  }
  function loadTriggers() {
    var box = $('triggers-body');
    return fetch(API + '/triggers', { credentials: 'same-origin' }).then(function (r) {
      if (r.status === 404) { box.textContent = 'Port triggering is not available in this build.'; return; }
      if (!r.ok) { box.textContent = 'Triggers: HTTP ' + r.status; return; }
      return r.json().then(function (d) {
        var list = Array.isArray(d) ? d : (d.triggers || []);
        box.textContent = '';
        if (!list.length) { box.textContent = 'No trigger rules configured.'; return; }
        box.className = '';
        if (!list[0].summary) {
          // an older API: show the plain fields
          var keys = Object.keys(list[0]).filter(function (k) {
            return typeof list[0][k] !== 'object' || list[0][k] === null;
          });
          var t0 = el('table', { id: 'trigger-table' },
            [el('thead', null, [el('tr', null, keys.map(function (k) { return el('th', { text: k }); }))])]);
          var tb0 = el('tbody');
          list.forEach(function (tr) {
            tb0.appendChild(el('tr', null, keys.map(function (k) {
              return el('td', { 'data-label': k, text: tr[k] === null ? '' : String(tr[k]) });
            })));
          });
          t0.appendChild(tb0); box.appendChild(t0);
          return;
        }
        var cols = ['Rule', 'Trigger → opens', 'Idle', 'State', 'Fired / renewed / refused', 'Last refusal', ''];
        var t = el('table', { id: 'trigger-table' },
          [el('thead', null, [el('tr', null, cols.map(function (k) { return el('th', { text: k }); }))])]);
        var tb = el('tbody');
        list.forEach(function (tr) { tb.appendChild(triggerRow(tr)); });
        t.appendChild(tb); box.appendChild(t);
      });
    }).catch(function () { box.textContent = 'Triggers: unavailable.'; });
  }

  var started = false;
  function start() {
    return loadStatus().then(function () {
      $('login').hidden = true; $('app').hidden = false;
      connect();
      loadTriggers();
      // the WAN block changes without a lease event (STUN, the WAN address): the status is re-read each minute
      if (!started) { started = true; setInterval(tickLeft, 1000); setInterval(scheduleStatus, 60000); }
      return loadLeases();
    }).catch(function (e) {
      if (e.message !== 'unauthorized') {
        setLive('off', 'error');
        $('app').hidden = false;
        $('table-msg').textContent = e.message;
      }
    });
  }
  start();
})();
`;
