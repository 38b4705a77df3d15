// The system tools the suites need, and the Debian package that provides each.
export const TOOLS = [
  { bin: 'nft', pkg: 'nftables', for: 'lab' },
  { bin: 'conntrack', pkg: 'conntrack', for: 'lab' },
  { bin: 'ip', pkg: 'iproute2', for: 'lab' },
  { bin: 'upnpc', pkg: 'miniupnpc', for: 'integration' },
  { bin: 'natpmpc', pkg: 'natpmpc', for: 'integration' },
  { bin: 'gssdp-discover', pkg: 'gupnp-tools', for: 'integration' },
  { bin: 'chromium', pkg: 'chromium', for: 'browser' },
];
