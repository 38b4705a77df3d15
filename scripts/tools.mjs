// The system tools the suites need, and the Debian package that provides each.
export const TOOLS = [
  { bin: 'nft', pkg: 'nftables', for: 'lab' },
  { bin: 'conntrack', pkg: 'conntrack', for: 'lab' },
  { bin: 'ip', pkg: 'iproute2', for: 'lab' },
  { bin: 'upnpc', pkg: 'miniupnpc', for: 'integration' },
  { bin: 'natpmpc', pkg: 'natpmpc', for: 'integration' },
  { bin: 'gssdp-discover', pkg: 'gupnp-tools', for: 'integration' },
  // test/lab/upstream.test.ts: miniupnpd as the upstream NAT of the three-tier lab (the package starts no service)
  { bin: 'miniupnpd', pkg: 'miniupnpd-nftables', for: 'lab' },
  // test/helpers/postgres.ts: a throwaway PostgreSQL cluster for the second storage backend (issue 18 item 2).
  // Debian keeps the server binaries off PATH, under /usr/lib/postgresql/<version>/bin (dir: where to look).
  { bin: 'initdb', pkg: 'postgresql', for: 'integration', dir: '/usr/lib/postgresql/*/bin' },
  // test/lab/ha-*.test.ts: the HA pair (issue 18 items 3-4): VRRP between the gateways, and conntrack state sync
  { bin: 'keepalived', pkg: 'keepalived', for: 'lab' },
  { bin: 'conntrackd', pkg: 'conntrackd', for: 'lab' },
  { bin: 'chromium', pkg: 'chromium', for: 'browser' },
  // npm run package (test/lab/package.test.ts): lintian checks the .deb; node-gyp compiles better-sqlite3
  { bin: 'lintian', pkg: 'lintian', for: 'lab' },
  { bin: 'g++', pkg: 'g++', for: 'lab' },
  { bin: 'make', pkg: 'make', for: 'lab' },
  { bin: 'strip', pkg: 'binutils', for: 'lab' },
];
