/**
 * The schema defaults are the router defaults: what `portd start` uses on a gateway for every key
 * the file leaves out. The loopback default for development is config/portd.yaml.
 */

export const DEFAULT_CONFIG_PATH = '/etc/portd/portd.yaml';

export const DEFAULTS = {
  logLevel: 'info',
  interfaces: { wan: 'eth0', lan: ['br-lan'] },
  externalAddress: 'auto',
  listenAddresses: null,
  stateDir: '/var/lib/portd',
  warmup: 0,
  database: { path: '/var/lib/portd/portd.sqlite', synchronous: 'normal', driver: 'sqlite', url: null },
  dataplane: {
    driver: 'nftables',
    table: 'portd',
    hairpin: true,
    reconcileInterval: 60,
    grace: 5,
    nftPath: 'nft',
    netlink: true,
    conntrackPath: 'conntrack',
  },
  policy: {
    secureMode: true,
    // UPnP (WANIPv6FirewallControl) and PCP clients may open IPv6 pinholes (issue 15); static ones always
    ipv6Pinholes: true,
    maxLeasesPerClient: 128,
    // the gateway's own services: ssh, dns, http(s) admin pages
    reservedPorts: [22, 53, 80, 443],
    lifetime: {
      pcp: { min: 120, max: 86400 },
      natpmp: { min: 120, max: 86400 },
      upnp: { min: 1, max: 604800 },
      trigger: { min: 1, max: 86400 },
    },
    // unprivileged ports for private LANs, then deny everything else (miniupnpd's example set)
    rules: [
      'allow 1024-65535 10.0.0.0/8 1024-65535',
      'allow 1024-65535 172.16.0.0/12 1024-65535',
      'allow 1024-65535 192.168.0.0/16 1024-65535',
      'deny 0-65535 0.0.0.0/0 0-65535',
    ],
    historyRetention: 86400,
    checkPortInUse: true,
  },
  upnp: {
    enabled: true,
    httpPort: 5000,
    ssdp: true,
    friendlyName: 'portd',
    manufacturer: 'portd',
    modelName: 'portd',
    notifyInterval: 900,
    ssdpMxDelay: false,
    listAllLeases: false,
    maxSubscriptions: 256,
    rateLimit: 50,
    ipv6: true,
  },
  pcp: {
    enabled: true,
    port: 5351,
    peer: true,
    thirdParty: [] as string[],
    allowAllProtocols: false,
    rateLimit: 100,
    ipv6: true,
  },
  natpmp: { enabled: true },
  admin: { listen: '127.0.0.1:8080', token: null, tokenFile: null, allowedHosts: [] as string[] },
  // global caps: far above what a home or office LAN asks (a few hundred leases, tens of requests a
  // second), low enough that one host spoofing many source addresses cannot exhaust the gateway
  limits: {
    maxActiveLeases: 16384,
    maxEndedLeases: 10000,
    historyPerLease: 32,
    pcpRequestsPerSecond: 2000,
    soapRequestsPerSecond: 500,
    ssdpSearchesPerSecond: 200,
    peerLookupsPerSecond: 50,
  },
  trigger: { idleTimeout: 600 },
} as const;
