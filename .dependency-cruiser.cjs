/**
 * The import direction of portd, checked: `npm run deps` (and `npm test` through scripts/check.mjs)
 * runs `npx depcruise --config .dependency-cruiser.cjs src protocols bin`.
 * The rules in words, and why, are in docs/development.md ("Import rules"); the layers below are
 * the same list. Type-only imports count (tsPreCompilationDeps): a type cycle is a cycle.
 */

// A layer may import itself and the layers it lists; everything else of ours is forbidden.
// Lower layers are allowed transitively on purpose (frontends may read src/common directly).
const COMMON = '^src/common/';
const BASE = '^src/(errors|logger|metrics|file-modes|child|capabilities)[.]ts$';
const PROTOCOLS = '^protocols/';
const CONFIG = '^src/config/';
const POLICY = '^src/policy/';
const DATAPLANE = '^src/dataplane/';
/** what of the dataplane the layers above may see: the interfaces, never a driver */
const DATAPLANE_API = '^src/dataplane/(types|trigger-kernel)[.]ts$';
const LEASES = '^src/leases/';
const TRIGGERS = '^src/triggers/';
const FRONTENDS = '^src/frontends/';
const ADMIN = '^src/admin/';
const UPSTREAM = '^src/upstream/';
const DOCTOR = '^src/doctor/';
const HA = '^src/ha/';
const WIRING = '^src/(main|cli|cli-admin|warmup)[.]ts$';

const layers = [
  { name: 'protocols', path: PROTOCOLS, may: [] },
  { name: 'common', path: COMMON, may: [] },
  { name: 'base', path: BASE, may: [COMMON] },
  { name: 'config', path: CONFIG, may: [COMMON, BASE] },
  { name: 'policy', path: POLICY, may: [COMMON, BASE, CONFIG, PROTOCOLS] },
  { name: 'dataplane', path: DATAPLANE, may: [COMMON, BASE, CONFIG, PROTOCOLS] },
  { name: 'leases', path: LEASES, may: [COMMON, BASE, CONFIG, PROTOCOLS, POLICY, DATAPLANE_API] },
  { name: 'triggers', path: TRIGGERS, may: [COMMON, BASE, CONFIG, PROTOCOLS, LEASES, DATAPLANE_API] },
  { name: 'frontends', path: FRONTENDS, may: [COMMON, BASE, CONFIG, PROTOCOLS, POLICY, LEASES, DATAPLANE_API] },
  // chaining to an upstream NAT: clients beside the lease table (they talk to the WAN, never to the kernel)
  { name: 'upstream', path: UPSTREAM, may: [COMMON, BASE, CONFIG, PROTOCOLS, LEASES] },
  { name: 'admin', path: ADMIN, may: [COMMON, BASE, CONFIG, PROTOCOLS, POLICY, LEASES, DATAPLANE_API, TRIGGERS] },
  // `portd doctor` inspects the kernel state the driver owns (its ct marks, its runner) and asks a running portd
  // through the admin API's client (admin/cli-commands.ts); it never opens the lease table itself
  { name: 'doctor', path: DOCTOR, may: [COMMON, BASE, CONFIG, PROTOCOLS, DATAPLANE, ADMIN] },
  // the HA pair (docs/ha.md): follows keepalived, fences writers, keeps a standby's dataplane in step through its
  // interface; the active side it starts is handed in by the wiring
  { name: 'ha', path: HA, may: [COMMON, BASE, CONFIG, LEASES, DATAPLANE_API] },
];

const OURS = '^(src|protocols|bin)/';

const layerRules = layers.map((l) => ({
  name: `layer-${l.name}`,
  comment:
    `${l.name} (${l.path}) may import only ${l.may.length ? l.may.join(', ') : 'itself'} of ours ` +
    '(docs/development.md, Import rules)',
  severity: 'error',
  from: { path: l.path },
  to: { path: OURS, pathNot: [l.path, ...l.may] },
}));

module.exports = {
  forbidden: [
    ...layerRules,
    {
      name: 'frontends-apart',
      comment: 'the UPnP and PCP front-ends do not import each other; what they share is src/frontends/*.ts',
      severity: 'error',
      from: { path: '^src/frontends/(upnp|pcp)/' },
      to: { path: '^src/frontends/(upnp|pcp)/', pathNot: ['^src/frontends/$1/'] },
    },
    {
      name: 'wiring-on-top',
      comment: 'src/main.ts, src/cli.ts and src/cli-admin.ts wire the parts; no part imports them',
      severity: 'error',
      from: { pathNot: WIRING },
      to: { path: WIRING },
    },
    {
      name: 'no-circular',
      comment: 'no cycles at all, type-only imports included',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    {
      name: 'no-dev-deps-at-run-time',
      comment: 'src/ and protocols/ run in the package: they may not import a devDependency',
      severity: 'error',
      from: { path: '^(src|protocols)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'no-tsx-at-run-time',
      comment: 'only bin/portd.js may load tsx (from a source checkout); the package runs compiled JavaScript',
      severity: 'error',
      from: { path: '^(src|protocols)/' },
      to: { path: '(^|/)node_modules/tsx/' },
    },
    {
      name: 'no-unresolvable',
      comment: 'every import resolves (a typo, or a package that is not installed)',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true, pathNot: '^tsx/esm/api$' },
    },
    {
      name: 'no-undeclared-deps',
      comment: 'a package imported from src/ or protocols/ is in package.json',
      severity: 'error',
      from: { path: '^(src|protocols)/' },
      to: { dependencyTypes: ['npm-no-pkg', 'npm-unknown'] },
    },
    {
      name: 'no-orphans',
      comment: 'a module nothing imports is dead code (entry points aside)',
      severity: 'error',
      from: { orphan: true, pathNot: ['^bin/', '^src/cli[.]ts$', '[.]d[.]ts$'] },
      to: {},
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: {
      exportsFields: ['exports'],
      conditionNames: ['import', 'require', 'node', 'default', 'types'],
      mainFields: ['module', 'main', 'types', 'typings'],
    },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
