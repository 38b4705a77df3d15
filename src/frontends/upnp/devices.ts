import {
  advertisementsOf,
  encodeDeviceDescription,
  encodeScpd,
  igdTree,
  serviceDescription,
  walkServices,
  type DescriptionInfo,
  type DeviceNode,
  type ServiceDescription,
  type ServiceNode,
} from '../../../protocols/upnp/index.js';
import type { UpnpUuids } from './uuids.js';

/**
 * Both IGD generations at once, as two root devices with their own UUIDs and description URLs:
 * /igd1/desc.xml (InternetGatewayDevice:1 → WANIPConnection:1) for clients that accept only v1
 * (npm nat-upnp, old miniupnpc, consoles) and /igd2/desc.xml (InternetGatewayDevice:2 →
 * WANIPConnection:2) for clients that look only for v2 (npm @achingbrain/nat-port-mapper).
 * Both control URLs act on the same lease table. See docs/upnp.md.
 */
export interface RootDevice {
  readonly generation: 1 | 2;
  readonly root: DeviceNode;
  readonly descriptionPath: string;
  readonly descriptionXml: string;
}

export interface Endpoint {
  readonly generation: 1 | 2;
  readonly root: DeviceNode;
  readonly service: ServiceNode;
  readonly description: ServiceDescription;
}

export interface DeviceSet {
  readonly roots: readonly RootDevice[];
  /** SCPD path → XML */
  readonly scpds: ReadonlyMap<string, string>;
  /** control path → endpoint */
  readonly control: ReadonlyMap<string, Endpoint>;
  /** event path → endpoint */
  readonly events: ReadonlyMap<string, Endpoint>;
  /** SSDP targets with the description path of their root */
  readonly advertisements: readonly { nt: string; usn: string; descriptionPath: string }[];
}

export function buildDeviceSet(
  uuids: UpnpUuids,
  info: DescriptionInfo,
  configId: number,
  opts: { readonly ipv6Firewall?: boolean } = {},
): DeviceSet {
  const roots: RootDevice[] = ([1, 2] as const).map((g) => {
    const root = igdTree(g, g === 1 ? uuids.v1 : uuids.v2, `/igd${g}`, info.friendlyName, opts);
    return {
      generation: g,
      root,
      descriptionPath: `/igd${g}/desc.xml`,
      descriptionXml: encodeDeviceDescription(root, info, configId),
    };
  });
  const scpds = new Map<string, string>();
  const control = new Map<string, Endpoint>();
  const events = new Map<string, Endpoint>();
  const advertisements: { nt: string; usn: string; descriptionPath: string }[] = [];
  for (const r of roots) {
    for (const { service } of walkServices(r.root)) {
      const description = serviceDescription(service.type, service.version);
      if (!scpds.has(service.scpdPath)) scpds.set(service.scpdPath, encodeScpd(description));
      const ep: Endpoint = { generation: r.generation, root: r.root, service, description };
      control.set(service.controlPath, ep);
      events.set(service.eventPath, ep);
    }
    for (const a of advertisementsOf(r.root)) advertisements.push({ ...a, descriptionPath: r.descriptionPath });
  }
  return { roots, scpds, control, events, advertisements };
}
