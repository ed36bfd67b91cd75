// npm hyco-https (Microsoft's Relay Hybrid Connections HTTP listener for Node) against weft bus: a listener
// answering a 1 MB body (rendezvous answer), receiving a 1 MB request (rendezvous request), a small echo
// and a custom status on the control channel; the sends go through plain HTTP with SAS, as any sender's.
// Prints one JSON line with what the senders saw. Env: RELAY_BASE (http://127.0.0.1:PORT), RELAY_PATH,
// KEY_NAME, KEY.
const https = require('hyco-https');
const crypto = require('crypto');

const base = process.env.RELAY_BASE;
const path = process.env.RELAY_PATH;
const keyName = process.env.KEY_NAME;
const key = process.env.KEY;
const listenUri = `${base.replace('http://', 'ws://')}/$hc/${path}?sb-hc-action=listen`;
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const pattern = (n) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + 3) % 251;
  return b;
};
const big = pattern(1 << 20);

const server = https.createRelayedServer(
  { server: listenUri, token: () => https.createRelayToken(listenUri, keyName, key) },
  (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(Buffer.from(c)));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (req.url.endsWith('/big')) {
        res.setHeader('Content-Type', 'application/octet-stream');
        res.end(big);
      } else if (req.url.includes('/teapot')) {
        res.statusCode = 418;
        res.setHeader('X-Weft-Test', 'short and stout');
        res.end('teapot');
      } else {
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ method: req.method, url: req.url, len: body.length, sha: sha(body),
          custom: req.headers['x-custom'] || null }));
      }
    });
  });

async function send(method, suffix, body, headers = {}) {
  const uri = `${base}/${path}${suffix}`;
  const token = https.createRelayToken(`${base}/${path}`, keyName, key);
  const r = await fetch(uri, { method, body, headers: { ServiceBusAuthorization: token, ...headers } });
  const buf = Buffer.from(await r.arrayBuffer());
  return { status: r.status, via: r.headers.get('via'), type: r.headers.get('content-type'),
    test: r.headers.get('x-weft-test'), buf };
}

server.on('error', (e) => { console.error('listener error: ' + (e && e.message)); });
server.listen();
server.on('listening', async () => {
  try {
    const out = {};
    const a = await send('GET', '/big');
    out.big_answer = { status: a.status, len: a.buf.length, sha_ok: sha(a.buf) === sha(big), via: a.via };
    const reqBody = pattern(1 << 20);
    const b = await send('POST', '/echo?x=1', reqBody, { 'X-Custom': 'v1', 'Content-Type': 'application/octet-stream' });
    const echoed = JSON.parse(b.buf.toString());
    out.big_request = { status: b.status, len: echoed.len, sha_ok: echoed.sha === sha(reqBody),
      url: echoed.url, custom: echoed.custom };
    const c = await send('POST', '/echo', 'small');
    const small = JSON.parse(c.buf.toString());
    out.small = { status: c.status, len: small.len, method: small.method };
    const d = await send('GET', '/teapot');
    out.teapot = { status: d.status, header: d.test, body: d.buf.toString() };
    console.log(JSON.stringify(out));
    server.close();
    process.exit(0);
  } catch (e) {
    console.error(e && e.stack || e);
    process.exit(1);
  }
});
setTimeout(() => { console.error('timed out'); process.exit(2); }, 60000);
