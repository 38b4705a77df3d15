import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { readXml, XmlReadError, type XmlElement } from '../../protocols/upnp/xml-reader.js';

const kind = (s: string, depth = 16): string => {
  try {
    readXml(s, depth);
    return 'ok';
  } catch (e) {
    if (e instanceof XmlReadError) return e.kind;
    throw e;
  }
};
const plain = (e: XmlElement): unknown => ({
  name: e.name,
  attrs: e.attrs ? Object.fromEntries(e.attrs) : null,
  text: e.text,
  children: e.children.map(plain),
});

test('reads elements, attributes, text, CDATA; skips comments, PIs, the declaration and a BOM', () => {
  const r = readXml(
    `\ufeff<?xml version="1.0" encoding="utf-8"?>\n<!-- c --><s:E xmlns:s='urn:x' a = "1"><B/><C>a &amp; b<!-- x ` +
      '--> &#65;&#x42;<![CDATA[<y> &amp;]]>&unknown;</C><?pi data?></s:E>\n',
    16,
  );
  assert.deepEqual(plain(r), {
    name: 's:E',
    attrs: { 'xmlns:s': 'urn:x', a: '1' },
    text: '',
    children: [
      { name: 'B', attrs: null, text: '', children: [] },
      { name: 'C', attrs: null, text: 'a & b AB<y> &amp;&unknown;', children: [] },
    ],
  });
});

test('tolerates what real clients send: a bare & in text, whitespace before the declaration', () => {
  assert.equal(readXml('<a>Tom & Jerry</a>', 16).text, 'Tom & Jerry');
  assert.equal(kind('\r\n<?xml version="1.0"?><a/>'), 'ok');
});

test('refuses what is not well-formed, with a typed error', () => {
  for (const s of [
    '',
    '   ',
    'text',
    '<a>',
    '<a></b>',
    '</a>',
    '<a/><b/>',
    '<a/>text',
    'text<a/>',
    '<a x=1/>',
    '<a x="1" x="2"/>',
    '<a x="<"/>',
    '<a x="1"y="2"/>',
    '<a x/>',
    '<a x="1',
    '<a',
    '< a/>',
    '<1a/>',
    '<a><!-- x</a>',
    '<a><![CDATA[x</a>',
    '<a><?pi</a>',
    '<a>]]></a>',
    '<![CDATA[x]]><a/>',
    '<a/><?xml version="1.0"?>',
    '<a><!DOCTYPE x></a>',
    '<a></a >x',
    '<? ?><a/>',
  ])
    assert.equal(kind(s), 'malformed', JSON.stringify(s));
  assert.equal(kind('<a></a >'), 'ok');
});

test('nesting is bounded', () => {
  assert.equal(kind(`${'<a>'.repeat(16)}${'</a>'.repeat(16)}`), 'ok');
  assert.equal(kind(`${'<a>'.repeat(17)}${'</a>'.repeat(17)}`), 'too_deep');
  assert.equal(kind(`${'<a>'.repeat(100000)}`), 'too_deep');
});

test('round trip: a generated tree written out reads back the same', () => {
  const name = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_.-]{0,8}(:[A-Za-z_][A-Za-z0-9_]{0,5})?$/);
  const text = fc.string({ maxLength: 12 });
  const esc = (s: string) =>
    s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
  type T = { name: string; attrs: [string, string][]; text: string; children: T[] };
  const attrs = fc.uniqueArray(
    fc.tuple(
      name,
      fc.string({ maxLength: 8 }).filter((v) => !/[<"&]/.test(v)),
    ),
    { maxLength: 3, selector: (a) => a[0] },
  );
  const node = (depth: number): fc.Arbitrary<T> =>
    fc.record({
      name,
      text,
      attrs,
      children: depth > 0 ? fc.array(node(depth - 1), { maxLength: 3 }) : fc.constant([]),
    });
  const tree = node(4);
  const write = (t: T): string =>
    `<${t.name}${t.attrs.map(([k, v]) => ` ${k}="${v}"`).join('')}>` +
    `${esc(t.text)}${t.children.map(write).join('')}</${t.name}>`;
  const expect = (t: T): unknown => ({
    name: t.name,
    attrs: t.attrs.length ? Object.fromEntries(t.attrs) : null,
    text: t.text,
    children: t.children.map(expect),
  });
  fc.assert(
    fc.property(tree, (t) => {
      assert.deepEqual(plain(readXml(write(t), 64)), expect(t));
    }),
    { numRuns: 500 },
  );
});

test('never throws anything but XmlReadError', () => {
  const parts = [
    '<a>',
    '</a>',
    '<b x="1">',
    '<b x=\'1\' y="2"/>',
    '</b>',
    '<c/>',
    '&amp;',
    '&#x41;',
    '&',
    '<![CDATA[x]]>',
    '<!--c-->',
    '<?pi x?>',
    '<?xml version="1.0"?>',
    'text',
    ' ',
    '<',
    '>',
    ']]>',
    '"',
    '<!',
    '<?',
    '</',
    '=',
    "'",
  ];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...parts), { maxLength: 16 }), (xs) => {
      try {
        readXml(xs.join(''), 16);
      } catch (e) {
        assert.ok(e instanceof XmlReadError, String(e));
      }
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.string({ maxLength: 500 }), (s) => {
      try {
        readXml(s, 16);
      } catch (e) {
        assert.ok(e instanceof XmlReadError, String(e));
      }
    }),
    { numRuns: 1000 },
  );
});
