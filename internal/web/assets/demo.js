// The demo page: a device in the browser. It gets a token for its device
// from /demo/device, connects with the JS SDK, lists its pushes, and pushes
// through the API. Each open page is a device of its own: the devices this
// browser used are kept in localStorage, and a page takes the first that no
// other open page holds (a Web Lock held while the page lives), or a new
// one; so a page opened again is the device it was, and gets what was
// stored for it, while two pages open at once are two devices.
import { Client, LocalStorageSeqStore } from '/demo/longlink.js';

const $ = (sel) => document.querySelector(sel);
const device = async (id) => {
  const resp = await fetch(`/demo/device?device=${encodeURIComponent(id)}`);
  if (!resp.ok) throw new Error((await resp.json()).error);
  return resp.json();
};

// hold takes the lock of device id for as long as the page lives, if no
// other page holds it (or lets it go within wait ms: a page being closed).
const hold = (id, wait = 0) => new Promise((taken) => {
  const opts = wait > 0 ? { signal: AbortSignal.timeout(wait) } : { ifAvailable: true };
  navigator.locks.request(`longlink-demo:${id}`, opts, (lock) => {
    taken(lock !== null);
    return lock && new Promise(() => {}); // never let go
  }).catch(() => taken(false)); // still held when the wait ended
});

const known = JSON.parse(localStorage.getItem('longlink-demo-devices') ?? '[]');
let mine = '';
for (const id of known) {
  if (await hold(id)) {
    mine = id;
    break;
  }
}
if (!mine && known.length > 0 && await hold(known[0], 1500)) mine = known[0];
const me = await device(mine);
if (!mine) {
  await hold(me.device);
  localStorage.setItem('longlink-demo-devices', JSON.stringify([...known, me.device]));
}
$('#device').textContent = me.device;
$('#app').textContent = me.app;

const client = new Client({
  url: me.url,
  token: me.token,
  tokenSource: async () => (await device(me.device)).token,
  seqStore: new LocalStorageSeqStore(`longlink-demo:${me.device}:`),
});
const status = (text) => { $('#status').textContent = text; };
client.on('connected', (w) => status(`connected as ${w.device} (heartbeat ${w.heartbeat} s)`));
client.on('disconnected', ({ code, reason }) => status(`disconnected (${code} ${reason}); reconnecting…`));
client.on('closed', ({ code, reason }) => {
  if (code !== 4003) {
    status(`stopped (${code} ${reason})`);
    return;
  }
  // Another connection of this device took over (another browser, or
  // `longlink listen` with its token): say so, and offer to take it back.
  status(`replaced: device ${me.device} connected elsewhere`);
  $('#replaced').hidden = false;
});
$('#reconnect').addEventListener('click', () => location.reload()); // the same device, taken back
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
