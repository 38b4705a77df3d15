/**
 * `npm run lab`: a throw-away namespace lab with portd running on the gateway (nftables driver),
 * for a person to try real clients against. Root only. Prints what to run; Ctrl-C removes
 * everything (namespaces, portd, its table and database).
 *
 *   lanA 192.168.77.11 ─┐                              ┌─ wan 203.0.113.2
 *                       ├─ br0 [gateway: portd] wan0 ──┘
 *   lanB 192.168.77.12 ─┘ 192.168.77.1     203.0.113.1
 *
 * `npm run lab -- --ipv6` adds IPv6 (LAN 2001:db8:77::/64, WAN 2001:db8:113::/64, each LAN host with a
 * stable and a temporary address, the lab's default-deny inbound IPv6 policy) and pcp.ipv6.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ADDR, ADDR6, IF, createLab, exec, hasTool, labAvailable } from '../test/lab/harness.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const STEM = process.env['PORTD_LAB_NAME'] ?? 'pdlab';
const IPV6 = process.argv.includes('--ipv6');

async function main(): Promise<void> {
  const a = labAvailable();
  if (!a.ok) {
    process.stderr.write(
      `npm run lab: ${a.why}\n  run it as root (sudo npm run lab): it creates network namespaces, the host's own ` +
        'network is not touched.\n',
    );
    process.exit(1);
  }
  // a previous run killed hard may have left its namespaces: they are ours by name
  const old = (await exec(null, ['ip', 'netns', 'list'])).stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => new RegExp(`^${STEM}[gabw]$`).test(n));
  for (const n of old) await exec(null, ['ip', 'netns', 'del', n]);

  const lab = await createLab({ name: STEM, signalHooks: false, ...(IPV6 ? { ipv6: { temporary: true } } : {}) });
  const dir = mkdtempSync(join(tmpdir(), 'portd-lab-'));
  let portd: ChildProcess | null = null;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write('\nstopping portd and removing the lab…\n');
    if (portd && portd.exitCode === null) {
      portd.kill('SIGTERM');
      await new Promise((r) => {
        const t = setTimeout(r, 5000);
        portd?.once('exit', () => {
          clearTimeout(t);
          r(null);
        });
      });
    }
    await lab.teardown();
    rmSync(dir, { recursive: true, force: true });
    process.stdout.write('done: namespaces, portd and its table are gone.\n');
    process.exit(code);
  };
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true })); // also when something fails

  try {
    const config =
      [
        'logLevel: info',
        `interfaces: { wan: ${IF.wan}, lan: [${IF.lan}] }`,
        'externalAddress: auto',
        'listenAddresses: null',
        `stateDir: ${dir}`,
        `database: { path: ${join(dir, 'portd.sqlite')}, synchronous: normal }`,
        'dataplane: { driver: nftables, table: portd, hairpin: true, reconcileInterval: 60, grace: 5 }',
        'policy:',
        '  secureMode: true',
        '  lifetime: { pcp: { min: 30, max: 86400 }, natpmp: { min: 30, max: 86400 } }',
        '  rules: ["allow 1024-65535 192.168.77.0/24 1-65535", "deny 0-65535 0.0.0.0/0 0-65535"]',
        'upnp: { enabled: true, httpPort: 5000, ssdp: true }',
        ...(IPV6 ? ['pcp: { ipv6: true }'] : []),
        'admin: { listen: "127.0.0.1:8080", token: "lab-token-0123456789" }',
        'staticForwards:',
        `  - { protocol: tcp, externalPort: 2222, internal: "${ADDR.hostB}:22", description: "lab static forward" }`,
        'triggers:',
        '  - { preset: battlenet }          # try it: from lanA send UDP/TCP to the WAN host on port 6112',
      ].join('\n') + '\n';
    const cfgPath = join(dir, 'portd.yaml');
    writeFileSync(cfgPath, config);

    // echo servers on lanA (what the mapped ports lead to)
    const hostA = await lab.agent(lab.lanA, 'lanA');
    for (const p of [9000, 9001]) {
      await hostA.listen('tcp', p);
      await hostA.listen('udp', p);
    }

    portd = spawn(
      'ip',
      ['netns', 'exec', lab.gw, process.execPath, join(root, 'bin', 'portd.js'), 'start', '--config', cfgPath],
      { stdio: ['ignore', 'inherit', 'inherit'], cwd: root },
    );
    portd.on('exit', (code, sig) => {
      if (!stopping) {
        process.stderr.write(`portd exited (${code ?? sig}); Ctrl-C to clean up\n`);
      }
    });
    await new Promise((r) => setTimeout(r, 1500));

    const x = (ns: string, cmd: string) => `  ip netns exec ${ns} ${cmd}`;
    const have = (t: string) => (hasTool(t) ? '' : `   (${t} not installed)`);
    process.stdout.write(
      [
        '',
        '=== portd lab is up ===  (Ctrl-C removes everything)',
        `gateway ${lab.gw}: LAN ${ADDR.gwLan} on ${IF.lan}, WAN ${ADDR.gwWan} on ${IF.wan}; LAN hosts ` +
          `${lab.lanA} ${ADDR.hostA} (echo servers on tcp/udp 9000, 9001), ${lab.lanB} ${ADDR.hostB}; WAN host ` +
          `${lab.wan} ${ADDR.wanHost}`,
        ...(IPV6
          ? [
              `IPv6: gateway ${ADDR6.gwLan} / ${ADDR6.gwWan}; ${lab.lanA} ${ADDR6.hostA} + temporary ` +
                `${ADDR6.hostATemp}, ${lab.lanB} ${ADDR6.hostB} + ${ADDR6.hostBTemp}; WAN host ${ADDR6.wanHost}; ` +
                "inbound IPv6 is denied by the lab's own policy (nft list table inet lab) unless portd marks the flow",
            ]
          : []),
        '',
        'Map a port from a LAN host:',
        x(lab.lanA, `upnpc -i -a ${ADDR.hostA} 9000 40000 TCP 600`) +
          have('upnpc') +
          `   (or -u http://${ADDR.gwLan}:5000/igd1/desc.xml to skip discovery)`,
        x(lab.lanA, `upnpc -i -l`) + have('upnpc'),
        x(lab.lanA, `natpmpc -g ${ADDR.gwLan} -a 40001 9001 udp 120`) + have('natpmpc'),
        '',
        'Use it from the WAN host (the echo server answers "lanA|<your address>|<what you sent>"):',
        x(
          lab.wan,
          `node -e "const s=require('net').connect(40000,'${ADDR.gwWan}',()=>s.write('hi'));` +
            `s.on('data',d=>{console.log(String(d));s.end()})"`,
        ),
        x(
          lab.wan,
          `node -e "const s=require('dgram').createSocket('udp4');s.send('hi',40001,'${ADDR.gwWan}');` +
            `s.on('message',d=>{console.log(String(d));s.close()})"`,
        ),
        '',
        'Look inside:',
        x(lab.gw, 'nft list table inet portd'),
        x(lab.gw, 'conntrack -L'),
        x(lab.gw, 'curl -s http://127.0.0.1:8080/metrics | grep portd_leases_active'),
        x(lab.gw, `node ${join(root, 'bin', 'portd.js')} leases --config ${cfgPath}`),
        '',
      ].join('\n') + '\n',
    );
    await new Promise(() => {
      /* until Ctrl-C */
    });
  } catch (err) {
    process.stderr.write(`lab failed: ${(err as Error).message}\n`);
    await stop(1);
  }
}

void main();
