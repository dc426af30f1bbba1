// The demo page: a device in the browser. It gets a token for its device
// (kept in localStorage, so a reload is the same device) from /demo/device,
// connects with the JS SDK, lists its pushes, and pushes through the API.
import { Client, LocalStorageSeqStore } from '/demo/longlink.js';

const $ = (sel) => document.querySelector(sel);
const saved = localStorage.getItem('longlink-demo-device') ?? '';
const device = async () => {
  const resp = await fetch(`/demo/device?device=${encodeURIComponent(saved)}`);
  if (!resp.ok) throw new Error((await resp.json()).error);
  return resp.json();
};

const me = await device();
localStorage.setItem('longlink-demo-device', me.device);
$('#device').textContent = me.device;
$('#app').textContent = me.app;

const client = new Client({
  url: me.url,
  token: me.token,
  tokenSource: async () => (await device()).token,
  seqStore: new LocalStorageSeqStore(`longlink-demo:${me.device}:`),
});
const status = (text) => { $('#status').textContent = text; };
client.on('connected', (w) => status(`connected as ${w.device} (heartbeat ${w.heartbeat} s)`));
client.on('disconnected', ({ code, reason }) => status(`disconnected (${code} ${reason}); reconnecting…`));
client.on('closed', ({ code, reason }) => status(`stopped (${code} ${reason})`));
client.on('push', (p) => {
  const text = typeof p.data === 'string' ? p.data : `${p.data.length} bytes`;
  const li = document.createElement('li');
  li.dataset.id = p.id;
  li.append(text, ' ', Object.assign(document.createElement('code'), { textContent: `id=${p.id}${p.seq ? ` seq=${p.seq}` : ''}` }));
  $('#pushes').prepend(li);
});
client.connect().catch((err) => status(`cannot connect: ${err.message}`));

$('#push-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const body = { app: me.app, data: f.get('data'), ttl: Number(f.get('ttl')) || 0 };
  if (f.get('to') === 'broadcast') body.broadcast = true;
  else body.devices = [me.device];
  const resp = await fetch('/v1/push', {
    method: 'POST',
    headers: { Authorization: `Bearer ${me.api_key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  $('#push-out').textContent = `${resp.status} ${JSON.stringify(await resp.json())}`;
});
