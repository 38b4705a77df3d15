import { SoapDecodeError, UpnpErrorCode, UpnpErrorDescription } from './errors.js';
import { Namespace, parseServiceUrn } from './urn.js';
import { el, escapeXml } from './xml.js';
import { readXml, XmlReadError, type XmlElement } from './xml-reader.js';

/** A decoded UPnP control request (UDA 1.1 §3.2.1). */
export interface SoapRequest {
  /** the action element's namespace, e.g. urn:schemas-upnp-org:service:WANIPConnection:1 */
  readonly serviceUrn: string;
  readonly serviceType: string;
  /** the version the client speaks (from the action's namespace) */
  readonly version: number;
  readonly action: string;
  /** in-arguments by element local name, entity-decoded, not trimmed */
  readonly args: ReadonlyMap<string, string>;
}

export interface SoapActionHeader {
  readonly serviceUrn: string;
  readonly serviceType: string;
  readonly version: number;
  readonly action: string;
}

export const SOAP_MAX_BODY_BYTES = 16 * 1024;
const MAX_DEPTH = 16;
const MAX_ARGS = 64;

/**
 * SOAPACTION: "urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping" (UDA 1.1 §3.2.1).
 * Quotes are REQUIRED by the spec but often missing; both are accepted. null when unparsable.
 */
export function parseSoapActionHeader(value: string | undefined | null): SoapActionHeader | null {
  if (value == null) return null;
  let v = value.trim();
  if (v.length >= 2 && v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).trim();
  const hash = v.lastIndexOf('#');
  if (hash <= 0) return null;
  const urn = v.slice(0, hash);
  const action = v.slice(hash + 1);
  if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(action)) return null;
  const st = parseServiceUrn(urn);
  if (!st) return null;
  return { serviceUrn: urn, serviceType: st.type, version: st.version, action };
}

function split(tag: string): { prefix: string; local: string } {
  const i = tag.indexOf(':');
  return i < 0 ? { prefix: '', local: tag } : { prefix: tag.slice(0, i), local: tag.slice(i + 1) };
}

/** namespace scope: prefix → URI, '' for the default namespace */
type Scope = ReadonlyMap<string, string>;

function enter(scope: Scope, n: XmlElement): Scope {
  if (!n.attrs) return scope;
  let next: Map<string, string> | null = null;
  for (const [k, v] of n.attrs) {
    if (k === 'xmlns' || k.startsWith('xmlns:')) {
      next ??= new Map(scope);
      next.set(k === 'xmlns' ? '' : k.slice(6), v);
    }
  }
  return next ?? scope;
}

/**
 * Refuses any markup declaration before parsing: a DOCTYPE (internal subset, external DTD, XXE,
 * "billion laughs") never reaches the parser. Comments and CDATA sections are allowed.
 */
export function assertNoDeclarations(body: string): void {
  const re = /<!/g;
  for (const m of body.matchAll(re)) {
    const rest = body.slice(m.index + 2, m.index + 9);
    if (rest.startsWith('--') || rest.startsWith('[CDATA[')) continue;
    throw new SoapDecodeError(
      'dtd',
      UpnpErrorCode.INVALID_ARGS,
      'markup declarations (DOCTYPE/ENTITY) are not accepted',
      m.index,
    );
  }
}

/**
 * Decodes a SOAP 1.1 envelope carrying one UPnP action (UDA 1.1 §3.2.1), namespace-aware:
 * Envelope and Body must be in the SOAP envelope namespace whatever their prefix; the action element
 * is the first element child of Body, its namespace names the service type and version.
 * When a SOAPACTION header is given its action name must agree. Throws SoapDecodeError.
 */
export function decodeSoapRequest(
  body: string | Uint8Array,
  soapAction?: string | null,
  maxBytes = SOAP_MAX_BODY_BYTES,
): SoapRequest {
  const size = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
  if (size > maxBytes)
    throw new SoapDecodeError('too_large', UpnpErrorCode.INVALID_ARGS, `body of ${size} bytes exceeds ${maxBytes}`);
  const text =
    typeof body === 'string' ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
  assertNoDeclarations(text);
  let rootEl: XmlElement;
  try {
    rootEl = readXml(text, MAX_DEPTH);
  } catch (e) {
    if (!(e instanceof XmlReadError)) throw e;
    throw new SoapDecodeError(e.kind, UpnpErrorCode.INVALID_ARGS, `not well-formed XML: ${e.message}`, e.offset);
  }
  let scope = enter(new Map(), rootEl);
  const r = split(rootEl.name);
  if (r.local !== 'Envelope' || scope.get(r.prefix) !== Namespace.SOAP_ENVELOPE) {
    throw new SoapDecodeError(
      'not_envelope',
      UpnpErrorCode.INVALID_ARGS,
      `root element is ${rootEl.name}, not a SOAP Envelope`,
    );
  }
  let bodyEl: XmlElement | null = null;
  for (const c of rootEl.children) {
    const s = split(c.name);
    const sc = enter(scope, c);
    if (s.local === 'Body' && sc.get(s.prefix) === Namespace.SOAP_ENVELOPE) {
      bodyEl = c;
      scope = sc;
      break;
    }
  }
  if (!bodyEl) throw new SoapDecodeError('not_envelope', UpnpErrorCode.INVALID_ARGS, 'no SOAP Body');
  const actionEl = bodyEl.children[0];
  if (!actionEl) throw new SoapDecodeError('no_action', UpnpErrorCode.INVALID_ACTION, 'empty SOAP Body');
  const aScope = enter(scope, actionEl);
  const a = split(actionEl.name);
  const ns = aScope.get(a.prefix) ?? '';
  const st = parseServiceUrn(ns);
  if (!st)
    throw new SoapDecodeError(
      'no_action',
      UpnpErrorCode.INVALID_ACTION,
      `action element ${actionEl.name} is not in a UPnP service namespace`,
    );
  const header = parseSoapActionHeader(soapAction);
  if (header && header.action !== a.local) {
    throw new SoapDecodeError(
      'action_mismatch',
      UpnpErrorCode.INVALID_ACTION,
      `SOAPACTION names ${header.action} but the body holds ${a.local}`,
    );
  }
  const args = new Map<string, string>();
  for (const c of actionEl.children) {
    if (args.size >= MAX_ARGS)
      throw new SoapDecodeError('malformed', UpnpErrorCode.INVALID_ARGS, `more than ${MAX_ARGS} arguments`);
    // arguments are unqualified (UDA 1.1 §3.2.1); tolerate a prefix by using the local name
    const name = split(c.name).local;
    if (!args.has(name)) args.set(name, c.text);
  }
  return { serviceUrn: ns, serviceType: st.type, version: st.version, action: a.local, args };
}

const ENVELOPE_OPEN =
  '<?xml version="1.0" encoding="utf-8"?>\n' +
  `<s:Envelope xmlns:s="${Namespace.SOAP_ENVELOPE}" s:encodingStyle="${Namespace.SOAP_ENCODING}"><s:Body>`;
const ENVELOPE_CLOSE = '</s:Body></s:Envelope>\n';

/** an out-argument value; `{ cdata }` is sent as a CDATA section (NewPortListing: miniupnpc reads it only that way) */
export type SoapValue = string | number | { readonly cdata: string };

export function cdata(text: string): string {
  // "]]>" cannot appear inside a CDATA section: split it across two sections
  return `<![CDATA[${text.replace(/]]>/g, ']]]]><![CDATA[>')}]]>`;
}

/** `<u:ActionResponse xmlns:u="serviceUrn">` with out-arguments in order (UDA 1.1 §3.2.2). */
export function encodeSoapResponse(
  serviceUrn: string,
  action: string,
  out: readonly (readonly [string, SoapValue])[],
): string {
  let s = `${ENVELOPE_OPEN}<u:${action}Response xmlns:u="${escapeXml(serviceUrn)}">`;
  for (const [k, v] of out) s += typeof v === 'object' ? `<${k}>${cdata(v.cdata)}</${k}>` : el(k, v);
  return `${s}</u:${action}Response>${ENVELOPE_CLOSE}`;
}

/** SOAP Fault carrying a UPnPError (UDA 1.1 §3.2.2); sent with HTTP 500. */
export function encodeSoapFault(code: number, description?: string): string {
  const desc = description ?? UpnpErrorDescription[code as UpnpErrorCode] ?? 'Error';
  return (
    `${ENVELOPE_OPEN}<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail>` +
    `<UPnPError xmlns="${Namespace.CONTROL}">${el('errorCode', code)}${el('errorDescription', desc)}</UPnPError>` +
    `</detail></s:Fault>${ENVELOPE_CLOSE}`
  );
}
