// The demo page in headless Chromium: a page built on the SDK (served by
// the binary) receives pushes, pushes through the API itself, and gets a
// stored message that waited while it was closed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { startServer, push, api, eventually, launchBrowser, artifactsDir } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer({ demo: true });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.destroy();
});

test('serve prints the demo page URL', () => {
  assert.match(server.banner, new RegExp(`open ${server.apiUrl}/demo in a browser`));
});

test('a page using the SDK receives pushes, and a stored one after it was closed', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(`${server.apiUrl}/demo`);
  await page.locator('#status', { hasText: 'connected as' }).waitFor();
  const device = await page.locator('#device').textContent();
  assert.match(device, /^web-[0-9a-f]{8}$/);

  // From the backend.
  const r = await push(server, { devices: [device], data: 'from the backend' });
  assert.equal(r.online, 1);
  await page.locator(`#pushes li[data-id="${r.id}"]`, { hasText: 'from the backend' }).waitFor();

  // From the page's own form, through the API.
  await page.fill('#push-form input[name=data]', 'from the form');
  await page.click('#push-form button');
  await page.locator('#pushes li', { hasText: 'from the form' }).waitFor();
  // The push can reach the page before the form's own response is shown.
  await page.locator('#push-out', { hasText: /^200 .*"online":1/ }).waitFor();
  await page.screenshot({ path: join(artifactsDir(), 'demo.png'), fullPage: true });

  // Closed: a stored message waits; the page opened again (the same device:
  // no other page holds it) gets it, with its seq.
  await page.close();
  await eventually(async () => !(await api(server, 'GET', `/v1/presence?app=demo&device=${device}`, undefined, server.app.api_key)).devices[device].online,
    'the closed page offline');
  const stored = await push(server, { devices: [device], data: 'kept for you', ttl: 600 });
  assert.equal(stored.offline, 1);
  const again = await context.newPage();
  await again.goto(`${server.apiUrl}/demo`);
  await again.locator(`#pushes li[data-id="${stored.id}"]`, { hasText: 'seq=1' }).waitFor();
  assert.equal(await again.locator('#device').textContent(), device);
  assert.deepEqual(errors, []);
  await context.close();
});

test('two pages are two devices; a page replaced says so and takes its device back', async () => {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
  const [one, two] = [await context.newPage(), await context.newPage()];
  for (const page of [one, two]) {
    await page.goto(`${server.apiUrl}/demo`);
    await page.locator('#status', { hasText: 'connected as' }).waitFor();
  }
  const [first, second] = [await one.locator('#device').textContent(), await two.locator('#device').textContent()];
  assert.notEqual(first, second);
  const r = await push(server, { broadcast: true, data: 'to both pages' });
  for (const page of [one, two]) await page.locator(`#pushes li[data-id="${r.id}"]`).waitFor();

  // At a phone's width, nothing runs off the page.
  assert.ok(await one.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth),
    'the demo page is wider than 390 px');

  // Another connection of the first page's device replaces it.
  const token = (await api(server, 'GET', `/demo/device?device=${first}`)).token;
  const other = new WebSocket(server.wsUrl, 'longlink.json');
  await new Promise((resolve) => { other.onopen = resolve; }); // set in the tick that opened it: no open is missed
  other.send(JSON.stringify({ op: 'login', token }));
  await one.locator('#status', { hasText: `replaced: device ${first} connected elsewhere` }).waitFor();
  other.close();
  await one.click('#reconnect');
  await one.locator('#status', { hasText: `connected as ${first}` }).waitFor();
  await context.close();
});
