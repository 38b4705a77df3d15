import net from 'node:net';

/**
 * POSTs a `total`-byte body to 127.0.0.1:`port`, streamed from one reused 64 KiB chunk of `fill` after `prefix`
 * (Content-Length or chunked framing), respecting back-pressure; resolves with the answer's status line and the
 * bytes written when the server answers and closes, or after 10 s
 */
export function streamBigBody(opts: {
  port: number;
  /** request line and headers, each ending in CRLF, without the framing header and the blank line */
  head: string;
  total: number;
  chunked: boolean;
  fill: string;
  prefix?: string;
}): Promise<{ statusLine: string; written: number }> {
  const { port, head, total, chunked, fill, prefix = '' } = opts;
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const chunk = Buffer.alloc(64 * 1024, fill);
    let data = '';
    let written = 0;
    let done = false;
    const finish = () => {
      if (!done) {
        done = true;
        resolve({ statusLine: data.split('\r\n')[0] ?? '', written });
      }
    };
    sock.on('data', (d) => {
      data += d.toString('latin1');
    });
    sock.on('error', finish);
    sock.on('close', finish);
    sock.write(`${head}${chunked ? 'Transfer-Encoding: chunked' : `Content-Length: ${total}`}\r\n\r\n`);
    if (prefix) {
      sock.write(chunked ? `${prefix.length.toString(16)}\r\n${prefix}\r\n` : prefix);
      written = prefix.length;
    }
    const pump = () => {
      while (!done && !sock.destroyed && written < total) {
        written += chunk.length;
        const ok = chunked
          ? sock.write(`${chunk.length.toString(16)}\r\n`) && sock.write(chunk) && sock.write('\r\n')
          : sock.write(chunk);
        if (!ok) {
          sock.once('drain', pump);
          return;
        }
      }
      if (!done && !sock.destroyed) sock.end(chunked ? '0\r\n\r\n' : '');
    };
    pump();
    setTimeout(() => {
      sock.destroy();
      finish();
    }, 10_000).unref();
  });
}
