// A device written against docs/protocol.md with the `ws` package: it logs in
// over the longlink.json subprotocol, pings, prints every frame it gets, and
// exits 0 after its first push.
import WebSocket from 'ws';

const url = process.env.LONGLINK_WS_URL;
const token = process.env.LONGLINK_TOKEN;
const ws = new WebSocket(url, 'longlink.json');
const send = (frame) => ws.send(JSON.stringify(frame));

setTimeout(() => { console.log('timeout'); process.exit(2); }, 10000);

ws.on('open', () => send({ op: 'login', token, last_seq: 0, heartbeat: 30, ref: 'l1' }));
ws.on('message', (raw, isBinary) => {
  if (isBinary) { console.log('unexpected binary message'); process.exit(1); }
  const m = JSON.parse(raw.toString());
  switch (m.op) {
    case 'welcome':
      console.log(`welcome ${m.device} ${m.apps.join(',')} ${m.heartbeat} ${m.ref}`);
      send({ op: 'ping', ref: 'p1' });
      break;
    case 'pong':
      console.log(`pong ${m.ref}`);
      break;
    case 'push':
      console.log(`push ${m.app} ${m.id} ${m.data}`);
      ws.close(1000);
      break;
    case 'error':
      console.log(`error ${m.code} ${m.reason}`);
      process.exit(1);
  }
});
ws.on('close', () => process.exit(0));
ws.on('error', (e) => { console.log(`socket error ${e.message}`); process.exit(1); });
