import type { DeviceNode } from './device-tree.js';
import { deviceUrn, serviceUrn } from './urn.js';
import { escapeXml, el } from './xml.js';

/** Text fields of the description that come from configuration (UDA 1.1 §2.3). */
export interface DescriptionInfo {
  readonly friendlyName: string;
  readonly manufacturer: string;
  readonly manufacturerURL?: string;
  readonly modelName: string;
  readonly modelNumber?: string;
  readonly modelDescription?: string;
  readonly modelURL?: string;
  readonly serialNumber?: string;
  /** dashboard URL; omitted when null (admin server not reachable from the LAN) */
  readonly presentationURL: string | null;
}

function device(d: DeviceNode, info: DescriptionInfo, isRoot: boolean): string {
  let s = '<device>';
  s += el('deviceType', deviceUrn(d.type, d.version));
  s += el('friendlyName', isRoot ? info.friendlyName : d.friendlyName);
  s += el('manufacturer', info.manufacturer);
  if (info.manufacturerURL) s += el('manufacturerURL', info.manufacturerURL);
  if (info.modelDescription) s += el('modelDescription', info.modelDescription);
  s += el('modelName', info.modelName);
  if (info.modelNumber) s += el('modelNumber', info.modelNumber);
  if (info.modelURL) s += el('modelURL', info.modelURL);
  if (isRoot && info.serialNumber) s += el('serialNumber', info.serialNumber);
  s += el('UDN', `uuid:${d.uuid}`);
  if (d.services.length > 0) {
    s += '<serviceList>';
    for (const sv of d.services) {
      s +=
        '<service>' +
        el('serviceType', serviceUrn(sv.type, sv.version)) +
        el('serviceId', sv.serviceId) +
        el('SCPDURL', sv.scpdPath) +
        el('controlURL', sv.controlPath) +
        el('eventSubURL', sv.eventPath) +
        '</service>';
    }
    s += '</serviceList>';
  }
  if (d.devices.length > 0)
    s += '<deviceList>' + d.devices.map((c) => device(c, info, false)).join('') + '</deviceList>';
  if (isRoot && info.presentationURL) s += el('presentationURL', info.presentationURL);
  return s + '</device>';
}

/**
 * The root device description (UDA 1.1 §2.3). URLs are relative to the description's own URL
 * (no URLBase, as UDA 1.1 recommends), so the same document serves every LAN address.
 * IGD:1 trees say specVersion 1.0 (what 2001-era clients expect); IGD:2 trees 1.1 with configId.
 */
export function encodeDeviceDescription(root: DeviceNode, info: DescriptionInfo, configId: number): string {
  const v11 = root.version >= 2;
  return (
    '<?xml version="1.0" encoding="utf-8"?>\n' +
    `<root xmlns="urn:schemas-upnp-org:device-1-0"${v11 ? ` configId="${escapeXml(String(configId))}"` : ''}>` +
    `<specVersion><major>1</major><minor>${v11 ? 1 : 0}</minor></specVersion>` +
    device(root, info, true) +
    '</root>\n'
  );
}
