/**
 * UPnP control error codes, named with the specifications' own words.
 * UDA = UPnP Device Architecture 1.1 §3.2.2 (table "UPnP errors");
 * IPv1 = WANIPConnection:1 Service Template 1.01 (2001) §2.4 "Actions", the error table of each action;
 * IPv2 = WANIPConnection:2 Service Template 2.00 (2010), the error table of each action;
 * FW6 = WANIPv6FirewallControl:1 Service Template 1.00 (2010) §2.4, the error table of each action.
 */
export const UpnpErrorCode = {
  INVALID_ACTION: 401, // UDA: no action by that name at this service
  INVALID_ARGS: 402, // UDA: not enough in args, args in the wrong order, one or more in args of the wrong data type
  ACTION_FAILED: 501, // UDA: may be returned if the current state of the service prevents invoking the action
  ARGUMENT_VALUE_INVALID: 600, // UDA
  ARGUMENT_VALUE_OUT_OF_RANGE: 601, // UDA
  OPTIONAL_ACTION_NOT_IMPLEMENTED: 602, // UDA
  ACTION_NOT_AUTHORIZED: 606, // UDA: the action requested requires authorization and the sender was not authorized
  SPECIFIED_ARRAY_INDEX_INVALID: 713, // IPv1/IPv2 GetGenericPortMappingEntry
  NO_SUCH_ENTRY_IN_ARRAY: 714, // IPv1/IPv2 GetSpecificPortMappingEntry, DeletePortMapping
  WILD_CARD_NOT_PERMITTED_IN_SRC_IP: 715, // IPv1/IPv2 AddPortMapping
  WILD_CARD_NOT_PERMITTED_IN_EXT_PORT: 716, // IPv1/IPv2 AddPortMapping
  CONFLICT_IN_MAPPING_ENTRY: 718, // IPv1/IPv2 AddPortMapping
  SAME_PORT_VALUES_REQUIRED: 724, // IPv1 (deprecated in IPv2): portd never sends it
  ONLY_PERMANENT_LEASES_SUPPORTED: 725, // IPv1 (deprecated in IPv2): portd never sends it
  REMOTE_HOST_ONLY_SUPPORTS_WILDCARD: 726, // IPv1 (deprecated in IPv2): portd never sends it
  EXTERNAL_PORT_ONLY_SUPPORTS_WILDCARD: 727, // IPv1 (deprecated in IPv2): portd never sends it
  NO_PORT_MAPS_AVAILABLE: 728, // IPv2 AddPortMapping, AddAnyPortMapping
  CONFLICT_WITH_OTHER_MECHANISMS: 729, // IPv2 AddPortMapping, AddAnyPortMapping
  PORT_MAPPING_NOT_FOUND: 730, // IPv2 DeletePortMappingRange, GetListOfPortMappings
  WILD_CARD_NOT_PERMITTED_IN_INT_PORT: 732, // IPv2 AddPortMapping, AddAnyPortMapping
  INCONSISTENT_PARAMETERS: 733, // IPv2 DeletePortMappingRange, GetListOfPortMappings
  PINHOLE_SPACE_EXHAUSTED: 701, // FW6 AddPinhole
  FIREWALL_DISABLED: 702, // FW6 every action but GetFirewallStatus
  INBOUND_PINHOLE_NOT_ALLOWED: 703, // FW6 AddPinhole, UpdatePinhole
  NO_SUCH_ENTRY: 704, // FW6 UpdatePinhole, DeletePinhole, GetPinholePackets, CheckPinholeWorking
  PROTOCOL_NOT_SUPPORTED: 705, // FW6 AddPinhole, GetOutboundPinholeTimeout
  INTERNAL_PORT_WILDCARDING_NOT_ALLOWED: 706, // FW6 AddPinhole
  PROTOCOL_WILDCARDING_NOT_ALLOWED: 707, // FW6 AddPinhole
  WILD_CARD_NOT_PERMITTED_IN_SRC_IP_FW6: 708, // FW6 AddPinhole: InternalClient empty or a wildcard
  NO_PACKET_SENT: 709, // FW6 CheckPinholeWorking: no packet went through the pinhole yet
} as const;
export type UpnpErrorCode = (typeof UpnpErrorCode)[keyof typeof UpnpErrorCode];

/** errorDescription strings as the specifications spell them */
export const UpnpErrorDescription: Readonly<Record<UpnpErrorCode, string>> = {
  401: 'Invalid Action',
  402: 'Invalid Args',
  501: 'Action Failed',
  600: 'Argument Value Invalid',
  601: 'Argument Value Out of Range',
  602: 'Optional Action Not Implemented',
  606: 'Action not authorized',
  713: 'SpecifiedArrayIndexInvalid',
  714: 'NoSuchEntryInArray',
  715: 'WildCardNotPermittedInSrcIP',
  716: 'WildCardNotPermittedInExtPort',
  718: 'ConflictInMappingEntry',
  724: 'SamePortValuesRequired',
  725: 'OnlyPermanentLeasesSupported',
  726: 'RemoteHostOnlySupportsWildcard',
  727: 'ExternalPortOnlySupportsWildcard',
  728: 'NoPortMapsAvailable',
  729: 'ConflictWithOtherMechanisms',
  730: 'PortMappingNotFound',
  732: 'WildCardNotPermittedInIntPort',
  733: 'InconsistentParameters',
  701: 'PinholeSpaceExhausted',
  702: 'FirewallDisabled',
  703: 'InboundPinholeNotAllowed',
  704: 'NoSuchEntry',
  705: 'ProtocolNotSupported',
  706: 'InternalPortWildcardingNotAllowed',
  707: 'ProtocolWildcardingNotAllowed',
  708: 'WildCardNotPermittedInSrcIP',
  709: 'NoPacketSent',
};

/** Why a SOAP request could not be decoded, with the UPnP error to answer. */
export type SoapDecodeErrorKind =
  | 'too_large'
  | 'dtd'
  | 'malformed'
  | 'not_envelope'
  | 'no_action'
  | 'action_mismatch'
  | 'too_deep';

export class SoapDecodeError extends Error {
  constructor(
    readonly kind: SoapDecodeErrorKind,
    readonly upnpCode: UpnpErrorCode,
    message: string,
    readonly offset = 0,
  ) {
    super(message);
    this.name = 'SoapDecodeError';
  }
}
