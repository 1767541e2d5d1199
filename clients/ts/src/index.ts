/**
 * `@ori/client`: the browser WebSocket client for Ori servers.
 *
 * Wire compatible with the original OriJS browser client
 * (`@orijs/websocket-client`), see docs/PROTOCOL.md:
 *
 * - control messages are flat JSON objects (`{"type":"room.join","room":"r"}`);
 * - server messages are envelopes `{"name","data","timestamp"}` (typed emits)
 *   or flat objects `{"type",...}` (application publishes, replies);
 * - the minimal ping is the text `2`, answered with `3`.
 *
 * Beyond the original: `request()` for socket-router calls, matched by
 * correlation id.
 *
 * @example
 * ```ts
 * import { SocketClient, ClientMessage, Connected } from '@ori/client';
 *
 * const Notification = ClientMessage.define<{ message: string }>('notification');
 * const client = new SocketClient('ws://127.0.0.1:3000/ws');
 * client.on(Connected, ({ reconnected }) => console.log('connected', reconnected));
 * client.on(Notification, (n) => console.log(n.message));
 * client.connect();
 * client.joinRoom('lobby');
 * await client.request('publish', { topic: 'lobby', message: 'hi' });
 * ```
 */

/** A typed message definition: a name, and (at compile time only) the type of its data. */
export interface MessageDefinition<T> {
  readonly name: string;
  /** Phantom field carrying the data type; never set at run time. */
  readonly __data?: T;
}

/** Extracts the data type of a definition. */
export type DataOf<D> = D extends MessageDefinition<infer T> ? T : never;

/** Defines typed messages, the client side of the server's `ServerMessage` definitions. */
export const ClientMessage = {
  /** A definition named `name` whose data is `T`. */
  define<T = unknown>(name: string): MessageDefinition<T> {
    return Object.freeze({ name }) as MessageDefinition<T>;
  },
};

/** Where the connection is. */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'reconnecting';

/** Data of the built-in `Connected` event. */
export interface ConnectedData {
  /** True when this is not the first connection of this client. */
  reconnected: boolean;
  /**
   * Resolves, per room joined with positions, with whether it was
   * recovered on this connection (`{}` when there is none); the same
   * answer as the {@link Recovered} event. A room the connection closed
   * before answering counts as not recovered.
   */
  recovered: Promise<Record<string, boolean>>;
}

/** Data of the built-in `Disconnected` event. */
export interface DisconnectedData {
  code: number;
  reason: string;
  wasClean: boolean;
}

/** Data of the built-in `ReconnectAttempt` event. */
export interface ReconnectAttemptData {
  /** 1 for the first attempt after a disconnect. */
  attempt: number;
  /** Milliseconds until the attempt. */
  delay: number;
}

/** Data of the `RoomJoined` event: the server's `room.joined` reply. */
export interface RoomJoinedData {
  room: string;
  /** The history's epoch (absent when the room keeps no history). */
  epoch?: string;
  /** The latest offset of the room when it was joined. */
  offset?: number;
  /**
   * For a resume: whether every publication missed meanwhile was replayed
   * (`missed` of them). `false`: something may be lost, re-fetch the state.
   * `null` for a first join with positions.
   */
  recovered: boolean | null;
  missed?: number;
}

/** Data of the `Recovered` event. */
export interface RecoveredData {
  /** True when this is not the first connection of this client. */
  reconnected: boolean;
  /** Per room joined with positions: whether it was recovered. */
  rooms: Record<string, boolean>;
  /** True when every room was recovered (nothing missed anywhere). */
  all: boolean;
}

/** Data of the `RoomMessage` event: a publication with its position. */
export interface RoomMessageData {
  room: string;
  offset: number;
  /** The payload: the published JSON value or text (binary: `binary`). */
  data?: unknown;
  /** A binary payload. */
  binary?: Uint8Array;
}

/** Local event: the socket opened (rooms re-joined, buffer flushed). */
export const Connected = ClientMessage.define<ConnectedData>('__ori:connected');
/** Local event: an open connection closed. */
export const Disconnected = ClientMessage.define<DisconnectedData>('__ori:disconnected');
/** Local event: a reconnect is scheduled. */
export const ReconnectAttempt = ClientMessage.define<ReconnectAttemptData>('__ori:reconnect_attempt');
/**
 * Local event, once per connection after every room joined with positions
 * answered: which of them were recovered. A room that was not must have
 * its state re-fetched by the application.
 */
export const Recovered = ClientMessage.define<RecoveredData>('__ori:recovered');
/** The server's reply to a join with positions or a resume (per room). */
export const RoomJoined = ClientMessage.define<RoomJoinedData>('room.joined');
/**
 * A publication of a room joined with positions (its payload is also
 * dispatched as if it had arrived on its own).
 */
export const RoomMessage = ClientMessage.define<RoomMessageData>('room.message');
/** `{"type":"room.join","room":...}` (sent flat). */
export const JoinRoom = ClientMessage.define<{ room: string }>('room.join');
/** `{"type":"room.leave","room":...}` (sent flat). */
export const LeaveRoom = ClientMessage.define<{ room: string }>('room.leave');
/** `{"type":"heartbeat"}`; the server answers `{"type":"heartbeat","timestamp":ms}`. */
export const Heartbeat = ClientMessage.define<{ timestamp?: number }>('heartbeat');
/** `{"type":"error","message":...}` as the server's message registry replies. */
export const ServerError = ClientMessage.define<{ type: 'error'; message: string }>('error');

/** The part of the WebSocket API the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string; wasClean?: boolean }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor (the browser's, or a fake in tests). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Timer functions (injectable for tests). */
export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** Something with `online`/`offline` events (the browser's `window`). */
export interface OnlineEvents {
  addEventListener(type: string, listener: () => void): void;
  removeEventListener(type: string, listener: () => void): void;
}

/** Options of {@link SocketClient}. */
export interface SocketClientOptions {
  /** Join rooms with positions and resume them after reconnects (default false; see {@link JoinOptions}). */
  recover?: boolean;
  /** Subprotocols passed to the WebSocket constructor. */
  protocols?: string | string[];
  /** Reconnect after an unexpected close (default true). */
  reconnect?: boolean;
  /** First back-off ceiling in ms (default 1000). */
  initialDelay?: number;
  /** Largest back-off ceiling in ms (default 30000). */
  maxDelay?: number;
  /** Reconnect attempts before giving up (default Infinity). */
  maxAttempts?: number;
  /** Ms a connection attempt may take before it is abandoned (default 10000). */
  connectionTimeout?: number;
  /** Ms between `2` pings; 0 disables the heartbeat (default 25000). */
  heartbeatInterval?: number;
  /** Ms to wait for the `3` pong (or any message) before reconnecting (default 10000). */
  heartbeatTimeout?: number;
  /** Largest number of messages buffered while disconnected; the oldest are dropped (default 100). */
  bufferSize?: number;
  /** Default timeout of {@link SocketClient.request} in ms (default 10000). */
  requestTimeout?: number;
  /** The WebSocket constructor (default `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** Timer functions (default the global ones). */
  timers?: Timers;
  /** Random numbers in [0, 1) for the jitter (default `Math.random`). */
  random?: () => number;
  /** Source of `online`/`offline` events (default `window` in a browser; `null` disables). */
  onlineEvents?: OnlineEvents | null;
  /** Correlation id generator (default `crypto.randomUUID` when available). */
  correlationId?: () => string;
}

/** Options of one {@link SocketClient.request}. */
export interface RequestOptions {
  /** Ms before the promise rejects (default the client's `requestTimeout`). */
  timeout?: number;
}

/** The error a failed {@link SocketClient.request} rejects with. */
export class RequestError extends Error {
  constructor(
    message: string,
    /** The request's message type. */
    readonly type: string,
    /** The request's correlation id. */
    readonly correlationId: string,
    /** Why: the server's `error`, a timeout, or the connection closing. */
    readonly kind: 'server' | 'timeout' | 'closed',
  ) {
    super(message);
    this.name = 'RequestError';
  }
}

/**
 * Full-jitter exponential back-off: a uniformly random delay in
 * `[0, min(maxDelay, initialDelay * 2^attempt)]`, `attempt` counting from 0.
 */
export function backoffDelay(
  attempt: number,
  initialDelay: number,
  maxDelay: number,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(maxDelay, initialDelay * Math.pow(2, Math.max(0, attempt)));
  return Math.min(ceiling, Math.floor(random() * (ceiling + 1)));
}

type Handler = (data: any, raw: unknown) => void;

interface Pending {
  type: string;
  resolve: (v: any) => void;
  reject: (e: Error) => void;
  timer: unknown;
  /** The socket the request went out on (replies only come back on it). */
  socket: WebSocketLike | null;
}

interface Buffered {
  text: string;
  onSent?: (ws: WebSocketLike) => void;
}

const OPEN = 1;
/** Close codes after which the client does not reconnect (PROTOCOL.md section 6). */
const FINAL_CLOSE_CODES = new Set([1008, 1011]);

function defaultCorrelationId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

interface RoomPosition {
  positions: boolean;
  /** A connection already joined it: a later join is a resume. */
  joined?: boolean;
  epoch?: string;
  offset?: number;
}

/** Options of {@link SocketClient.joinRoom}. */
export interface JoinOptions {
  /**
   * Join with positions (PROTOCOL.md section 8): the client tracks the
   * room's offset and resumes with `since` after every reconnect, so
   * publications missed meanwhile are replayed ({@link Recovered},
   * {@link RoomJoined}). Default: the client's `recover` option.
   */
  recover?: boolean;
}

function decodeBase64(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** A WebSocket connection to an Ori server with rooms, typed messages, reconnect and requests. */
export class SocketClient {
  private readonly url: string;
  private readonly opts: Required<
    Pick<
      SocketClientOptions,
      | 'reconnect'
      | 'initialDelay'
      | 'maxDelay'
      | 'maxAttempts'
      | 'connectionTimeout'
      | 'heartbeatInterval'
      | 'heartbeatTimeout'
      | 'bufferSize'
      | 'requestTimeout'
      | 'recover'
    >
  >;
  private readonly WS: WebSocketConstructor | undefined;
  private readonly protocols: string | string[] | undefined;
  private readonly timers: Timers;
  private readonly random: () => number;
  private readonly makeCorrelationId: () => string;
  private readonly onlineEvents: OnlineEvents | null;

  private ws: WebSocketLike | null = null;
  private _state: ConnectionState = 'disconnected';
  private wanted = false;
  private destroyed = false;
  private paused = false;
  private everConnected = false;
  private attempt = 0;
  /** Rooms joined, and for those with positions the latest position seen. */
  private readonly roomSet = new Map<string, RoomPosition>();
  /** Rooms with positions whose `room.joined` this connection still awaits. */
  /** Rooms with positions whose reply this connection awaits: resumed or first joins. */
  private awaiting = new Map<string, boolean>();
  private recoveredNow: Record<string, boolean> = {};
  private reconnectedNow = false;
  private settleRecovered: ((rooms: Record<string, boolean>) => void) | null = null;
  private buffer: Buffered[] = [];
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly rawHandlers = new Set<(data: unknown) => void>();
  private readonly stateHandlers = new Set<(s: ConnectionState, prev: ConnectionState) => void>();
  private readonly errorHandlers = new Set<(e: Error) => void>();
  private readonly pending = new Map<string, Pending>();
  private connectTimer: unknown = null;
  private reconnectTimer: unknown = null;
  private pingTimer: unknown = null;
  private pongTimer: unknown = null;
  private readonly onOnline = (): void => this.handleOnline();
  private readonly onOffline = (): void => this.handleOffline();

  constructor(url: string, options: SocketClientOptions = {}) {
    this.url = url;
    this.opts = {
      reconnect: options.reconnect ?? true,
      initialDelay: options.initialDelay ?? 1000,
      maxDelay: options.maxDelay ?? 30000,
      maxAttempts: options.maxAttempts ?? Infinity,
      connectionTimeout: options.connectionTimeout ?? 10000,
      heartbeatInterval: options.heartbeatInterval ?? 25000,
      heartbeatTimeout: options.heartbeatTimeout ?? 10000,
      bufferSize: options.bufferSize ?? 100,
      requestTimeout: options.requestTimeout ?? 10000,
      recover: options.recover ?? false,
    };
    this.WS =
      options.WebSocket ??
      ((globalThis as { WebSocket?: unknown }).WebSocket as WebSocketConstructor | undefined);
    this.protocols = options.protocols;
    this.timers = options.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h as ReturnType<typeof setTimeout>),
    };
    this.random = options.random ?? Math.random;
    this.makeCorrelationId = options.correlationId ?? defaultCorrelationId;
    this.onlineEvents =
      options.onlineEvents !== undefined
        ? options.onlineEvents
        : typeof window !== 'undefined' && typeof window.addEventListener === 'function'
          ? window
          : null;
    this.onlineEvents?.addEventListener('online', this.onOnline);
    this.onlineEvents?.addEventListener('offline', this.onOffline);
  }

  /** The connection state. */
  get state(): ConnectionState {
    return this._state;
  }

  /** True while the socket is open. */
  get isConnected(): boolean {
    return this._state === 'connected';
  }

  /** The rooms this client is in (re-joined after every reconnect). */
  get rooms(): string[] {
    return [...this.roomSet.keys()];
  }

  /**
   * The latest position seen in a room joined with positions (what the
   * next resume sends as `since`), or `undefined`.
   */
  position(room: string): { epoch: string; offset: number } | undefined {
    const r = this.roomSet.get(room);
    return r?.epoch !== undefined && r.offset !== undefined ? { epoch: r.epoch, offset: r.offset } : undefined;
  }

  /** Messages waiting for a connection. */
  get bufferedCount(): number {
    return this.buffer.length;
  }

  /** Opens the connection (no-op while connecting or connected). */
  connect(): void {
    if (this.destroyed) throw new Error('SocketClient was destroyed');
    this.wanted = true;
    if (this.ws || this.reconnectTimer !== null) return;
    this.attempt = 0;
    if (this.paused) {
      this.setState('disconnected');
      return;
    }
    this.open();
  }

  /** Closes the connection (1000) and stops reconnecting; rooms and handlers stay. */
  disconnect(): void {
    this.wanted = false;
    this.clearTimer('reconnectTimer');
    if (this.ws) {
      const ws = this.ws;
      this.detach(ws);
      try {
        ws.close(1000, 'Client disconnect');
      } catch {
        /* already closed */
      }
      this.handleClose(ws, 1000, 'Client disconnect', true);
    } else {
      this.setState('disconnected');
    }
  }

  /** Disconnects and releases everything: handlers, rooms, buffer, browser listeners. */
  destroy(): void {
    if (this.destroyed) return;
    this.disconnect();
    this.destroyed = true;
    this.onlineEvents?.removeEventListener('online', this.onOnline);
    this.onlineEvents?.removeEventListener('offline', this.onOffline);
    for (const [id, p] of this.pending) {
      this.timers.clearTimeout(p.timer);
      p.reject(new RequestError('SocketClient destroyed', p.type, id, 'closed'));
    }
    this.pending.clear();
    this.buffer = [];
    this.roomSet.clear();
    this.handlers.clear();
    this.rawHandlers.clear();
    this.stateHandlers.clear();
    this.errorHandlers.clear();
  }

  /**
   * Calls `handler` for messages of `def`: envelopes `{name,data,timestamp}`
   * with `def.name` get their `data`; flat messages `{type,...}` with
   * `type === def.name` get the whole object. Returns the unsubscribe function.
   */
  on<T>(def: MessageDefinition<T> | string, handler: (data: T, raw: unknown) => void): () => void {
    const name = typeof def === 'string' ? def : def.name;
    let set = this.handlers.get(name);
    if (!set) {
      set = new Set();
      this.handlers.set(name, set);
    }
    const h = handler as Handler;
    set.add(h);
    return () => {
      set.delete(h);
      if (set.size === 0 && this.handlers.get(name) === set) this.handlers.delete(name);
    };
  }

  /** Calls `handler` with every parsed message (or the raw text when it is not JSON). */
  onMessage(handler: (message: unknown) => void): () => void {
    this.rawHandlers.add(handler);
    return () => this.rawHandlers.delete(handler);
  }

  /** Calls `handler` on every state change. */
  onStateChange(handler: (state: ConnectionState, previous: ConnectionState) => void): () => void {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }

  /** Calls `handler` on errors (socket errors, server `error` messages, dropped buffer entries, giving up). */
  onError(handler: (error: Error) => void): () => void {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }

  /**
   * Sends `{type: def.name, ...data}` (flat, as the original client does);
   * data that is not an object goes as `{type, data}`.
   */
  emit<T>(def: MessageDefinition<T> | string, data?: T): void {
    const type = typeof def === 'string' ? def : def.name;
    if (data !== null && typeof data === 'object' && !Array.isArray(data)) {
      this.send({ ...(data as object), type });
    } else if (data === undefined) {
      this.send({ type });
    } else {
      this.send({ type, data });
    }
  }

  /** Sends `obj` as JSON (buffered while disconnected). */
  send(obj: unknown): void {
    this.sendRaw(JSON.stringify(obj));
  }

  /** Sends a text frame as is (buffered while disconnected). */
  sendRaw(text: string): void {
    this.sendOrBuffer({ text });
  }

  /**
   * Joins a room now (or on the next connect), and again after every
   * reconnect; with `recover`, resuming where the last connection left off.
   */
  joinRoom(room: string, options: JoinOptions = {}): void {
    if (this.roomSet.has(room)) return;
    this.roomSet.set(room, { positions: options.recover ?? this.opts.recover });
    // While disconnected, the join goes out with the re-joins on connect.
    if (this.isOpen()) this.ws!.send(this.joinMessage(room));
  }

  /**
   * Drops the connection as a network failure would (close 4001 from the
   * client side), then reconnects as after any drop, resuming the rooms
   * joined with positions. For trying recovery out.
   */
  drop(): void {
    const ws = this.ws;
    if (!ws || !this.isOpen()) return;
    this.abort(ws, 4001, 'Dropped by the application');
  }

  private joinMessage(room: string): string {
    const r = this.roomSet.get(room);
    if (!r?.positions) return JSON.stringify({ type: JoinRoom.name, room });
    if (this.isOpen()) this.awaiting.set(room, r.joined === true);
    if (r.epoch !== undefined && r.offset !== undefined) {
      return JSON.stringify({ type: JoinRoom.name, room, since: { epoch: r.epoch, offset: r.offset } });
    }
    return JSON.stringify({ type: JoinRoom.name, room, recover: true });
  }

  /** Leaves a room. */
  leaveRoom(room: string): void {
    if (!this.roomSet.delete(room)) return;
    // A new connection starts in no room, so there is nothing to buffer.
    if (this.isOpen()) this.ws!.send(JSON.stringify({ type: LeaveRoom.name, room }));
  }

  /**
   * Calls a socket-router route: sends `{type, data, correlationId}` and
   * resolves with the reply's `data`; rejects with a {@link RequestError}
   * carrying the reply's `error`, on timeout, or when the connection closes
   * after the request went out.
   */
  request<R = unknown, T = unknown>(
    def: MessageDefinition<T> | string,
    data?: T,
    options: RequestOptions = {},
  ): Promise<R> {
    const type = typeof def === 'string' ? def : def.name;
    const correlationId = this.makeCorrelationId();
    const timeout = options.timeout ?? this.opts.requestTimeout;
    return new Promise<R>((resolve, reject) => {
      if (this.destroyed) {
        reject(new RequestError('SocketClient destroyed', type, correlationId, 'closed'));
        return;
      }
      const entry: Pending = {
        type,
        resolve,
        reject,
        socket: null,
        timer: this.timers.setTimeout(() => {
          if (this.pending.get(correlationId) !== entry) return;
          this.pending.delete(correlationId);
          this.buffer = this.buffer.filter((b) => b.text !== text);
          reject(new RequestError(`Request ${type} timed out after ${timeout} ms`, type, correlationId, 'timeout'));
        }, timeout),
      };
      this.pending.set(correlationId, entry);
      const text = JSON.stringify({ type, data, correlationId });
      this.sendOrBuffer({ text, onSent: (ws) => (entry.socket = ws) });
    });
  }

  // ---- internals ----

  private isOpen(): boolean {
    return this._state === 'connected' && this.ws !== null && this.ws.readyState === OPEN;
  }

  private sendOrBuffer(item: Buffered): void {
    if (this.destroyed) return;
    if (this.isOpen()) {
      this.ws!.send(item.text);
      item.onSent?.(this.ws!);
      return;
    }
    this.buffer.push(item);
    while (this.buffer.length > this.opts.bufferSize) {
      const dropped = this.buffer.shift()!;
      this.error(new Error(`Send buffer full (${this.opts.bufferSize}); dropped the oldest message: ${dropped.text.slice(0, 100)}`));
    }
  }

  private setState(s: ConnectionState): void {
    if (s === this._state) return;
    const prev = this._state;
    this._state = s;
    for (const h of [...this.stateHandlers]) {
      try {
        h(s, prev);
      } catch (e) {
        this.error(e);
      }
    }
  }

  private error(e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    for (const h of [...this.errorHandlers]) {
      try {
        h(err);
      } catch {
        /* an error handler must not break the client */
      }
    }
  }

  private dispatch(name: string, data: unknown, raw: unknown): void {
    const set = this.handlers.get(name);
    if (!set) return;
    for (const h of [...set]) {
      try {
        h(data, raw);
      } catch (e) {
        this.error(e);
      }
    }
  }

  private clearTimer(key: 'connectTimer' | 'reconnectTimer' | 'pingTimer' | 'pongTimer'): void {
    if (this[key] !== null) {
      this.timers.clearTimeout(this[key]);
      this[key] = null;
    }
  }

  private open(): void {
    if (!this.WS) {
      this.error(new Error('No WebSocket implementation available'));
      this.setState('disconnected');
      return;
    }
    if (this._state !== 'reconnecting') this.setState('connecting');
    let ws: WebSocketLike;
    try {
      ws = this.protocols === undefined ? new this.WS(this.url) : new this.WS(this.url, this.protocols);
    } catch (e) {
      this.error(e);
      this.afterClose(1006);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.handleOpen(ws);
    ws.onmessage = (ev) => this.handleMessage(ev.data);
    ws.onerror = () => this.error(new Error('WebSocket error'));
    ws.onclose = (ev) => this.handleClose(ws, ev.code, ev.reason ?? '', ev.wasClean ?? false);
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = null;
      this.error(new Error(`Connection timed out after ${this.opts.connectionTimeout} ms`));
      this.abort(ws, 4008, 'Connection timeout');
    }, this.opts.connectionTimeout);
  }

  /** Drops `ws` now (without waiting for its close event) and handles the close. */
  private abort(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    this.detach(ws);
    try {
      ws.close(code, reason);
    } catch {
      /* ignore */
    }
    this.handleClose(ws, code, reason, false);
  }

  private detach(ws: WebSocketLike): void {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
  }

  private handleOpen(ws: WebSocketLike): void {
    if (this.ws !== ws) return;
    this.clearTimer('connectTimer');
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.attempt = 0;
    this.setState('connected');
    if (this.ws !== ws || !this.isOpen()) return;
    this.awaiting = new Map();
    this.recoveredNow = {};
    this.reconnectedNow = reconnected;
    for (const room of this.roomSet.keys()) ws.send(this.joinMessage(room));
    const recovered = new Promise<Record<string, boolean>>((resolve) => {
      this.settleRecovered = resolve;
    });
    if (this.awaiting.size === 0) this.finishRecovered();
    const queued = this.buffer;
    this.buffer = [];
    for (const item of queued) {
      ws.send(item.text);
      item.onSent?.(ws);
    }
    this.schedulePing();
    this.dispatch(Connected.name, { reconnected, recovered }, null);
  }

  /** Every room with positions answered (or the connection closed). */
  private finishRecovered(): void {
    const rooms = this.recoveredNow;
    for (const room of this.awaiting.keys()) rooms[room] = false;
    this.awaiting = new Map();
    this.recoveredNow = {};
    const settle = this.settleRecovered;
    this.settleRecovered = null;
    settle?.(rooms);
    if (Object.keys(rooms).length === 0) return;
    const all = Object.values(rooms).every(Boolean);
    this.dispatch(Recovered.name, { reconnected: this.reconnectedNow, rooms, all }, null);
  }

  private schedulePing(): void {
    this.clearTimer('pingTimer');
    if (this.opts.heartbeatInterval <= 0) return;
    const ws = this.ws;
    this.pingTimer = this.timers.setTimeout(() => {
      this.pingTimer = null;
      if (!ws || this.ws !== ws || !this.isOpen()) return;
      ws.send('2');
      if (this.pongTimer === null) {
        this.pongTimer = this.timers.setTimeout(() => {
          this.pongTimer = null;
          this.error(new Error(`No pong within ${this.opts.heartbeatTimeout} ms; reconnecting`));
          this.abort(ws, 4000, 'Heartbeat timeout');
        }, this.opts.heartbeatTimeout);
      }
      this.schedulePing();
    }, this.opts.heartbeatInterval);
  }

  private handleMessage(data: unknown): void {
    // Any message proves the connection alive.
    this.clearTimer('pongTimer');
    if (typeof data !== 'string') {
      for (const h of [...this.rawHandlers]) h(data);
      return;
    }
    if (data === '3') return;
    let msg: unknown;
    try {
      msg = JSON.parse(data);
    } catch {
      for (const h of [...this.rawHandlers]) h(data);
      return;
    }
    for (const h of [...this.rawHandlers]) {
      try {
        h(msg);
      } catch (e) {
        this.error(e);
      }
    }
    if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return;
    const m = msg as Record<string, unknown>;
    if (typeof m.correlationId === 'string' && typeof m.type === 'string') {
      const p = this.pending.get(m.correlationId);
      if (p && p.type === m.type && ('data' in m || 'error' in m)) {
        this.pending.delete(m.correlationId);
        this.timers.clearTimeout(p.timer);
        if (typeof m.error === 'string') {
          p.reject(new RequestError(m.error, p.type, m.correlationId, 'server'));
        } else {
          p.resolve(m.data);
        }
        return;
      }
    }
    if (m.type === RoomJoined.name && typeof m.room === 'string') {
      this.handleJoined(m);
      return;
    }
    if (m.type === RoomMessage.name && typeof m.room === 'string' && typeof m.offset === 'number') {
      this.handleRoomMessage(m);
      return;
    }
    this.dispatchValue(m);
  }

  /** Dispatches a parsed message to the typed handlers. */
  private dispatchValue(m: Record<string, unknown>): void {
    if (typeof m.name === 'string' && 'data' in m) {
      this.dispatch(m.name, m.data, m);
    } else if (typeof m.type === 'string') {
      if (m.type === ServerError.name && typeof m.message === 'string') {
        this.error(new Error(m.message));
      }
      this.dispatch(m.type, m, m);
    }
  }

  private handleJoined(m: Record<string, unknown>): void {
    const room = m.room as string;
    const r = this.roomSet.get(room);
    const recovered = typeof m.recovered === 'boolean' ? m.recovered : null;
    if (r) {
      r.joined = true;
      if (typeof m.epoch === 'string' && typeof m.offset === 'number') {
        // A recovered resume replays from our offset (the replay advances
        // it); otherwise the live stream starts after `offset`.
        if (recovered !== true) r.offset = m.offset;
        r.epoch = m.epoch;
      } else {
        // The room keeps no history: nothing can be resumed.
        r.epoch = undefined;
        r.offset = undefined;
      }
    }
    const data: RoomJoinedData = { room, recovered };
    if (typeof m.epoch === 'string') data.epoch = m.epoch;
    if (typeof m.offset === 'number') data.offset = m.offset;
    if (typeof m.missed === 'number') data.missed = m.missed;
    this.dispatch(RoomJoined.name, data, m);
    const resumed = this.awaiting.get(room);
    if (resumed === undefined) return;
    this.awaiting.delete(room);
    // A first join has nothing to lose; a rejoin reports what it got (a
    // room without history cannot be recovered).
    this.recoveredNow[room] = resumed ? recovered === true : true;
    if (this.awaiting.size === 0) this.finishRecovered();
  }

  private handleRoomMessage(m: Record<string, unknown>): void {
    const room = m.room as string;
    const offset = m.offset as number;
    const r = this.roomSet.get(room);
    if (r && r.offset !== undefined && offset <= r.offset) return; // already seen
    if (r) r.offset = offset;
    const data: RoomMessageData = { room, offset };
    if (typeof m.binary === 'string') data.binary = decodeBase64(m.binary);
    else data.data = m.data;
    this.dispatch(RoomMessage.name, data, m);
    // The payload reaches the handlers as if it had arrived on its own.
    if (data.binary !== undefined) {
      for (const h of [...this.rawHandlers]) h(data.binary);
      return;
    }
    const inner = m.data;
    for (const h of [...this.rawHandlers]) {
      try {
        h(inner);
      } catch (e) {
        this.error(e);
      }
    }
    if (inner !== null && typeof inner === 'object' && !Array.isArray(inner)) {
      this.dispatchValue(inner as Record<string, unknown>);
    }
  }

  private handleClose(ws: WebSocketLike, code: number, reason: string, wasClean: boolean): void {
    if (this.ws !== ws) return;
    this.detach(ws);
    this.ws = null;
    if (this.settleRecovered) {
      // Closed before every room answered: those count as not recovered.
      const settle = this.settleRecovered;
      const rooms = this.recoveredNow;
      for (const room of this.awaiting.keys()) rooms[room] = false;
      this.settleRecovered = null;
      this.awaiting = new Map();
      this.recoveredNow = {};
      settle(rooms);
    }
    this.clearTimer('connectTimer');
    this.clearTimer('pingTimer');
    this.clearTimer('pongTimer');
    const wasConnected = this._state === 'connected';
    for (const [id, p] of this.pending) {
      if (p.socket === ws) {
        this.pending.delete(id);
        this.timers.clearTimeout(p.timer);
        p.reject(new RequestError(`Connection closed (${code}) before the reply to ${p.type}`, p.type, id, 'closed'));
      }
    }
    if (wasConnected) this.dispatch(Disconnected.name, { code, reason, wasClean }, null);
    if (FINAL_CLOSE_CODES.has(code)) {
      this.wanted = false;
      this.error(new Error(`Connection closed by the server (${code}${reason ? ` ${reason}` : ''}); not reconnecting`));
    }
    this.afterClose(code);
  }

  private afterClose(code: number): void {
    if (!this.wanted || !this.opts.reconnect || this.destroyed || FINAL_CLOSE_CODES.has(code)) {
      this.setState('disconnected');
      return;
    }
    if (this.paused) {
      // Offline: wait for the `online` event instead of burning attempts.
      this.setState('disconnected');
      return;
    }
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.attempt >= this.opts.maxAttempts) {
      this.wanted = false;
      this.setState('disconnected');
      this.error(new Error(`Gave up reconnecting after ${this.attempt} attempts`));
      return;
    }
    const delay = backoffDelay(this.attempt, this.opts.initialDelay, this.opts.maxDelay, this.random);
    this.attempt += 1;
    this.setState('reconnecting');
    this.dispatch(ReconnectAttempt.name, { attempt: this.attempt, delay }, null);
    this.reconnectTimer = this.timers.setTimeout(() => {
      this.reconnectTimer = null;
      if (this.wanted && !this.destroyed && !this.paused && !this.ws) this.open();
    }, delay);
  }

  private handleOffline(): void {
    if (this.destroyed || this.paused) return;
    this.paused = true;
    this.clearTimer('reconnectTimer');
    if (this.ws) this.abort(this.ws, 4001, 'Offline');
    else if (this._state === 'reconnecting') this.setState('disconnected');
  }

  private handleOnline(): void {
    if (this.destroyed || !this.paused) return;
    this.paused = false;
    if (this.wanted && !this.ws && this.reconnectTimer === null) {
      this.attempt = 0;
      this.open();
    }
  }
}
