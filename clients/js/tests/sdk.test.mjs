// The SDK in Node.js against a real longlink server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { Client, Code, MemorySeqStore, LocalStorageSeqStore } from '../src/longlink.js';
import { startServer, mintToken, push, api, eventually, deviceId } from './harness.mjs';

let server;
let backend; // the app's backend: answers upstream calls
const other = { id: 'other', secret: 'js-test-other-secret-0123', api_key: 'js-test-other-key-0123456' };
const upCalls = [];

before(async () => {
  backend = createServer((req, res) => {
    let body = '';
    req.on('data', (b) => { body += b; });
    req.on('end', () => {
      upCalls.push(JSON.parse(body));
      res.end(`echo:${JSON.parse(body).data}`);
    });
  });
  await new Promise((r) => backend.listen(0, '127.0.0.1', r));
  server = await startServer({ webhooks: { upstream: { chat: `http://127.0.0.1:${backend.address().port}/up` } }, otherApps: [other] });
});

after(async () => {
  await server?.destroy();
  backend?.close();
});

const token = (device, opts = {}) => mintToken(server.app.secret, { device, ...opts });

function collect(client) {
  const pushes = [];
  client.on('push', (p) => pushes.push(p));
  return pushes;
}

async function waiting(device) {
  const d = await api(server, 'GET', `/v1/admin/devices/demo/${device}`, undefined, server.opsToken);
  return d.stored_waiting;
}

async function online(device) {
  const p = await api(server, 'GET', `/v1/presence?app=demo&device=${device}`, undefined, server.app.api_key);
  return p.devices[device].online;
}

test('online push, through dispatch', async () => {
  const device = deviceId();
  const c = new Client({ dispatchUrl: server.apiUrl, token: token(device) });
  const pushes = collect(c);
  const welcome = await c.connect();
  assert.equal(welcome.device, device);
  assert.deepEqual(welcome.apps, ['demo']);
  const r = await push(server, { devices: [device], data: 'hello' });
  assert.equal(r.online, 1);
  await eventually(() => pushes.length === 1, 'the push');
  assert.deepEqual(pushes[0], { app: 'demo', id: r.id, seq: 0, bseq: 0, data: 'hello' });
  c.close();
  assert.equal(c.state, 'closed');
});

test('several dispatch URLs: a dead one is passed over', async () => {
  const device = deviceId();
  const dead = 'http://127.0.0.1:9'; // the discard port: nothing listens
  const c = new Client({ dispatchUrls: [dead, server.apiUrl], token: token(device) });
  const welcome = await c.connect();
  assert.equal(welcome.device, device);
  c.close();
  const none = new Client({ dispatchUrls: [dead], token: token(device) });
  await assert.rejects(none.connect(), /dispatch: http:\/\/127\.0\.0\.1:9/);
  none.close();
});

test('a recalled message comes as a recall event, after its push', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device) });
  const events = [];
  c.on('push', (p) => events.push(`push ${p.id}`));
  c.on('recall', (r) => events.push(`recall ${r.app} ${r.id}`));
  await c.connect();
  const r = await push(server, { devices: [device], data: 'oops', ttl: 600 });
  await eventually(() => events.length === 1, 'the push');
  const out = await api(server, 'DELETE', `/v1/messages/${r.id}?app=demo`, undefined, server.app.api_key);
  assert.equal(out.notified, 1);
  await eventually(() => events.length === 2, 'the recall');
  assert.deepEqual(events, [`push ${r.id}`, `recall demo ${r.id}`]);
  c.close();
});

test('binary data arrives as bytes', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device) });
  const pushes = collect(c);
  await c.connect();
  await push(server, { devices: [device], data_base64: Buffer.from([0xff, 0, 1]).toString('base64') });
  await eventually(() => pushes.length === 1, 'the push');
  assert.deepEqual([...pushes[0].data], [0xff, 0, 1]);
  c.close();
});

test('stored messages: acked in a batch, kept in the seq store, replayed after a server restart', async () => {
  const device = deviceId();
  const seqs = new MemorySeqStore();
  const first = new Client({ url: server.wsUrl, token: token(device), seqStore: seqs, ackDelay: 20 });
  const got1 = collect(first);
  await first.connect();
  const m1 = await push(server, { devices: [device], data: 'm1', ttl: 600 });
  await eventually(() => got1.length === 1, 'm1');
  assert.equal(got1[0].seq, 1);
  await eventually(() => seqs.get('demo') === 1, 'the ack kept in the seq store');
  await eventually(async () => (await waiting(device)) === 0, 'the ack on the server');
  first.close();
  await eventually(async () => !(await online(device)), 'the closed client offline');

  // Offline: two stored messages wait; the server restarts.
  const m2 = await push(server, { devices: [device], data: 'm2', ttl: 600 });
  const m3 = await push(server, { devices: [device], data: 'm3', ttl: 600 });
  assert.equal(m2.offline, 1);
  server = await server.restart();

  // A new client (a new process, the same seq store) resumes after m1.
  const second = new Client({ url: server.wsUrl, token: token(device), seqStore: seqs, minBackoff: 50, maxBackoff: 200 });
  const got2 = collect(second);
  let connects = 0;
  second.on('connected', () => connects++);
  await second.connect();
  await eventually(() => got2.length === 2, 'm2 and m3 replayed');
  assert.deepEqual(got2.map((p) => [p.id, p.seq, p.data]), [[m2.id, 2, 'm2'], [m3.id, 3, 'm3']]);
  assert.notEqual(got2[0].id, m1.id);
  await eventually(() => second.lastSeq('demo') === 3, 'acked up to 3');

  // The server restarts under the live client: it reconnects by itself, and
  // nothing acked comes again; what is pushed next arrives (its seq after
  // those the store reserved: protocol.md).
  server = await server.restart();
  await eventually(() => connects === 2, 'the reconnect');
  const m4 = await push(server, { devices: [device], data: 'm4', ttl: 600 });
  await eventually(() => got2.length === 3, 'm4');
  assert.equal(got2[2].id, m4.id);
  assert.ok(got2[2].seq > 3, `m4's seq ${got2[2].seq} after m3's`);
  await eventually(async () => (await waiting(device)) === 0, 'everything acked');
  second.close();
});

test('stored broadcasts come by bseq, acked into the server cursor: not again for the device, at login for the others', async (t) => {
  // A server of its own: the broadcast reaches every device of the app that logs in.
  const shared = server;
  server = await startServer();
  t.after(async () => { await server.destroy(); server = shared; });
  const [here, away] = [deviceId(), deviceId()];
  const c = new Client({ url: server.wsUrl, token: token(here), ackDelay: 10 });
  const got = collect(c);
  await c.connect();
  const b = await push(server, { broadcast: true, data: 'to all', ttl: 600 });
  await eventually(() => got.length === 1, 'the broadcast');
  assert.equal(got[0].id, b.id);
  assert.equal(got[0].seq, 0);
  assert.ok(got[0].bseq > 0);
  const devices = async (d) => api(server, 'GET', `/v1/admin/devices/demo/${d}`, undefined, server.opsToken);
  await eventually(async () => (await devices(here)).broadcasts_waiting === 0, 'the cursor moved');
  assert.equal((await devices(here)).stored_waiting, 0); // nothing copied into the mailbox
  c.close();

  // A new process of the same device knows nothing: the server's cursor says it had it.
  const again = new Client({ url: server.wsUrl, token: token(here) });
  const got2 = collect(again);
  await again.connect();
  const next = await push(server, { devices: [here], data: 'after', ttl: 600 });
  await eventually(() => got2.length === 1, 'the next message');
  assert.equal(got2[0].id, next.id);
  again.close();

  // A device that was away gets it at login.
  const late = new Client({ url: server.wsUrl, token: token(away) });
  const got3 = collect(late);
  await late.connect();
  await eventually(() => got3.some((p) => p.id === b.id), 'the broadcast at login');
  late.close();
});

test('a stored message replayed after a lost ack is handed over once', async () => {
  const device = deviceId();
  // Acks wait long: the connection is lost before this one is sent.
  const c = new Client({ url: server.wsUrl, token: token(device), ackDelay: 60000, minBackoff: 50, maxBackoff: 200 });
  const pushes = collect(c);
  let connects = 0;
  c.on('connected', () => connects++);
  await c.connect();
  const m1 = await push(server, { devices: [device], data: 'once', ttl: 600 });
  await eventually(() => pushes.length === 1, 'm1');
  server = await server.restart();
  await eventually(() => connects === 2, 'the reconnect');
  // The server replays m1 (not acked); the client drops it by id and acks it.
  const m2 = await push(server, { devices: [device], data: 'next', ttl: 600 });
  await eventually(() => pushes.length === 2, 'm2');
  assert.deepEqual(pushes.map((p) => p.id), [m1.id, m2.id]);
  c.close(); // sends the batched ack
  await eventually(async () => (await waiting(device)) === 0, 'acked on close');
  assert.ok(pushes[1].seq > 1, `m2's seq ${pushes[1].seq} after m1's`);
  assert.equal(c.lastSeq(), pushes[1].seq);
});

test('up returns the backend answer; join and leave a group allowed by the token', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device, { groups: ['room-*'] }) });
  const pushes = collect(c);
  await c.connect();
  const reply = await c.up('chat', 'hi there');
  assert.deepEqual(reply, { status: 200, data: 'echo:hi there' });
  assert.equal(upCalls.at(-1).device, device);

  await c.join('room-1');
  await assert.rejects(c.join('lobby'), (err) => err.code === Code.NOT_ALLOWED);
  const r = await push(server, { group: 'room-1', data: 'to the room' });
  assert.equal(r.online, 1);
  await eventually(() => pushes.length === 1, 'the group push');
  await c.leave('room-1');
  assert.equal((await push(server, { group: 'room-1', data: 'x' })).online, 0);
  assert.equal(c.state, 'connected'); // a refused join keeps the connection
  c.close();
});

test('an OS push token registered by the device is kept; a bad vendor is refused, the connection lives on', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device) });
  await c.connect();
  await c.setVendorToken('fcm', 'fcm:token-1');
  await c.setVendorToken('apns', 'ab'.repeat(32));
  await assert.rejects(c.setVendorToken('gcm', 't'), (err) => err.code === Code.BAD_FRAME);
  const got = await api(server, 'GET', `/v1/devices/vendor?app=demo&device=${device}`, undefined, server.app.api_key);
  assert.deepEqual(got.tokens, { fcm: 'fcm:token-1', apns: 'ab'.repeat(32) });
  assert.equal(c.state, 'connected');
  c.close();
});

test('a message shown from an OS notification (markShown) is acked, not emitted, when the socket brings it', async () => {
  const device = deviceId();
  const shown = await push(server, { devices: [device], data: 'shown by the OS', ttl: 600 });
  const fresh = await push(server, { devices: [device], data: 'not shown yet', ttl: 600 });
  const c = new Client({ url: server.wsUrl, token: token(device), ackDelay: 20 });
  const got = collect(c);
  c.markShown(shown.id); // the app woke from the notification carrying longlink_id
  await c.connect();
  await eventually(() => got.length === 1, 'the message not shown');
  assert.deepEqual(got.map((p) => p.id), [fresh.id]);
  await eventually(async () => (await waiting(device)) === 0, 'both acked');
  c.close();
});

test('groups are joined again after a reconnect', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device, { groups: ['g1'] }), minBackoff: 50, maxBackoff: 200 });
  let connects = 0;
  c.on('connected', () => connects++);
  await c.connect();
  await c.join('g1');
  server = await server.restart();
  await eventually(() => connects === 2, 'the reconnect');
  await eventually(async () => (await push(server, { group: 'g1', data: 'x' })).online === 1, 'the group rejoined');
  c.close();
});

test('token refresh: the token function is called before expiry, and the connection outlives its first token', async () => {
  const device = deviceId();
  const asked = [];
  const c = new Client({
    url: server.wsUrl,
    token: token(device, { ttl: 3 }),
    tokenSource: async (app) => { asked.push(app); return token(device, { ttl: 3 }); },
  });
  const ends = [];
  c.on('disconnected', (why) => ends.push(why));
  await c.connect();
  await new Promise((r) => setTimeout(r, 4500)); // past the first token's exp
  assert.ok(asked.length >= 1, 'the token function was asked');
  assert.deepEqual(asked.slice(0, 1), ['demo']);
  assert.deepEqual(ends, []); // no 4011
  assert.equal(c.state, 'connected');
  c.close();
});

test('an expired token without a refresh: 4011, then a reconnect with a token from the token function', async () => {
  const device = deviceId();
  let fresh = false;
  const c = new Client({
    url: server.wsUrl,
    token: token(device, { ttl: 3 }),
    // It fails while the first token is young (no refresh happens), then gives a good one. The
    // first lives 3 s: the connect must be done before it expires, on a loaded box too.
    tokenSource: async () => {
      if (!fresh) throw new Error('not yet');
      return token(device, { ttl: 3600 });
    },
    minBackoff: 50,
    maxBackoff: 200,
  });
  const ends = [];
  let connects = 0;
  c.on('disconnected', (why) => { ends.push(why.code); fresh = true; });
  c.on('connected', () => connects++);
  c.on('error', () => {});
  await c.connect();
  await eventually(() => connects === 2, 'the reconnect with a fresh token', 8000);
  assert.equal(ends[0], Code.TOKEN_EXPIRED);
  c.close();
});

test('one connection, two apps: pushes and seqs per app; an app kicked, the other goes on', async () => {
  const device = deviceId();
  const seqs = new MemorySeqStore();
  const c = new Client({ url: server.wsUrl, tokens: [token(device), mintToken(other.secret, { app: 'other', device })], seqStore: seqs, ackDelay: 10 });
  const pushes = collect(c);
  const ended = [];
  c.on('appEnded', (e) => ended.push(e));
  const welcome = await c.connect();
  assert.deepEqual(welcome.apps, ['demo', 'other']);
  await push(server, { devices: [device], data: 'to demo', ttl: 600 });
  await api(server, 'POST', '/v1/push', { app: 'other', devices: [device], data: 'to other', ttl: 600 }, other.api_key);
  await api(server, 'POST', '/v1/push', { app: 'other', devices: [device], data: 'to other again', ttl: 600 }, other.api_key);
  await eventually(() => pushes.length === 3, 'three pushes');
  assert.deepEqual(pushes.map((p) => [p.app, p.seq, p.data]).sort(), [['demo', 1, 'to demo'], ['other', 1, 'to other'], ['other', 2, 'to other again']]);
  await eventually(() => seqs.get('demo') === 1 && seqs.get('other') === 2, 'each app acked');

  await api(server, 'POST', '/v1/kick', { app: 'other', devices: [device] }, other.api_key);
  await eventually(() => ended.length === 1, 'the other app ended');
  assert.equal(ended[0].app, 'other');
  assert.equal(ended[0].code, Code.KICKED);
  const r = await push(server, { devices: [device], data: 'still here' });
  assert.equal(r.online, 1);
  await eventually(() => pushes.length === 4, 'the demo app goes on');
  assert.equal(c.state, 'connected');
  c.close();
});

test('kicked: 4008 is final, the client stops', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device), minBackoff: 50 });
  await c.connect();
  const closed = new Promise((r) => c.on('closed', r));
  await api(server, 'POST', '/v1/kick', { app: 'demo', devices: [device] }, server.app.api_key);
  const why = await closed;
  assert.equal(why.code, Code.KICKED);
  assert.equal(c.state, 'closed');
});

test('a bad token fails the first connect with 4001', async () => {
  const c = new Client({ url: server.wsUrl, token: mintToken('wrong-secret', { device: 'x' }) });
  await assert.rejects(c.connect(), (err) => err.code === Code.AUTH_FAILED);
  assert.equal(c.state, 'closed');
});

test('replaced by a newer login: 4003 is final for the older client', async () => {
  const device = deviceId();
  const older = new Client({ url: server.wsUrl, token: token(device), minBackoff: 50 });
  await older.connect();
  const closed = new Promise((r) => older.on('closed', r));
  const newer = new Client({ url: server.wsUrl, token: token(device) });
  await newer.connect();
  assert.equal((await closed).code, Code.REPLACED);
  newer.close();
});

test('stats reach /metrics', async () => {
  const device = deviceId();
  const c = new Client({ url: server.wsUrl, token: token(device), heartbeat: 5, statsInterval: 300, network: () => 'wifi' });
  await c.connect();
  const metric = 'longlink_client_connect_seconds_count{app="demo",network="wifi",transport="ws_json"}';
  await eventually(async () => (await (await fetch(server.apiUrl + '/metrics')).text()).includes(metric), 'the stats in /metrics');
  c.close();
});

test('LocalStorageSeqStore keeps seqs in a Storage', () => {
  const m = new Map();
  const storage = { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v) };
  const s = new LocalStorageSeqStore('t:', storage);
  assert.equal(s.get('demo'), 0);
  s.set('demo', 42);
  assert.equal(m.get('t:demo'), '42');
  assert.equal(new LocalStorageSeqStore('t:', storage).get('demo'), 42);
});
