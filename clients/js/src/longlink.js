// longlink's JavaScript SDK: a device's connection to a longlink gateway over
// WebSocket (the longlink.json subprotocol), for browsers and Node.js 20+.
// It finds the gateway through dispatch, logs in (one app or several),
// keeps the negotiated heartbeat, reconnects with jittered backoff, resumes
// stored messages from the last seq it acked (stored broadcasts by bseq),
// acks them in batches, drops repeats by id, refreshes tokens through a
// token function, follows a draining node's redirect, and sends
// client-quality stats.
// No runtime dependencies. The wire format is docs/protocol.md.

/** Close and error codes (docs/protocol.md). */
export const Code = Object.freeze({
  BAD_FRAME: 4000,
  AUTH_FAILED: 4001,
  LOGIN_TIMEOUT: 4002,
  REPLACED: 4003,
  TOO_SLOW: 4004,
  RATE_LIMITED: 4005,
  FRAME_TOO_LARGE: 4006,
  HEARTBEAT_TIMEOUT: 4007,
  KICKED: 4008,
  GOING_AWAY: 4009,
  UPSTREAM_UNAVAILABLE: 4010,
  TOKEN_EXPIRED: 4011,
  NOT_ALLOWED: 4012,
  DRAINING: 4013,
});

/** An error from the server (an error op, or the close code), or from the client itself (code 0). */
export class LonglinkError extends Error {
  constructor(code, reason, app) {
    super(code ? `longlink ${code}: ${reason}` : reason);
    this.name = 'LonglinkError';
    this.code = code;
    this.reason = reason;
    if (app) this.app = app;
  }
}

/** Keeps each app's last handled seq in memory: lost when the page or process ends. */
export class MemorySeqStore {
  #seqs = new Map();
  get(app) { return this.#seqs.get(app) ?? 0; }
  set(app, seq) { this.#seqs.set(app, seq); }
}

/** Keeps each app's last handled seq in localStorage (or any Storage), so a reloaded page resumes. */
export class LocalStorageSeqStore {
  constructor(prefix = 'longlink:seq:', storage = globalThis.localStorage) {
    if (!storage) throw new Error('longlink: no localStorage here; pass a Storage or use MemorySeqStore');
    this.prefix = prefix;
    this.storage = storage;
  }
  get(app) {
    const v = Number(this.storage.getItem(this.prefix + app));
    return Number.isSafeInteger(v) && v > 0 ? v : 0;
  }
  set(app, seq) { this.storage.setItem(this.prefix + app, String(seq)); }
}

const RECENT_IDS = 4096; // message ids remembered to drop repeats
const MAX_RTTS = 64; // ping samples in one stats op
const ACK_BATCH = 64; // handled stored messages that flush the acks at once

const defaults = {
  heartbeat: 0, // seconds proposed; 0 lets the server choose
  minBackoff: 500,
  maxBackoff: 30000,
  connectTimeout: 10000,
  requestTimeout: 10000,
  ackDelay: 100,
  statsInterval: 180000,
};

/**
 * A device's connection to longlink. Create it, add listeners with `on`, then
 * `connect()`. Events: `connected` (welcome), `disconnected` ({code, reason}),
 * `push` ({app, id, seq, data}), `recall` ({app, id}: the app withdrew that
 * message; it may be one this device never got), `error` (LonglinkError or
 * Error), `appEnded` ({app, code, reason}), `closed` ({code, reason}: the
 * client has stopped).
 */
export class Client {
  #opts;
  #listeners = new Map();
  #logins = []; // {app, device, token, got, exp}; an ended app leaves it
  #acked = new Map(); // app -> last seq acked (and kept in the seq store): where a login resumes
  #ackedBSeq = new Map(); // app -> last bseq acked (stored broadcasts; the server keeps the cursor too)
  #toAck = new Map(); // app -> {seq, bseq} waiting in the ack batch
  #ackTimer = null;
  #ackCount = 0;
  #seen = new Set(); // recent stored message ids, in insertion order
  #groups = new Set(); // "app\0group" joined, rejoined after a reconnect
  #pending = new Map(); // ref -> {resolve, reject, timer}
  #nextRef = 0;
  #ws = null;
  #state = 'idle'; // idle, connecting, connected, disconnected, closed
  #welcome = null;
  #movedTo = ''; // where a redirect said to go, until a connect succeeds
  #dispatchFrom = 0; // the dispatch URL that answered last: asked first
  #timers = new Set();
  #lastHeard = 0;
  #quality = { pingAt: 0, rtts: [], connectMs: 0, failures: 0 };
  #closedReason = null;
  #lastError = null; // the last error frame of the live connection: why it closes
  #sleepTimer = null; // the backoff before a reconnect

  /**
   * @param {object} opts see longlink.d.ts (ClientOptions)
   */
  constructor(opts) {
    this.#opts = { ...defaults, ...opts };
    const o = this.#opts;
    o.WebSocket ??= globalThis.WebSocket;
    o.fetch ??= globalThis.fetch?.bind(globalThis);
    o.seqStore ??= new MemorySeqStore();
    if (!o.WebSocket) throw new Error('longlink: no WebSocket here (Node.js 20: run with --experimental-websocket, or pass WebSocket)');
    const tokens = o.tokens ?? (o.token ? [o.token] : []);
    if (tokens.length === 0 || (o.token && o.tokens)) throw new Error('longlink: one of token or tokens is required');
    if (!o.url && !o.dispatchUrl && !o.dispatchUrls?.length) throw new Error('longlink: one of url, dispatchUrl or dispatchUrls is required');
    this.#logins = tokens.map(parseToken);
  }

  /** The connection's state: idle, connecting, connected, disconnected (reconnecting) or closed. */
  get state() { return this.#state; }
  /** What the server granted at the latest login ({device, apps, heartbeat}), or null. */
  get welcome() { return this.#welcome; }
  /** The highest stored seq of app handled by the application and acked. */
  lastSeq(app) { return this.#acked.get(app ?? this.#logins[0]?.app) ?? 0; }

  /** Adds a listener; returns a function that removes it. */
  on(event, fn) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(fn);
    return () => this.off(event, fn);
  }
  off(event, fn) { this.#listeners.get(event)?.delete(fn); }

  #emit(event, value) {
    for (const fn of [...(this.#listeners.get(event) ?? [])]) {
      try {
        fn(value);
      } catch (err) {
        if (event !== 'error') this.#emit('error', err);
      }
    }
  }

  /**
   * Connects and logs in once; resolves with the welcome, or rejects when the
   * first login fails. Then the client stays connected in the background
   * until close() or a final code (4001 without tokenSource, 4003, 4008).
   */
  async connect() {
    if (this.#state !== 'idle') throw new Error('longlink: connect() was called already');
    this.#state = 'connecting';
    for (const l of this.#logins) {
      this.#acked.set(l.app, Number(await this.#opts.seqStore.get(l.app)) || 0);
    }
    try {
      return await this.#connectOnce();
    } catch (err) {
      this.#state = 'closed';
      throw err;
    }
  }

  /** Ends the connection and stops reconnecting. Acks waiting in the batch are sent first. */
  close() {
    if (this.#state === 'closed') return;
    this.#flushAcks();
    this.#stop({ code: 0, reason: 'closed by the client' }, true);
  }

  /** Sends data to the app's backend for biz; resolves with {status, data} (the webhook's answer). */
  async up(biz, data, { app } = {}) {
    const f = { op: 'up', app: this.#appOf(app), biz };
    setData(f, data);
    const r = await this.#request(f);
    return { status: r.status ?? 0, data: dataOf(r) };
  }

  /** Joins a group (allowed by the token's groups claim); rejoined after every reconnect. */
  async join(group, { app } = {}) {
    const a = this.#appOf(app);
    await this.#request({ op: 'join', app: a, group });
    this.#groups.add(a + '\0' + group);
  }

  /**
   * Records that the stored message `id` was shown already, through an OS push notification
   * (its data key `longlink_id`): when the socket brings it, it is acked and not emitted.
   * Call it before or after connect.
   */
  markShown(id) {
    this.#remember(id);
  }

  /**
   * Registers this device's OS push token of a vendor ('fcm', 'apns', 'hms', ...), kept by the
   * server once it resolves; an empty token removes it. Call it when the OS gives the app a token.
   */
  async setVendorToken(vendor, token, { app } = {}) {
    await this.#request({ op: 'vendor_token', app: this.#appOf(app), vendor, token });
  }

  /** Leaves a group. */
  async leave(group, { app } = {}) {
    const a = this.#appOf(app);
    this.#groups.delete(a + '\0' + group);
    await this.#request({ op: 'leave', app: a, group });
  }

  #appOf(app) { return app ?? this.#logins[0]?.app; }

  // --- connecting ---

  async #connectOnce() {
    const start = Date.now();
    try {
      const welcome = await this.#dialLogin();
      this.#quality.connectMs = Math.max(Date.now() - start, 1);
      this.#movedTo = '';
      return welcome;
    } catch (err) {
      this.#quality.failures++;
      throw err;
    }
  }

  // #dialLogin opens a socket, logs in and waits for the welcome, within connectTimeout.
  async #dialLogin() {
    const o = this.#opts;
    const url = this.#movedTo || o.url || (await this.#dispatch());
    if (this.#state === 'closed') throw new LonglinkError(0, 'closed by the client');
    const ws = new o.WebSocket(url, 'longlink.json');
    this.#ws = ws;
    return new Promise((resolve, reject) => {
      let settled = false;
      const fail = (err) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        try { ws.close(); } catch { /* already closed */ }
        reject(err);
      };
      const timer = setTimeout(() => fail(new LonglinkError(0, 'connect timed out')), o.connectTimeout);
      ws.onopen = () => {
        const login = {
          op: 'login',
          tokens: this.#logins.map((l) => l.token),
          last_seqs: this.#logins.map((l) => this.#acked.get(l.app) ?? 0),
          last_bseqs: this.#logins.map((l) => this.#ackedBSeq.get(l.app) ?? 0), // stored broadcasts by bseq
        };
        if (o.heartbeat) login.heartbeat = o.heartbeat;
        ws.send(JSON.stringify(login));
      };
      ws.onerror = () => fail(new LonglinkError(0, `cannot connect to ${url}`));
      ws.onclose = (ev) => fail(new LonglinkError(ev.code >= 4000 ? ev.code : 0, ev.reason || `connection closed (${ev.code})`));
      ws.onmessage = (ev) => {
        let f;
        try { f = JSON.parse(ev.data); } catch { return fail(new LonglinkError(0, 'bad frame from the server')); }
        if (f.op === 'error') return fail(new LonglinkError(f.code, f.reason, f.app));
        if (f.op === 'redirect') return this.#redirected(f.endpoints);
        if (f.op !== 'welcome') return fail(new LonglinkError(0, `got ${f.op} before welcome`));
        settled = true;
        clearTimeout(timer);
        const welcome = { device: f.device, apps: f.apps ?? [], heartbeat: f.heartbeat || 30 };
        this.#live(ws, welcome);
        resolve(welcome);
      };
    });
  }

  // #dispatch asks the API where to connect: the first ws (or wss)
  // endpoint. Each dispatch URL is asked in turn, from the one that answered
  // last, until one answers.
  async #dispatch() {
    const o = this.#opts;
    const urls = [...(o.dispatchUrl ? [o.dispatchUrl] : []), ...(o.dispatchUrls ?? [])];
    const errors = [];
    for (let i = 0; i < urls.length; i++) {
      const at = (this.#dispatchFrom + i) % urls.length;
      try {
        const url = await this.#dispatchAt(urls[at]);
        this.#dispatchFrom = at;
        return url;
      } catch (err) {
        errors.push(`${urls[at]}: ${err.message}`);
      }
    }
    throw new LonglinkError(0, `dispatch: ${errors.join('; ')}`);
  }

  // #dispatchAt asks the API at base where to connect.
  async #dispatchAt(base) {
    const o = this.#opts;
    const l = this.#logins[0];
    const u = `${base.replace(/\/+$/, '')}/v1/dispatch?app=${encodeURIComponent(l.app)}&device=${encodeURIComponent(l.device)}`;
    const resp = await o.fetch(u);
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new LonglinkError(0, `dispatch: ${resp.status} ${body.error ?? ''}`.trim());
    const url = this.#pick(body.endpoints);
    if (!url) throw new LonglinkError(0, `dispatch: no ${this.#kind()} endpoint offered`);
    return url;
  }

  // #kind is the endpoint transport this client takes: wss when asked for
  // (secure), or when the page itself is https, else ws.
  #kind() {
    const secure = this.#opts.secure ?? (this.#opts.url?.startsWith('wss:') || globalThis.location?.protocol === 'https:');
    return secure ? 'wss' : 'ws';
  }

  #pick(endpoints) {
    return (endpoints ?? []).find((e) => e.transport === this.#kind())?.url ?? '';
  }

  #redirected(endpoints) { this.#movedTo = this.#pick(endpoints); }

  // --- a live connection ---

  #live(ws, welcome) {
    this.#state = 'connected';
    this.#welcome = welcome;
    this.#lastHeard = Date.now();
    this.#lastError = null;
    const hb = welcome.heartbeat * 1000;
    ws.onmessage = (ev) => this.#receive(ws, ev.data);
    ws.onclose = (ev) => this.#lost(ws, this.#lastError ?? { code: ev.code, reason: ev.reason || 'connection closed' });
    ws.onerror = () => {};
    this.#every(hb, () => {
      if (this.#ws !== ws) return;
      if (Date.now() - this.#lastHeard > 3 * hb) { // silent for 3 heartbeats: dead
        this.#lastError = { code: Code.HEARTBEAT_TIMEOUT, reason: 'no answer from the server' };
        ws.close();
        return;
      }
      this.#quality.pingAt = Date.now();
      this.#send({ op: 'ping' });
    });
    if (this.#opts.statsInterval > 0) this.#every(this.#opts.statsInterval, () => this.#sendStats());
    if (this.#opts.tokenSource) this.#scheduleRefresh();
    for (const key of this.#groups) {
      const [app, group] = key.split('\0');
      this.#request({ op: 'join', app, group }).catch((err) => {
        if (err.code === Code.NOT_ALLOWED) this.#groups.delete(key);
        this.#emit('error', err);
      });
    }
    this.#emit('connected', welcome);
  }

  #receive(ws, raw) {
    if (this.#ws !== ws) return;
    this.#lastHeard = Date.now();
    let f;
    try { f = JSON.parse(raw); } catch { return; }
    switch (f.op) {
      case 'push':
        return this.#push(f);
      case 'recall':
        return this.#emit('recall', { app: f.app, id: f.id });
      case 'pong':
        if (this.#quality.pingAt && this.#quality.rtts.length < MAX_RTTS) this.#quality.rtts.push(Date.now() - this.#quality.pingAt);
        this.#quality.pingAt = 0;
        return;
      case 'ok':
      case 'up_reply':
        return this.#answer(f);
      case 'redirect':
        return this.#redirected(f.endpoints);
      case 'error': {
        if (this.#answer(f)) return;
        const err = new LonglinkError(f.code, f.reason, f.app);
        if (f.app && (f.code === Code.REPLACED || f.code === Code.KICKED)) { // one app ended, the others go on
          this.#logins = this.#logins.filter((l) => l.app !== f.app);
          this.#emit('appEnded', { app: f.app, code: f.code, reason: f.reason });
          if (this.#logins.length > 0) return;
        }
        if (f.code === Code.UPSTREAM_UNAVAILABLE || f.code === Code.NOT_ALLOWED || f.code === Code.RATE_LIMITED) {
          this.#emit('error', err); // non-fatal: the connection stays
          return;
        }
        this.#lastError = { code: f.code, reason: f.reason }; // why the server closes
      }
    }
  }

  // #push hands a message to the push listeners unless it was handled
  // already (a stored message replayed after a lost ack: same id), then
  // puts a stored one in the ack batch. Seqs are not compared: the
  // server's are the truth.
  #push(f) {
    const p = { app: f.app, id: f.id, seq: f.seq ?? 0, bseq: f.bseq ?? 0, data: dataOf(f) };
    const stored = p.seq > 0 || p.bseq > 0;
    if (!stored || !this.#remember(f.id)) this.#emit('push', p);
    if (!stored) return;
    const batch = this.#toAck.get(f.app) ?? { seq: 0, bseq: 0 };
    if (p.seq > 0) batch.seq = p.seq;
    else batch.bseq = p.bseq;
    this.#toAck.set(f.app, batch);
    if (++this.#ackCount >= ACK_BATCH) this.#flushAcks();
    else this.#ackTimer ??= setTimeout(() => this.#flushAcks(), this.#opts.ackDelay);
  }

  // #remember records a stored message's id and reports whether it was seen before.
  #remember(id) {
    if (this.#seen.has(id)) return true;
    this.#seen.add(id);
    if (this.#seen.size > RECENT_IDS) this.#seen.delete(this.#seen.values().next().value);
    return false;
  }

  // #flushAcks sends one cumulative ack per app, then keeps each app's seq
  // in the seq store: the next login resumes after it. Acks that cannot be
  // sent (the connection is gone) are dropped: those messages come again
  // after the reconnect and are recognised by id.
  #flushAcks() {
    clearTimeout(this.#ackTimer);
    this.#ackTimer = null;
    this.#ackCount = 0;
    for (const [app, { seq, bseq }] of this.#toAck) {
      const ack = { op: 'ack', app };
      if (seq > 0) ack.seq = seq;
      if (bseq > 0) ack.bseq = bseq;
      if (!this.#send(ack)) continue;
      if (bseq > 0) this.#ackedBSeq.set(app, bseq);
      if (seq === 0) continue;
      this.#acked.set(app, seq);
      Promise.resolve(this.#opts.seqStore.set(app, seq)).catch((err) => this.#emit('error', err));
    }
    this.#toAck.clear();
  }

  #sendStats() {
    const q = this.#quality;
    if (q.rtts.length === 0 && q.connectMs === 0 && q.failures === 0) return;
    const network = this.#opts.network?.() ?? 'unknown';
    const transport = this.#kind() + '-json';
    const f = { op: 'stats', network, transport, rtt_ms: q.rtts, connect_ms: q.connectMs, connect_failures: q.failures };
    if (this.#send(f)) Object.assign(q, { rtts: [], connectMs: 0, failures: 0 });
  }

  #send(f) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== 1 || this.#state !== 'connected') return false;
    ws.send(JSON.stringify(f));
    return true;
  }

  #request(f) {
    if (this.#state !== 'connected') return Promise.reject(new LonglinkError(0, 'not connected'));
    const ref = (++this.#nextRef).toString(36);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(ref);
        reject(new LonglinkError(0, `no answer to ${f.op} in time`));
      }, this.#opts.requestTimeout);
      this.#pending.set(ref, { resolve, reject, timer });
      this.#send({ ...f, ref });
    });
  }

  #answer(f) {
    const p = f.ref !== undefined && this.#pending.get(f.ref);
    if (!p) return false;
    this.#pending.delete(f.ref);
    clearTimeout(p.timer);
    if (f.op === 'error') p.reject(new LonglinkError(f.code, f.reason, f.app));
    else p.resolve(f);
    return true;
  }

  // --- losing a connection, reconnecting ---

  #lost(ws, why) {
    if (this.#ws !== ws || this.#state === 'closed') return;
    this.#clearTimers();
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new LonglinkError(0, 'disconnected'));
    }
    this.#pending.clear();
    this.#ws = null;
    this.#state = 'disconnected';
    this.#emit('disconnected', why);
    if (this.#isFinal(why.code)) {
      this.#stop(why, false);
      return;
    }
    this.#reconnect(why.code, 0);
  }

  // #isFinal reports whether reconnecting after code is pointless.
  #isFinal(code) {
    if (code === Code.AUTH_FAILED) return !this.#opts.tokenSource;
    return code === Code.REPLACED || code === Code.KICKED;
  }

  async #reconnect(code, attempt) {
    await this.#sleep(this.#backoff(attempt));
    if (this.#state === 'closed') return;
    if (code === Code.AUTH_FAILED || code === Code.TOKEN_EXPIRED) await this.#freshTokens();
    if (this.#state === 'closed') return;
    try {
      await this.#connectOnce();
    } catch (err) {
      if (this.#state === 'closed') return;
      if (err instanceof LonglinkError && this.#isFinal(err.code)) {
        this.#stop({ code: err.code, reason: err.reason }, false);
        return;
      }
      this.#reconnect(err.code ?? 0, attempt + 1);
    }
  }

  // #backoff is the wait before reconnect attempt n: doubling from
  // minBackoff up to maxBackoff, then a random point in its upper half, so
  // that devices cut off together do not come back together.
  #backoff(n) {
    const d = Math.min(this.#opts.minBackoff * 2 ** Math.min(n, 30), this.#opts.maxBackoff);
    return d / 2 + Math.random() * (d / 2);
  }

  #stop(why, byClient) {
    this.#state = 'closed';
    this.#closedReason = why;
    this.#clearTimers();
    clearTimeout(this.#ackTimer);
    clearTimeout(this.#sleepTimer); // a reconnect waiting never runs: it finds the state closed
    const ws = this.#ws;
    this.#ws = null;
    if (ws) {
      ws.onclose = null;
      try { ws.close(1000); } catch { /* already closed */ }
      if (byClient) this.#emit('disconnected', why);
    }
    for (const [, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(new LonglinkError(0, 'closed'));
    }
    this.#pending.clear();
    this.#emit('closed', why);
  }

  /** Why the client stopped ({code, reason}), or null while it runs. */
  get closedReason() { return this.#closedReason; }

  // --- tokens ---

  async #freshTokens() {
    for (const l of [...this.#logins]) {
      try {
        this.#setToken(parseToken(await this.#opts.tokenSource(l.app)));
      } catch (err) {
        this.#emit('error', err); // the login will say why
      }
    }
  }

  #setToken(next) {
    this.#logins = this.#logins.map((l) => (l.app === next.app ? next : l));
  }

  // #scheduleRefresh refreshes the earliest-expiring token at four fifths of its life.
  #scheduleRefresh() {
    if (this.#logins.length === 0) return;
    const next = this.#logins.reduce((a, b) => (refreshAt(b) < refreshAt(a) ? b : a));
    this.#after(Math.max(refreshAt(next) - Date.now(), 0), async () => {
      try {
        const l = parseToken(await this.#opts.tokenSource(next.app));
        await this.#request({ op: 'refresh', token: l.token });
        this.#setToken(l);
        this.#scheduleRefresh();
      } catch (err) {
        this.#emit('error', err);
        this.#after(1000, () => this.#scheduleRefresh()); // not expired yet: try again soon
      }
    });
  }

  // --- timers, all cleared when a connection ends ---

  #every(ms, fn) {
    const t = setInterval(fn, ms);
    this.#timers.add(() => clearInterval(t));
  }

  #after(ms, fn) {
    const t = setTimeout(fn, Math.min(ms, 2 ** 31 - 1));
    this.#timers.add(() => clearTimeout(t));
  }

  #clearTimers() {
    for (const clear of this.#timers) clear();
    this.#timers.clear();
  }

  #sleep(ms) {
    return new Promise((resolve) => { this.#sleepTimer = setTimeout(resolve, ms); });
  }
}

function refreshAt(l) { return l.got + ((l.exp - l.got) * 4) / 5; }

// parseToken reads app, device and expiry from a JWT without verifying it
// (the server verifies): dispatch and refreshing need them.
function parseToken(token) {
  const parts = typeof token === 'string' ? token.split('.') : [];
  if (parts.length !== 3) throw new Error('longlink: token is not a JWT');
  let claims;
  try {
    claims = JSON.parse(new TextDecoder().decode(fromBase64(parts[1].replace(/-/g, '+').replace(/_/g, '/'))));
  } catch {
    throw new Error('longlink: token payload is not JSON');
  }
  const now = Date.now();
  return { app: claims.app, device: claims.sub, token, got: now, exp: typeof claims.exp === 'number' ? claims.exp * 1000 : now + 3600e3 };
}

function fromBase64(s) {
  const bin = atob(s + '='.repeat((4 - (s.length % 4)) % 4));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

function toBase64(bytes) {
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

// dataOf returns a frame's payload: a string, or a Uint8Array when the
// server sent data_base64 (not UTF-8).
function dataOf(f) {
  if (f.data_base64 !== undefined) return fromBase64(f.data_base64);
  return f.data ?? '';
}

function setData(f, data) {
  if (typeof data === 'string') f.data = data;
  else if (data instanceof Uint8Array) f.data_base64 = toBase64(data);
  else if (data !== undefined) f.data = JSON.stringify(data);
}
