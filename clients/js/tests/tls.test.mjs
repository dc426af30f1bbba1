// TLS served to a browser's own TLS stack: headless Chromium (BoringSSL)
// over wss://, on the gateway's TLS 1.3 record layer. A push larger than a
// TLS record arrives whole, and frames keep flowing both ways.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, push, mintToken, launchBrowser, longlinkBin, deviceId } from './harness.mjs';

// The API's certificate is the test's self-signed one, on loopback.
process.env.NODE_TLS_REJECT_UNAUTHORIZED = '0';

let server;
let browser;
let certDir;

before(async () => {
  certDir = mkdtempSync(join(tmpdir(), 'longlink-cert-'));
  const cert = spawnSync(longlinkBin(), ['cert', '--dir', certDir, '--host', '127.0.0.1']);
  assert.equal(cert.status, 0, String(cert.stderr));
  server = await startServer({
    extra: {
      tls: { cert_file: join(certDir, 'cert.pem'), key_file: join(certDir, 'key.pem') },
      gateway: { max_frame_bytes: 65536 },
      api: { max_data_bytes: 60000 },
    },
  });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.destroy();
  rmSync(certDir, { recursive: true, force: true });
});

test('a browser over wss:// gets pushes, one larger than a TLS record, and pongs', async () => {
  assert.match(server.apiUrl, /^https:/);
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const device = deviceId('wss');
  const url = `wss://127.0.0.1:${server.gatewayPort}/ws`;
  const welcome = await page.evaluate(({ url, token }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url, 'longlink.json');
    window.frames_ = [];
    window.ws_ = ws;
    ws.onopen = () => ws.send(JSON.stringify({ op: 'login', token }));
    ws.onerror = () => reject(new Error('WebSocket error'));
    ws.onmessage = (e) => {
      const f = JSON.parse(e.data);
      window.frames_.push(f);
      if (f.op === 'welcome') resolve(f);
    };
  }), { url, token: mintToken(server.app.secret, { device }) });
  assert.equal(welcome.device, device);

  const big = 'b'.repeat(40000);
  assert.equal((await push(server, { devices: [device], data: big })).online, 1);
  await page.waitForFunction((n) => window.frames_.some((f) => f.op === 'push' && f.data.length === n), big.length);
  assert.equal((await push(server, { devices: [device], data: 'small' })).online, 1);
  await page.evaluate(() => window.ws_.send(JSON.stringify({ op: 'ping', ref: 'p1' })));
  await page.waitForFunction(() => window.frames_.some((f) => f.op === 'pong' && f.ref === 'p1'));
  const ops = await page.evaluate(() => window.frames_.map((f) => (f.op === 'push' ? `push:${f.data.length}` : f.op)));
  assert.deepEqual(ops, ['welcome', `push:${big.length}`, 'push:5', 'pong']);
  await context.close();
});
