// Compiled (not run) by types.test.mjs: the shipped types describe the SDK
// as an application uses it.
import { Client, Code, LocalStorageSeqStore, LonglinkError, type Push, type Welcome } from 'longlink';

const client = new Client({
  dispatchUrl: 'http://127.0.0.1:8080',
  dispatchUrls: ['http://127.0.0.1:8081', 'http://127.0.0.1:8082'],
  token: 'a.b.c',
  tokenSource: async (app: string) => `${app}.token.x`,
  seqStore: new LocalStorageSeqStore('app:', { getItem: () => null, setItem: () => {} } as unknown as Storage),
  network: () => 'wifi',
});
const off: () => void = client.on('push', (p: Push) => {
  const text: string = typeof p.data === 'string' ? p.data : new TextDecoder().decode(p.data);
  console.log(p.app, p.id, p.seq, text);
});
client.on('recall', ({ app, id }: { app: string; id: string }) => console.log('withdraw', app, id));
client.on('disconnected', ({ code, reason }) => {
  if (code === Code.KICKED) console.log('kicked', reason);
});
client.on('error', (err: Error) => {
  if (err instanceof LonglinkError) console.log(err.code);
});
export async function run(): Promise<void> {
  const w: Welcome = await client.connect();
  const reply = await client.up('chat', 'hello', { app: w.apps[0] });
  console.log(reply.status, client.lastSeq(), client.state);
  await client.join('room-1');
  await client.leave('room-1');
  await client.setVendorToken('fcm', 'token-from-the-os');
  client.markShown('n1-abc'); // the longlink_id of a notification the OS showed
  off();
  client.close();
}
