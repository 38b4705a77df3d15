import { ServiceType } from './urn.js';
import { escapeXml } from './xml.js';

export interface ArgumentSpec {
  readonly name: string;
  readonly direction: 'in' | 'out';
  readonly relatedStateVariable: string;
}

export interface ActionSpec {
  readonly name: string;
  readonly arguments: readonly ArgumentSpec[];
}

export interface StateVariableSpec {
  readonly name: string;
  readonly dataType: 'string' | 'boolean' | 'ui2' | 'ui4';
  readonly sendEvents: boolean;
  readonly allowedValues?: readonly string[];
  readonly range?: { readonly min: number; readonly max: number; readonly step?: number };
}

export interface ServiceDescription {
  readonly actions: readonly ActionSpec[];
  readonly stateVariables: readonly StateVariableSpec[];
}

const i = (name: string, rel: string): ArgumentSpec => ({ name, direction: 'in', relatedStateVariable: rel });
const o = (name: string, rel: string): ArgumentSpec => ({ name, direction: 'out', relatedStateVariable: rel });

const mappingIn = [
  i('NewRemoteHost', 'RemoteHost'),
  i('NewExternalPort', 'ExternalPort'),
  i('NewProtocol', 'PortMappingProtocol'),
  i('NewInternalPort', 'InternalPort'),
  i('NewInternalClient', 'InternalClient'),
  i('NewEnabled', 'PortMappingEnabled'),
  i('NewPortMappingDescription', 'PortMappingDescription'),
  i('NewLeaseDuration', 'PortMappingLeaseDuration'),
];
const keyIn = [
  i('NewRemoteHost', 'RemoteHost'),
  i('NewExternalPort', 'ExternalPort'),
  i('NewProtocol', 'PortMappingProtocol'),
];
const entryOut = [
  o('NewInternalPort', 'InternalPort'),
  o('NewInternalClient', 'InternalClient'),
  o('NewEnabled', 'PortMappingEnabled'),
  o('NewPortMappingDescription', 'PortMappingDescription'),
  o('NewLeaseDuration', 'PortMappingLeaseDuration'),
];

/** WANIPConnection:1 (2001) §2.2/§2.4 and WANIPConnection:2 (2010): the actions portd implements. */
export function wanIpConnectionDescription(version: 1 | 2): ServiceDescription {
  const actions: ActionSpec[] = [
    { name: 'SetConnectionType', arguments: [i('NewConnectionType', 'ConnectionType')] },
    {
      name: 'GetConnectionTypeInfo',
      arguments: [o('NewConnectionType', 'ConnectionType'), o('NewPossibleConnectionTypes', 'PossibleConnectionTypes')],
    },
    { name: 'RequestConnection', arguments: [] },
    { name: 'RequestTermination', arguments: [] },
    { name: 'ForceTermination', arguments: [] },
    {
      name: 'GetStatusInfo',
      arguments: [
        o('NewConnectionStatus', 'ConnectionStatus'),
        o('NewLastConnectionError', 'LastConnectionError'),
        o('NewUptime', 'Uptime'),
      ],
    },
    { name: 'GetNATRSIPStatus', arguments: [o('NewRSIPAvailable', 'RSIPAvailable'), o('NewNATEnabled', 'NATEnabled')] },
    {
      name: 'GetGenericPortMappingEntry',
      arguments: [
        i('NewPortMappingIndex', 'PortMappingNumberOfEntries'),
        o('NewRemoteHost', 'RemoteHost'),
        o('NewExternalPort', 'ExternalPort'),
        o('NewProtocol', 'PortMappingProtocol'),
        ...entryOut,
      ],
    },
    { name: 'GetSpecificPortMappingEntry', arguments: [...keyIn, ...entryOut] },
    { name: 'AddPortMapping', arguments: mappingIn },
    { name: 'DeletePortMapping', arguments: keyIn },
    { name: 'GetExternalIPAddress', arguments: [o('NewExternalIPAddress', 'ExternalIPAddress')] },
  ];
  if (version >= 2) {
    actions.push(
      {
        name: 'DeletePortMappingRange',
        arguments: [
          i('NewStartPort', 'ExternalPort'),
          i('NewEndPort', 'ExternalPort'),
          i('NewProtocol', 'PortMappingProtocol'),
          i('NewManage', 'A_ARG_TYPE_Manage'),
        ],
      },
      {
        name: 'GetListOfPortMappings',
        arguments: [
          i('NewStartPort', 'ExternalPort'),
          i('NewEndPort', 'ExternalPort'),
          i('NewProtocol', 'PortMappingProtocol'),
          i('NewManage', 'A_ARG_TYPE_Manage'),
          i('NewNumberOfPorts', 'PortMappingNumberOfEntries'),
          o('NewPortListing', 'A_ARG_TYPE_PortListing'),
        ],
      },
      { name: 'AddAnyPortMapping', arguments: [...mappingIn, o('NewReservedPort', 'ExternalPort')] },
    );
  }
  const stateVariables: StateVariableSpec[] = [
    { name: 'ConnectionType', dataType: 'string', sendEvents: false },
    {
      name: 'PossibleConnectionTypes',
      dataType: 'string',
      sendEvents: true,
      allowedValues: ['Unconfigured', 'IP_Routed', 'IP_Bridged'],
    },
    {
      name: 'ConnectionStatus',
      dataType: 'string',
      sendEvents: true,
      allowedValues: ['Unconfigured', 'Connecting', 'Connected', 'PendingDisconnect', 'Disconnecting', 'Disconnected'],
    },
    { name: 'Uptime', dataType: 'ui4', sendEvents: false },
    { name: 'LastConnectionError', dataType: 'string', sendEvents: false, allowedValues: ['ERROR_NONE'] },
    { name: 'RSIPAvailable', dataType: 'boolean', sendEvents: false },
    { name: 'NATEnabled', dataType: 'boolean', sendEvents: false },
    { name: 'ExternalIPAddress', dataType: 'string', sendEvents: true },
    { name: 'PortMappingNumberOfEntries', dataType: 'ui2', sendEvents: true },
    { name: 'PortMappingEnabled', dataType: 'boolean', sendEvents: false },
    // v2 bounds the lease duration (0 = "as long as possible", capped by the gateway)
    {
      name: 'PortMappingLeaseDuration',
      dataType: 'ui4',
      sendEvents: false,
      ...(version >= 2 ? { range: { min: 0, max: 604800 } } : {}),
    },
    { name: 'RemoteHost', dataType: 'string', sendEvents: false },
    { name: 'ExternalPort', dataType: 'ui2', sendEvents: false },
    {
      name: 'InternalPort',
      dataType: 'ui2',
      sendEvents: false,
      ...(version >= 2 ? { range: { min: 1, max: 65535 } } : {}),
    },
    { name: 'PortMappingProtocol', dataType: 'string', sendEvents: false, allowedValues: ['TCP', 'UDP'] },
    { name: 'InternalClient', dataType: 'string', sendEvents: false },
    { name: 'PortMappingDescription', dataType: 'string', sendEvents: false },
  ];
  if (version >= 2) {
    stateVariables.push(
      { name: 'SystemUpdateID', dataType: 'ui4', sendEvents: true },
      { name: 'A_ARG_TYPE_Manage', dataType: 'boolean', sendEvents: false },
      { name: 'A_ARG_TYPE_PortListing', dataType: 'string', sendEvents: false },
    );
  }
  return { actions, stateVariables };
}

/** WANCommonInterfaceConfig:1 (2001) §2.2/§2.4, the read-only part. */
export function wanCommonInterfaceConfigDescription(): ServiceDescription {
  return {
    actions: [
      {
        name: 'GetCommonLinkProperties',
        arguments: [
          o('NewWANAccessType', 'WANAccessType'),
          o('NewLayer1UpstreamMaxBitRate', 'Layer1UpstreamMaxBitRate'),
          o('NewLayer1DownstreamMaxBitRate', 'Layer1DownstreamMaxBitRate'),
          o('NewPhysicalLinkStatus', 'PhysicalLinkStatus'),
        ],
      },
      { name: 'GetTotalBytesSent', arguments: [o('NewTotalBytesSent', 'TotalBytesSent')] },
      { name: 'GetTotalBytesReceived', arguments: [o('NewTotalBytesReceived', 'TotalBytesReceived')] },
      { name: 'GetTotalPacketsSent', arguments: [o('NewTotalPacketsSent', 'TotalPacketsSent')] },
      { name: 'GetTotalPacketsReceived', arguments: [o('NewTotalPacketsReceived', 'TotalPacketsReceived')] },
    ],
    stateVariables: [
      {
        name: 'WANAccessType',
        dataType: 'string',
        sendEvents: false,
        allowedValues: ['DSL', 'POTS', 'Cable', 'Ethernet'],
      },
      { name: 'Layer1UpstreamMaxBitRate', dataType: 'ui4', sendEvents: false },
      { name: 'Layer1DownstreamMaxBitRate', dataType: 'ui4', sendEvents: false },
      { name: 'PhysicalLinkStatus', dataType: 'string', sendEvents: true, allowedValues: ['Up', 'Down'] },
      { name: 'TotalBytesSent', dataType: 'ui4', sendEvents: false },
      { name: 'TotalBytesReceived', dataType: 'ui4', sendEvents: false },
      { name: 'TotalPacketsSent', dataType: 'ui4', sendEvents: false },
      { name: 'TotalPacketsReceived', dataType: 'ui4', sendEvents: false },
    ],
  };
}

/** Layer3Forwarding:1 (2001) §2.2/§2.4. */
export function layer3ForwardingDescription(): ServiceDescription {
  return {
    actions: [
      {
        name: 'SetDefaultConnectionService',
        arguments: [i('NewDefaultConnectionService', 'DefaultConnectionService')],
      },
      {
        name: 'GetDefaultConnectionService',
        arguments: [o('NewDefaultConnectionService', 'DefaultConnectionService')],
      },
    ],
    stateVariables: [{ name: 'DefaultConnectionService', dataType: 'string', sendEvents: true }],
  };
}

/**
 * WANIPv6FirewallControl:1 (2010) §2.2/§2.4: every action (GetOutboundPinholeTimeout and
 * CheckPinholeWorking are optional there; portd has both). Protocol is an IANA protocol number
 * (ui2: 6 TCP, 17 UDP, 65535 any); LeaseTime 1-86400 s; UniqueID a ui2 per pinhole.
 */
export function wanIpv6FirewallControlDescription(): ServiceDescription {
  const pinholeIn = [
    i('RemoteHost', 'A_ARG_TYPE_IPv6Address'),
    i('RemotePort', 'A_ARG_TYPE_Port'),
    i('InternalClient', 'A_ARG_TYPE_IPv6Address'),
    i('InternalPort', 'A_ARG_TYPE_Port'),
    i('Protocol', 'A_ARG_TYPE_Protocol'),
  ];
  return {
    actions: [
      {
        name: 'GetFirewallStatus',
        arguments: [o('FirewallEnabled', 'FirewallEnabled'), o('InboundPinholeAllowed', 'InboundPinholeAllowed')],
      },
      {
        name: 'GetOutboundPinholeTimeout',
        arguments: [...pinholeIn, o('OutboundPinholeTimeout', 'A_ARG_TYPE_OutboundPinholeTimeout')],
      },
      {
        name: 'AddPinhole',
        arguments: [...pinholeIn, i('LeaseTime', 'A_ARG_TYPE_LeaseTime'), o('UniqueID', 'A_ARG_TYPE_UniqueID')],
      },
      {
        name: 'UpdatePinhole',
        arguments: [i('UniqueID', 'A_ARG_TYPE_UniqueID'), i('NewLeaseTime', 'A_ARG_TYPE_LeaseTime')],
      },
      { name: 'DeletePinhole', arguments: [i('UniqueID', 'A_ARG_TYPE_UniqueID')] },
      {
        name: 'GetPinholePackets',
        arguments: [i('UniqueID', 'A_ARG_TYPE_UniqueID'), o('PinholePackets', 'A_ARG_TYPE_PinholePackets')],
      },
      {
        name: 'CheckPinholeWorking',
        arguments: [i('UniqueID', 'A_ARG_TYPE_UniqueID'), o('IsWorking', 'A_ARG_TYPE_Boolean')],
      },
    ],
    stateVariables: [
      { name: 'FirewallEnabled', dataType: 'boolean', sendEvents: true },
      { name: 'InboundPinholeAllowed', dataType: 'boolean', sendEvents: true },
      { name: 'A_ARG_TYPE_IPv6Address', dataType: 'string', sendEvents: false },
      { name: 'A_ARG_TYPE_Port', dataType: 'ui2', sendEvents: false },
      { name: 'A_ARG_TYPE_Protocol', dataType: 'ui2', sendEvents: false },
      { name: 'A_ARG_TYPE_LeaseTime', dataType: 'ui4', sendEvents: false, range: { min: 1, max: 86400 } },
      { name: 'A_ARG_TYPE_UniqueID', dataType: 'ui2', sendEvents: false },
      { name: 'A_ARG_TYPE_OutboundPinholeTimeout', dataType: 'ui4', sendEvents: false },
      { name: 'A_ARG_TYPE_PinholePackets', dataType: 'ui4', sendEvents: false },
      { name: 'A_ARG_TYPE_Boolean', dataType: 'boolean', sendEvents: false },
    ],
  };
}

export function serviceDescription(type: ServiceType, version: number): ServiceDescription {
  switch (type) {
    case ServiceType.WAN_IP_CONNECTION:
      return wanIpConnectionDescription(version >= 2 ? 2 : 1);
    case ServiceType.WAN_COMMON_INTERFACE_CONFIG:
      return wanCommonInterfaceConfigDescription();
    case ServiceType.LAYER3_FORWARDING:
      return layer3ForwardingDescription();
    case ServiceType.WAN_IPV6_FIREWALL_CONTROL:
      return wanIpv6FirewallControlDescription();
  }
}

/** The SCPD document (UDA 1.1 §2.5). */
export function encodeScpd(desc: ServiceDescription): string {
  let s =
    '<?xml version="1.0" encoding="utf-8"?>\n<scpd xmlns="urn:schemas-upnp-org:service-1-0">' +
    '<specVersion><major>1</major><minor>0</minor></specVersion><actionList>';
  for (const a of desc.actions) {
    s += `<action><name>${a.name}</name>`;
    if (a.arguments.length > 0) {
      s += '<argumentList>';
      for (const arg of a.arguments) {
        s +=
          `<argument><name>${arg.name}</name><direction>${arg.direction}</direction>` +
          `<relatedStateVariable>${arg.relatedStateVariable}</relatedStateVariable></argument>`;
      }
      s += '</argumentList>';
    }
    s += '</action>';
  }
  s += '</actionList><serviceStateTable>';
  for (const v of desc.stateVariables) {
    s +=
      '<stateVariable ' +
      `sendEvents="${v.sendEvents ? 'yes' : 'no'}"><name>${v.name}</name><dataType>${v.dataType}</dataType>`;
    if (v.allowedValues)
      s +=
        '<allowedValueList>' +
        v.allowedValues.map((x) => `<allowedValue>${escapeXml(x)}</allowedValue>`).join('') +
        '</allowedValueList>';
    if (v.range)
      s +=
        `<allowedValueRange><minimum>${v.range.min}</minimum><maximum>${v.range.max}</maximum>` +
        (v.range.step ? `<step>${v.range.step}</step>` : '') +
        '</allowedValueRange>';
    s += '</stateVariable>';
  }
  return s + '</serviceStateTable></scpd>\n';
}

/** in-argument names of an action, or null when the service has no such action */
export function actionInArguments(desc: ServiceDescription, action: string): string[] | null {
  const a = desc.actions.find((x) => x.name === action);
  return a ? a.arguments.filter((x) => x.direction === 'in').map((x) => x.name) : null;
}
