import { DeviceType, ServiceType, deviceUrn, serviceUrn } from './urn.js';

/** One service of a device, with its URLs (paths) on our HTTP server. */
export interface ServiceNode {
  readonly type: ServiceType;
  readonly version: number;
  /** urn:upnp-org:serviceId:… (UDA 1.1 §2.3) */
  readonly serviceId: string;
  readonly scpdPath: string;
  readonly controlPath: string;
  readonly eventPath: string;
}

export interface DeviceNode {
  readonly type: DeviceType;
  readonly version: number;
  /** uuid without the "uuid:" prefix */
  readonly uuid: string;
  readonly friendlyName: string;
  readonly services: readonly ServiceNode[];
  readonly devices: readonly DeviceNode[];
}

/** The three device UUIDs of one IGD root device tree. */
export interface IgdUuids {
  readonly igd: string;
  readonly wanDevice: string;
  readonly wanConnectionDevice: string;
}

/**
 * The InternetGatewayDevice tree of one IGD generation (IGD:1 2001, IGD:2 2010):
 *   InternetGatewayDevice:n (Layer3Forwarding:1)
 *     └ WANDevice:n (WANCommonInterfaceConfig:1)
 *         └ WANConnectionDevice:n (WANIPConnection:n)
 * Paths are rooted at `prefix` (e.g. "/igd1"); SCPDs of identical services are shared. With
 * `ipv6Firewall`, an IGD:2 WANConnectionDevice also has WANIPv6FirewallControl:1 (IGD:2 §2.1, as
 * miniupnpd places it).
 */
export function igdTree(
  generation: 1 | 2,
  uuids: IgdUuids,
  prefix: string,
  friendlyName: string,
  opts: { readonly ipv6Firewall?: boolean } = {},
): DeviceNode {
  const v = generation;
  const fw6: ServiceNode = {
    type: ServiceType.WAN_IPV6_FIREWALL_CONTROL,
    version: 1,
    serviceId: 'urn:upnp-org:serviceId:WANIPv6Firewall1',
    scpdPath: '/WANIP6FC.xml',
    controlPath: `${prefix}/ctl/IP6FCtl`,
    eventPath: `${prefix}/evt/IP6FCtl`,
  };
  const ipConn: ServiceNode = {
    type: ServiceType.WAN_IP_CONNECTION,
    version: v,
    serviceId: 'urn:upnp-org:serviceId:WANIPConn1',
    scpdPath: `${prefix}/WANIPCn.xml`,
    controlPath: `${prefix}/ctl/IPConn`,
    eventPath: `${prefix}/evt/IPConn`,
  };
  const common: ServiceNode = {
    type: ServiceType.WAN_COMMON_INTERFACE_CONFIG,
    version: 1,
    serviceId: 'urn:upnp-org:serviceId:WANCommonIFC1',
    scpdPath: '/WANCfg.xml',
    controlPath: `${prefix}/ctl/CmnIfCfg`,
    eventPath: `${prefix}/evt/CmnIfCfg`,
  };
  const l3f: ServiceNode = {
    type: ServiceType.LAYER3_FORWARDING,
    version: 1,
    serviceId: 'urn:upnp-org:serviceId:L3Forwarding1',
    scpdPath: '/L3F.xml',
    controlPath: `${prefix}/ctl/L3F`,
    eventPath: `${prefix}/evt/L3F`,
  };
  return {
    type: DeviceType.INTERNET_GATEWAY_DEVICE,
    version: v,
    uuid: uuids.igd,
    friendlyName,
    services: [l3f],
    devices: [
      {
        type: DeviceType.WAN_DEVICE,
        version: v,
        uuid: uuids.wanDevice,
        friendlyName: 'WANDevice',
        services: [common],
        devices: [
          {
            type: DeviceType.WAN_CONNECTION_DEVICE,
            version: v,
            uuid: uuids.wanConnectionDevice,
            friendlyName: 'WANConnectionDevice',
            services: generation === 2 && opts.ipv6Firewall ? [ipConn, fw6] : [ipConn],
            devices: [],
          },
        ],
      },
    ],
  };
}

export function* walkDevices(root: DeviceNode): Generator<DeviceNode> {
  yield root;
  for (const d of root.devices) yield* walkDevices(d);
}

export function* walkServices(root: DeviceNode): Generator<{ device: DeviceNode; service: ServiceNode }> {
  for (const device of walkDevices(root)) for (const service of device.services) yield { device, service };
}

/**
 * What a root device announces (UDA 1.1 §1.2.2): upnp:rootdevice once, then uuid and device type
 * for every device, then every distinct service type per device.
 */
export function advertisementsOf(root: DeviceNode): { nt: string; usn: string }[] {
  const out: { nt: string; usn: string }[] = [];
  out.push({ nt: 'upnp:rootdevice', usn: `uuid:${root.uuid}::upnp:rootdevice` });
  for (const d of walkDevices(root)) {
    out.push({ nt: `uuid:${d.uuid}`, usn: `uuid:${d.uuid}` });
    const dt = deviceUrn(d.type, d.version);
    out.push({ nt: dt, usn: `uuid:${d.uuid}::${dt}` });
    for (const s of d.services) {
      const st = serviceUrn(s.type, s.version);
      out.push({ nt: st, usn: `uuid:${d.uuid}::${st}` });
    }
  }
  return out;
}

/**
 * "uuid:…:WANConnectionDevice:1,urn:upnp-org:serviceId:WANIPConn1" — Layer3Forwarding:1 §2.2 DefaultConnectionService
 */
export function defaultConnectionService(root: DeviceNode): string {
  for (const { device, service } of walkServices(root)) {
    if (service.type === ServiceType.WAN_IP_CONNECTION)
      return `uuid:${device.uuid}:${device.type}:${device.version},${service.serviceId}`;
  }
  return '';
}
