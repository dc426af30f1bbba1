// A drained node's devices follow its redirect to another node of the
// cluster (real redis-server and nats-server), and miss no stored message.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Client, Code } from '../src/longlink.js';
import { startServer, startEngines, mintToken, push, api, eventually, deviceId } from './harness.mjs';

let engines;
const nodes = [];

before(async () => {
  engines = await startEngines();
  for (const node of ['n1', 'n2']) {
    nodes.push(await startServer({ extra: { node, cluster: engines.cluster, gateway: { drain_period: '1s' } } }));
  }
});

after(async () => {
  for (const n of nodes) await n.destroy();
  await engines?.stop();
});

test('a redirect from a draining node is followed, and nothing stored is lost', async () => {
  const [n1, n2] = nodes;
  const device = deviceId('drain');
  const c = new Client({ url: n1.wsUrl, token: mintToken(n1.app.secret, { device }), minBackoff: 50, maxBackoff: 200 });
  const got = [];
  const ends = [];
  c.on('push', (p) => got.push(p.data));
  c.on('disconnected', (why) => ends.push(why.code));
  await c.connect();
  const where = async () => (await api(n2, 'GET', `/v1/admin/devices/demo/${device}`, undefined, n2.opsToken)).node;
  assert.equal(await where(), 'n1');

  await api(n1, 'POST', '/v1/admin/drain', undefined, n1.opsToken);
  const sent = [];
  for (let i = 0; i < 20; i++) { // stored pushes through n2 while n1 drains
    await push(n2, { devices: [device], data: `m${i}`, ttl: 600 });
    sent.push(`m${i}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  await eventually(async () => (await where()) === 'n2', 'the device on n2');
  assert.equal(ends[0], Code.GOING_AWAY);
  await eventually(() => got.length === sent.length, 'every stored message');
  assert.deepEqual(got, sent);
  c.close();
});
