/** Minimal XML text helpers: escaping for what we build, entity decoding for what we parse with processEntities off. */

export function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&apos;',
  );
}

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * Decodes the five predefined entities and character references (XML 1.0 §4.6, §4.1), nothing else:
 * the parser runs with entity processing off and DTDs are refused, so no other entity can exist.
 * Unknown references are kept as written.
 */
export function decodeXmlText(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]{2,4});/g, (whole, ref: string) => {
    if (ref[0] === '#') {
      const cp = ref[1] === 'x' ? parseInt(ref.slice(2), 16) : parseInt(ref.slice(1), 10);
      if (cp === 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return whole;
      return String.fromCodePoint(cp);
    }
    return PREDEFINED[ref] ?? whole;
  });
}

export function el(name: string, value: string | number): string {
  return `<${name}>${typeof value === 'number' ? String(value) : escapeXml(value)}</${name}>`;
}
