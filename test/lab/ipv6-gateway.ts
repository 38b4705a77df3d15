/**
 * The real `portd start` in an IPv6 lab's gateway, as the IPv6 lab tests run it: a fresh state directory, the
 * nftables driver on table `portd`, the lab's WAN and LAN interfaces, the external address found by itself
 * and the admin API on 127.0.0.1:8080. Each test names only what it sets on top (its dataplane keys, its
 * policy and front-ends, its triggers); `stop()` stops portd and removes the directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IF, type Lab } from './harness.js';
import { PortdProcess } from './portd-process.js';

export interface IPv6GatewayOptions {
  /** the state directory's name: portd-lab-<name>-XXXXXX under the temp dir */
  readonly name: string;
  /** keys added to `dataplane:` after the driver and table, e.g. `grace: 1` */
  readonly dataplane?: string;
  /** the admin API's token */
  readonly token?: string;
  /** further top-level YAML lines (policy, upnp, pcp, natpmp, triggers …) */
  readonly config?: readonly string[];
}

export interface IPv6Gateway {
  readonly portd: PortdProcess;
  readonly dir: string;
  /** stops portd and removes its state directory; safe to call more than once */
  stop(): Promise<void>;
}

export async function startIPv6Gateway(lab: Lab, o: IPv6GatewayOptions): Promise<IPv6Gateway> {
  const dir = mkdtempSync(join(tmpdir(), `portd-lab-${o.name}-`));
  const portd = new PortdProcess({
    lab,
    dir,
    verbose: process.env['LAB_LOG'] === 'portd',
    config:
      [
        'logLevel: info',
        `interfaces: { wan: ${IF.wan}, lan: [${IF.lan}] }`,
        'externalAddress: auto',
        `stateDir: ${dir}`,
        `database: { path: ${join(dir, 'portd.sqlite')} }`,
        `dataplane: { driver: nftables, table: portd${o.dataplane ? `, ${o.dataplane}` : ''} }`,
        `admin: { listen: "127.0.0.1:8080", token: "${o.token ?? 'lab-token-0123456789'}" }`,
        ...(o.config ?? []),
      ].join('\n') + '\n',
  });
  const stop = async () => {
    await portd.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await portd.start();
  } catch (e) {
    await stop();
    throw e;
  }
  return { portd, dir, stop };
}
