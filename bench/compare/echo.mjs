// Trivial servers that measure the load generator's own ceiling, run in the gateway namespace
// (`ip netns exec NS node echo.mjs HOST UDPPORT HTTPPORT`): a UDP server that returns each packet
// with the PCP response bit set (so the generator accepts it as an answer), and an HTTP server that
// reads the body and answers a fixed SOAP-sized reply (keep-alive when the client asks for it).
// Prints one JSON line when listening; exits when stdin closes.
import dgram from 'node:dgram';
import http from 'node:http';

const [host = '127.0.0.1', udpPort = '0', httpPort = '0'] = process.argv.slice(2);
const reply =
  '<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" ' +
  's:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:AddPortMappingResponse ' +
  'xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"></u:AddPortMappingResponse></s:Body></s:Envelope>\r\n';

const udp = dgram.createSocket('udp4');
udp.on('message', (m, r) => {
  if (m.length >= 2) m[1] |= 0x80;
  udp.send(m, r.port, r.address);
});
await new Promise((r) => udp.bind(Number(udpPort), host, r));

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () =>
    res
      .writeHead(200, { 'content-type': 'text/xml; charset="utf-8"', 'content-length': Buffer.byteLength(reply) })
      .end(reply),
  );
});
server.keepAliveTimeout = 5000;
await new Promise((r) => server.listen(Number(httpPort), host, r));
process.stdout.write(JSON.stringify({ ready: true, udp: udp.address().port, http: server.address().port }) + '\n');
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
