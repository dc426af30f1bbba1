// Types of longlink's JavaScript SDK (src/longlink.js).

/** Close and error codes (docs/protocol.md). */
export declare const Code: Readonly<{
  BAD_FRAME: 4000;
  AUTH_FAILED: 4001;
  LOGIN_TIMEOUT: 4002;
  REPLACED: 4003;
  TOO_SLOW: 4004;
  RATE_LIMITED: 4005;
  FRAME_TOO_LARGE: 4006;
  HEARTBEAT_TIMEOUT: 4007;
  KICKED: 4008;
  GOING_AWAY: 4009;
  UPSTREAM_UNAVAILABLE: 4010;
  TOKEN_EXPIRED: 4011;
  NOT_ALLOWED: 4012;
  DRAINING: 4013;
}>;

/** An error from the server (an error op, or the close code), or from the client itself (code 0). */
export declare class LonglinkError extends Error {
  constructor(code: number, reason: string, app?: string);
  readonly code: number;
  readonly reason: string;
  readonly app?: string;
}

/** Where the client keeps each app's last handled seq, to resume there. */
export interface SeqStore {
  get(app: string): number | Promise<number>;
  set(app: string, seq: number): void | Promise<void>;
}

export declare class MemorySeqStore implements SeqStore {
  get(app: string): number;
  set(app: string, seq: number): void;
}

export declare class LocalStorageSeqStore implements SeqStore {
  constructor(prefix?: string, storage?: Storage);
  get(app: string): number;
  set(app: string, seq: number): void;
}

export interface ClientOptions {
  /** The gateway's WebSocket URL (ws://host:port/ws or wss://...). */
  url?: string;
  /** The API's base URL; without url, every (re)connect asks its /v1/dispatch. */
  dispatchUrl?: string;
  /** More API base URLs, asked in turn after dispatchUrl when one fails (the one that answered is asked first next time). */
  dispatchUrls?: string[];
  /** Take wss endpoints from dispatch. Default: url is wss://, or the page is https. */
  secure?: boolean;
  /** The device token (a JWT from the app backend)... */
  token?: string;
  /** ...or one token per app, all naming this device: one connection, several apps. */
  tokens?: string[];
  /** Gives a fresh token for app: called at four fifths of a token's life, and before reconnecting after 4001 or 4011. */
  tokenSource?: (app: string) => Promise<string> | string;
  /** Heartbeat proposed to the server, in seconds (it clamps it). 0: the server's. */
  heartbeat?: number;
  /** Where last seqs are kept. Default: MemorySeqStore. */
  seqStore?: SeqStore;
  /** The network the device is on now, for client-quality stats. Default: "unknown". */
  network?: () => 'wifi' | 'cellular' | 'unknown';
  /** How often measured quality is sent, ms. Default 180000; 0 sends none. */
  statsInterval?: number;
  /** Reconnect backoff bounds, ms (doubling, jittered). Default 500 and 30000. */
  minBackoff?: number;
  maxBackoff?: number;
  /** Bounds one connect and login, ms. Default 10000. */
  connectTimeout?: number;
  /** Bounds waiting for the answer to up, join, leave, refresh, ms. Default 10000. */
  requestTimeout?: number;
  /** How long handled stored messages wait to be acked together, ms. Default 100. */
  ackDelay?: number;
  /** The WebSocket class. Default: globalThis.WebSocket. */
  WebSocket?: typeof WebSocket;
  /** fetch, for dispatch. Default: globalThis.fetch. */
  fetch?: typeof fetch;
}

export interface Welcome {
  device: string;
  apps: string[];
  /** Seconds, as granted. */
  heartbeat: number;
}

export interface Push {
  app: string;
  id: string;
  /** A stored message's place in the device's mailbox; 0 otherwise. */
  seq: number;
  /** A stored broadcast's place in its app's broadcast log; 0 otherwise. */
  bseq: number;
  /** Text, or bytes when the payload is not UTF-8. */
  data: string | Uint8Array;
}

export interface Reason {
  code: number;
  reason: string;
}

export interface Events {
  connected: Welcome;
  disconnected: Reason;
  push: Push;
  /** The app recalled message id (it may be one this device never got): withdraw it if shown. */
  recall: { app: string; id: string };
  error: Error;
  appEnded: Reason & { app: string };
  closed: Reason;
}

export type State = 'idle' | 'connecting' | 'connected' | 'disconnected' | 'closed';

export declare class Client {
  constructor(opts: ClientOptions);
  readonly state: State;
  readonly welcome: Welcome | null;
  /** Why the client stopped, or null while it runs. */
  readonly closedReason: Reason | null;
  lastSeq(app?: string): number;
  on<E extends keyof Events>(event: E, fn: (value: Events[E]) => void): () => void;
  off<E extends keyof Events>(event: E, fn: (value: Events[E]) => void): void;
  connect(): Promise<Welcome>;
  close(): void;
  up(biz: string, data: string | Uint8Array | unknown, opts?: { app?: string }): Promise<{ status: number; data: string | Uint8Array }>;
  join(group: string, opts?: { app?: string }): Promise<void>;
  leave(group: string, opts?: { app?: string }): Promise<void>;
  markShown(id: string): void;
  setVendorToken(vendor: 'fcm' | 'apns' | 'hms' | 'honor' | 'xiaomi' | 'oppo' | 'vivo', token: string, opts?: { app?: string }): Promise<void>;
}
