// The dashboard in headless Chromium: the login page, live figures that
// change as devices connect (without a reload), a kick from the page that
// closes a device with 4008, a push from the page, a drain; a screenshot
// is left in the artifacts directory.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { Client, Code } from '../src/longlink.js';
import { startServer, mintToken, eventually, deviceId, launchBrowser, artifactsDir } from './harness.mjs';

let server;
let browser;
const clients = [];

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  await server?.destroy();
});

async function device(id = deviceId('dash')) {
  const c = new Client({ url: server.wsUrl, token: mintToken(server.app.secret, { device: id }), statsInterval: 200, network: () => 'wifi' });
  clients.push(c);
  await c.connect();
  return c;
}

test('the dashboard asks for the ops token, then shows live figures, kicks and pushes', async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));

  // No token: the login page, with 401.
  const first = await page.goto(`${server.apiUrl}/dashboard?interval=300`);
  assert.equal(first.status(), 401);
  await page.fill('#token', 'not the token');
  await page.click('button[type=submit]');
  await page.locator('#failed').waitFor();
  await page.fill('#token', server.opsToken);
  await page.click('button[type=submit]');
  await page.locator('#status', { hasText: '1 node' }).waitFor();
  await page.goto(`${server.apiUrl}/dashboard?interval=300`); // the session cookie holds

  // The GC pause column bounds a node's longest pause between two reads by
  // the lowest bucket that counts them all (the buckets are cumulative:
  // every bucket above a pause grows with it), or by their total.
  const bounds = await page.evaluate(async () => {
    const { pauseBound } = await import('/dashboard/pause.js');
    const h = 'go_sched_pauses_total_gc_seconds';
    const read = (counts, sum) => [
      { name: `${h}_count`, value: counts[3] }, { name: `${h}_sum`, value: sum },
      ...['0.0001', '0.001', '0.1'].map((le, i) => ({ name: `${h}_bucket`, labels: { le }, value: counts[i] })),
    ];
    const before = read([10, 12, 13, 13], 0.05);
    const stats = async () => (await (await fetch('/v1/admin/stats')).json()).nodes[0].samples;
    const first = await stats();
    await fetch('/debug/pprof/heap?gc=1'); // a collection: its pauses come between the reads
    const second = await stats();
    const sum = (samples) => samples.find((s) => s.name === `${h}_sum`).value;
    return {
      bucket: pauseBound(before, read([20, 25, 26, 26], 0.06)),
      total: pauseBound(before, read([20, 25, 26, 26], 0.0506)),
      past: pauseBound(before, read([20, 25, 26, 27], 0.55)),
      none: pauseBound(before, before),
      real: pauseBound(first, second),
      realTotal: sum(second) - sum(first),
    };
  });
  assert.equal(bounds.bucket, 0.001);
  assert.ok(Math.abs(bounds.total - 0.0006) < 1e-9, `bounded by the total: ${bounds.total}`);
  assert.ok(Math.abs(bounds.past - 0.5) < 1e-9, `a pause past the last bucket: ${bounds.past}`);
  assert.equal(bounds.none, 0);
  assert.ok(bounds.real > 0 && bounds.real <= bounds.realTotal, `a node's own pauses: ${JSON.stringify(bounds)}`);

  const online = page.locator('[data-figure="connections"]');
  await online.filter({ hasText: /^0$/ }).waitFor();
  // Before any device sent its stats, the client-quality table says so.
  await page.locator('#quality tbody tr', { hasText: 'no data yet' }).waitFor();

  // Devices connect: the count follows, without a reload.
  const a = await device();
  await online.filter({ hasText: /^1$/ }).waitFor();
  await device();
  await device();
  await online.filter({ hasText: /^3$/ }).waitFor();
  await page.locator('#apps tbody tr', { hasText: 'ws_json' }).filter({ hasText: '3' }).waitFor();
  await page.locator('#quality tbody tr', { hasText: 'wifi' }).waitFor(); // the devices' stats
  await page.locator('#nodes tbody tr', { hasText: 'serving' }).waitFor();
  // Memory per connection is not RSS over 3: it waits for 100 connections.
  assert.equal(await page.locator('#nodes tbody tr td').nth(5).textContent(), '–');

  // A push from the page reaches the device.
  const pushes = [];
  a.on('push', (p) => pushes.push(p.data));
  const id = a.welcome.device;
  await page.fill('#device-form input[name=device]', id);
  await page.fill('#device-form input[name=data]', 'from the dashboard');
  await page.click('#push');
  await eventually(() => pushes.includes('from the dashboard'), 'the push from the page');

  // Look up, then kick: the device closes with 4008, and the count drops.
  await page.click('#device-form button[type=submit]');
  await page.locator('#device-out', { hasText: '"online": true' }).waitFor();
  // Kick asks first: dismissed, nothing happens; accepted, the device goes.
  const asked = [];
  const dismiss = (d) => { asked.push(d.message()); d.dismiss(); };
  page.once('dialog', dismiss);
  await page.click('#kick');
  await eventually(() => asked.length === 1, 'the kick to ask');
  assert.match(asked[0], new RegExp(`Kick ${id}`));
  assert.equal(a.state, 'connected');
  const closed = new Promise((r) => a.on('closed', r));
  page.once('dialog', (d) => d.accept());
  await page.click('#kick');
  assert.equal((await closed).code, Code.KICKED);
  await page.locator('#device-out', { hasText: '"kicked": 1' }).waitFor();
  await online.filter({ hasText: /^2$/ }).waitFor();

  await page.screenshot({ path: join(artifactsDir(), 'dashboard.png'), fullPage: true });
  assert.deepEqual(errors, []);

  // Signed out: the login page again; signed in again.
  await page.click('header button');
  const out = await page.goto(`${server.apiUrl}/dashboard`);
  assert.equal(out.status(), 401);
  await page.fill('#token', server.opsToken);
  await page.click('button[type=submit]');

  // Drain from the page: the node says so, moves its devices away (here,
  // with no other node, it closes them with 4009) and exits.
  const ends = [];
  for (const c of clients.slice(1)) c.on('disconnected', (why) => ends.push(why.code));
  page.on('dialog', (d) => d.accept());
  await page.click('[data-drain="n1"]');
  await page.locator('#node-out', { hasText: '"state": "draining"' }).waitFor();
  await eventually(() => server.proc.exitCode !== null, 'the drained node to exit', 20000);
  assert.equal(server.proc.exitCode, 0);
  assert.deepEqual(ends, [Code.GOING_AWAY, Code.GOING_AWAY]);
  await page.close();
});
