// Real longlink servers for the JS tests: the binary (LONGLINK_BIN, else
// built here with `go build`), started with a config in a temporary
// directory on loopback ports, and the helpers a backend would have
// (minting tokens, calling the push API).
import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
let built = '';

/** The longlink binary: LONGLINK_BIN, or one built once from this checkout. */
export function longlinkBin() {
  if (process.env.LONGLINK_BIN) return process.env.LONGLINK_BIN;
  if (!built) {
    built = join(mkdtempSync(join(tmpdir(), 'longlink-bin-')), 'longlink');
    execFileSync('go', ['build', '-o', built, './cmd/longlink'], { cwd: repo, stdio: 'inherit' });
  }
  return built;
}

/** A free loopback port (closed again, so a server can take it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts `longlink serve` with a config of the app "demo" (with `webhooks`)
 * and `otherApps`, `extra` keys merged into the config, and waits until it
 * serves. `dir` and the ports may be given to
 * restart a server on the same data and addresses. With `demo`, demo
 * mode: `serve` with no --config, in dir (its app's credentials are read
 * from the data dir it fills).
 */
export async function startServer({ dir, gatewayPort, apiPort, webhooks, otherApps = [], extra = {}, demo = false } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), 'longlink-js-'));
  gatewayPort ??= await freePort();
  apiPort ??= await freePort();
  const app = { id: 'demo', secret: 'js-test-secret-0123456789', api_key: 'js-test-api-key-0123456789', ...(webhooks && { webhooks }) };
  let opsToken = 'js-test-ops-token-0123456789';
  const cfg = {
    node: 'n1',
    data_dir: join(dir, 'data'),
    ops: { token: opsToken },
    apps: [app, ...otherApps],
    ...extra,
    gateway: { ...extra.gateway, listen: `127.0.0.1:${gatewayPort}` },
    api: { ...extra.api, listen: `127.0.0.1:${apiPort}` },
  };
  const args = ['serve', '--gateway-listen', cfg.gateway.listen, '--api-listen', cfg.api.listen];
  if (!demo) {
    writeFileSync(join(dir, 'longlink.yaml'), JSON.stringify(cfg)); // JSON is YAML
    args.push('--config', join(dir, 'longlink.yaml'));
  }
  const proc = spawn(longlinkBin(), args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let log = '';
  proc.stderr.on('data', (b) => { log += b; });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}\n${log}`)), 20000);
    proc.stdout.on('data', (b) => {
      out += b;
      if (out.includes('\n  data dir')) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${out}\n${log}`));
    });
  });
  const gateway = /gateway\s+tcp:\/\/(\S+)/.exec(out)[1];
  const [, scheme, api] = /api\s+(https?):\/\/(\S+)/.exec(out);
  if (demo) { // the credentials serve generated in its data dir
    const data = join(dir, 'longlink-data');
    const d = JSON.parse(readFileSync(join(data, 'demo-app.json'), 'utf8'));
    Object.assign(app, { secret: d.secret, api_key: d.api_key });
    opsToken = readFileSync(join(data, 'ops-token'), 'utf8');
  }
  const server = {
    dir, proc, app, opsToken, gatewayPort, apiPort,
    /** What serve has printed so far. */
    get banner() { return out; },
    log: () => log,
    wsUrl: `ws://${gateway}/ws`,
    apiUrl: `${scheme}://${api}`,
    /** Stops the server (SIGINT: fast shutdown, 4009 to every connection) and waits for it. */
    stop: (signal = 'SIGINT') => new Promise((resolve) => {
      if (proc.exitCode !== null) return resolve();
      proc.once('exit', resolve);
      proc.kill(signal);
    }),
    /** Stops it and starts it again on the same data and ports. */
    restart: async () => {
      await server.stop();
      return startServer({ dir, gatewayPort, apiPort, webhooks, otherApps, extra, demo });
    },
    /** Stops it and deletes its directory. */
    destroy: async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return server;
}

/**
 * A real redis-server and nats-server on free loopback ports, for a
 * cluster; stop() ends both. Returns the `cluster` config block.
 */
export async function startEngines() {
  const dir = mkdtempSync(join(tmpdir(), 'longlink-engines-'));
  const [rp, np] = [await freePort(), await freePort()];
  const procs = [
    spawn('redis-server', ['--port', String(rp), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes',
      '--appendfsync', 'always'], { stdio: 'ignore' }),
    spawn('nats-server', ['-a', '127.0.0.1', '-p', String(np)], { stdio: 'ignore' }),
  ];
  for (const port of [rp, np]) await eventually(() => accepts(port), `an engine on port ${port}`);
  return {
    cluster: { redis: `redis://127.0.0.1:${rp}/0`, nats: `nats://127.0.0.1:${np}`, lease: '2s' },
    stop: async () => {
      await Promise.all(procs.map((p) => new Promise((r) => { if (p.exitCode !== null) r(); else { p.once('exit', r); p.kill(); } })));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function accepts(port) {
  return new Promise((resolve) => {
    const c = connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  });
}

/**
 * An HS256 device token, as an app backend mints it, valid at least ttl seconds from now (exp is in
 * whole seconds: rounded up, not down, which would leave a 1 s token anything from 0 to 1 s).
 */
export function mintToken(secret, { app = 'demo', device, ttl = 3600, groups, uid } = {}) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const ms = Date.now();
  const claims = { app, sub: device, exp: Math.ceil((ms + ttl * 1000) / 1000), iat: Math.floor(ms / 1000) };
  if (groups) claims.groups = groups;
  if (uid) claims.uid = uid;
  const head = enc({ alg: 'HS256', typ: 'JWT' }) + '.' + enc(claims);
  return head + '.' + createHmac('sha256', secret).update(head).digest('base64url');
}

/** Calls the push API as the app's backend; returns the JSON answer (throws on non-2xx). */
export async function push(server, body) {
  return api(server, 'POST', '/v1/push', { app: server.app.id, ...body }, server.app.api_key);
}

/** Calls an API endpoint with a Bearer key; returns the JSON answer (throws on non-2xx). */
export async function api(server, method, path, body, key) {
  const resp = await fetch(server.apiUrl + path, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await resp.json();
  if (!resp.ok) throw new Error(`${method} ${path}: ${resp.status} ${JSON.stringify(json)}`);
  return json;
}

/** Waits until cond() is true (polling), or fails after timeout ms. */
export async function eventually(cond, what, timeout = 10000) {
  const end = Date.now() + timeout;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A fresh device id. */
export function deviceId(prefix = 'js') {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Headless Chromium (Debian's, or $CHROMIUM), driven by Playwright. */
export async function launchBrowser() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    // No network but loopback here: Chromium's own background calls are turned off.
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

/** Where a test writes what it leaves for people to look at (screenshots). */
export function artifactsDir() {
  return process.env.LONGLINK_ARTIFACTS ?? mkdtempSync(join(tmpdir(), 'longlink-artifacts-'));
}
