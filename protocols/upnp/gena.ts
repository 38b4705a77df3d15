import { Namespace } from './urn.js';
import { el } from './xml.js';

/** GENA (UDA 1.1 §4): header codecs and the event body. */

/** `<e:propertyset>` with one `<e:property>` per variable (UDA 1.1 §4.3.2). */
export function encodePropertySet(vars: readonly (readonly [string, string | number])[]): string {
  let s = `<?xml version="1.0" encoding="utf-8"?>\n<e:propertyset xmlns:e="${Namespace.EVENT}">`;
  for (const [k, v] of vars) s += `<e:property>${el(k, v)}</e:property>`;
  return s + '</e:propertyset>\n';
}

/** CALLBACK: "<http://host:port/path>" one or more (UDA 1.1 §4.1.2). null when malformed; only http URLs. */
export function parseCallbackHeader(value: string | undefined | null): URL[] | null {
  if (!value) return null;
  const urls: URL[] = [];
  const re = /<([^<>]*)>/g;
  let consumed = 0;
  for (const m of value.matchAll(re)) {
    if (value.slice(consumed, m.index).trim() !== '') return null;
    consumed = m.index + m[0].length;
    let u: URL;
    try {
      u = new URL(m[1]!);
    } catch {
      return null;
    }
    if (u.protocol !== 'http:') return null;
    urls.push(u);
    if (urls.length > 8) return null;
  }
  if (value.slice(consumed).trim() !== '' || urls.length === 0) return null;
  return urls;
}

/** TIMEOUT: "Second-1800" or "infinite" (UDA 1.1 §4.1.2). null = absent or unparsable → the device picks. */
export function parseTimeoutHeader(value: string | undefined | null): number | 'infinite' | null {
  if (!value) return null;
  const v = value.trim();
  if (/^second-infinite$/i.test(v) || /^infinite$/i.test(v)) return 'infinite';
  const m = /^second-(\d{1,9})$/i.exec(v);
  return m ? Number(m[1]) : null;
}

export function formatTimeoutHeader(seconds: number): string {
  return `Second-${Math.floor(seconds)}`;
}
