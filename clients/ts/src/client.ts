// The connection: its life cycle (open, authenticate, ready, close,
// reconnect), the heartbeat, the send buffer and the dispatch of what
// arrives. Rooms, requests, authentication and the reconnect policy live in
// their own modules; this wires them to the socket.

import { InBandAuth } from './auth.js';
import {
  Authenticated,
  AuthExpiring,
  Connected,
  Disconnected,
  LeaveRoom,
  ReconnectAttempt,
  Recovered,
  RoomJoined,
  RoomMessage,
  ServerError,
  TokenError,
} from './definitions.js';
import type { MessageDefinition } from './definitions.js';
import { OPEN } from './options.js';
import type {
  ConnectionState,
  JoinOptions,
  OnlineEvents,
  RequestOptions,
  SocketClientOptions,
  Timers,
  WebSocketConstructor,
  WebSocketLike,
} from './options.js';
import { backoffDelay, isFinalClose } from './reconnect.js';
import { defaultCorrelationId, PendingRequests, RequestError } from './requests.js';
import { Rooms } from './rooms.js';

type Handler = (data: unknown, raw: unknown) => void;

interface Buffered {
  text: string;
  onSent?: (ws: WebSocketLike) => void;
}

/**
 * Close code of the client's own close when `getToken` fails on a new
 * connection (the 4000s are the application's; 4401 after HTTP's 401).
 */
const TOKEN_UNAVAILABLE = 4401;

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
  /** Set with `getToken`: every socket authenticates before it is ready. */
  private readonly auth: InBandAuth | null;

  private ws: WebSocketLike | null = null;
  /**
   * The current socket's `open` event came: its close is reported as
   * `Disconnected` (with `getToken` also while it authenticates).
   */
  private opened = false;
  private _state: ConnectionState = 'disconnected';
  private wanted = false;
  private destroyed = false;
  private paused = false;
  private everConnected = false;
  private attempt = 0;
  private readonly roomState = new Rooms();
  private buffer: Buffered[] = [];
  private readonly handlers = new Map<string, Set<Handler>>();
  private readonly rawHandlers = new Set<(data: unknown) => void>();
  private readonly stateHandlers = new Set<(s: ConnectionState, prev: ConnectionState) => void>();
  private readonly errorHandlers = new Set<(e: Error) => void>();
  private readonly requests: PendingRequests;
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
    this.requests = new PendingRequests(this.timers);
    this.auth = options.getToken
      ? new InBandAuth({
          getToken: options.getToken,
          credentials: options.credentials,
          onTokenError: (error, refresh, ws) => this.handleTokenError(error, refresh, ws),
        })
      : null;
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

  /** True while the socket is open (and, with `getToken`, authenticated). */
  get isConnected(): boolean {
    return this._state === 'connected';
  }

  /** The rooms this client is in (re-joined after every reconnect). */
  get rooms(): string[] {
    return this.roomState.names;
  }

  /**
   * The latest position seen in a room joined with positions (what the
   * next resume sends as `since`), or `undefined`.
   */
  position(room: string): { epoch: string; offset: number } | undefined {
    return this.roomState.position(room);
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
    this.requests.destroy();
    this.buffer = [];
    this.roomState.clear();
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

  /**
   * Calls `handler` on errors (socket errors, server `error` messages,
   * dropped buffer entries, giving up, a failing `getToken`).
   */
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

  /** Sends `obj` as JSON (buffered while disconnected or authenticating). */
  send(obj: unknown): void {
    this.sendRaw(JSON.stringify(obj));
  }

  /** Sends a text frame as is (buffered while disconnected or authenticating). */
  sendRaw(text: string): void {
    this.sendOrBuffer({ text });
  }

  /**
   * Joins a room now (or once connected), and again after every
   * reconnect; with `recover`, resuming where the last connection left off.
   */
  joinRoom(room: string, options: JoinOptions = {}): void {
    if (this.roomState.has(room)) return;
    this.roomState.add(room, options.recover ?? this.opts.recover);
    // Otherwise the join goes out with the re-joins once connected.
    if (this.isOpen()) this.ws!.send(this.roomState.joinMessage(room, true));
  }

  /** Leaves a room. */
  leaveRoom(room: string): void {
    if (!this.roomState.delete(room)) return;
    // A new (or still authenticating) connection is in no room, so there is nothing to buffer.
    if (this.isOpen()) this.ws!.send(JSON.stringify({ type: LeaveRoom.name, room }));
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
      const text = JSON.stringify({ type, data, correlationId });
      // A request that times out while buffered must not go out later.
      const entry = this.requests.track(type, correlationId, timeout, resolve, reject, () => {
        this.buffer = this.buffer.filter((b) => b.text !== text);
      });
      this.sendOrBuffer({ text, onSent: (ws) => (entry.socket = ws) });
    });
  }

  // ---- internals ----

  /** The socket takes application messages: open and (with `getToken`) authenticated. */
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
      this.afterClose(false);
      return;
    }
    this.ws = ws;
    this.opened = false;
    ws.onopen = () => this.handleOpen(ws);
    ws.onmessage = (ev) => this.handleMessage(ws, ev.data);
    ws.onerror = () => this.error(new Error('WebSocket error'));
    ws.onclose = (ev) => this.handleClose(ws, ev.code, ev.reason ?? '', ev.wasClean ?? false);
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = null;
      const { connectionTimeout } = this.opts;
      if (this.opened) {
        this.error(new Error(`Not authenticated within ${connectionTimeout} ms (does the server authenticate in-band?)`));
        this.abort(ws, 4008, 'Authentication timeout');
      } else {
        this.error(new Error(`Connection timed out after ${connectionTimeout} ms`));
        this.abort(ws, 4008, 'Connection timeout');
      }
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
    this.opened = true;
    if (this.auth) {
      // The authenticate goes first and alone: until the server accepts it,
      // anything else would be answered "Not authenticated" and dropped.
      // The connect timer keeps running until then.
      this.auth.start(ws);
      return;
    }
    this.ready(ws);
  }

  /** The socket takes application messages: re-join the rooms, flush the buffer, start the heartbeat. */
  private ready(ws: WebSocketLike): void {
    this.clearTimer('connectTimer');
    const reconnected = this.everConnected;
    this.everConnected = true;
    // The back-off restarts only now: a server that accepts sockets but
    // refuses or times out their authentication keeps backing off.
    this.attempt = 0;
    this.setState('connected');
    if (this.ws !== ws || !this.isOpen()) return;
    const { joins, recovered } = this.roomState.connectionReady(reconnected);
    for (const text of joins) ws.send(text);
    const queued = this.buffer;
    this.buffer = [];
    for (const item of queued) {
      ws.send(item.text);
      item.onSent?.(ws);
    }
    this.schedulePing();
    this.dispatch(Connected.name, { reconnected, recovered }, null);
  }

  private handleTokenError(error: Error, refresh: boolean, ws: WebSocketLike): void {
    this.error(new Error(`getToken failed${refresh ? ' on a refresh' : ''}: ${error.message}`));
    this.dispatch(TokenError.name, { error, refresh }, null);
    // A refresh failure leaves the connection to its remaining lifetime:
    // the server closes it with "Token expired", and the reconnect tries
    // getToken again. A new connection cannot authenticate at all: close
    // it and retry with the back-off.
    if (!refresh) this.abort(ws, TOKEN_UNAVAILABLE, 'Token unavailable');
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

  private handleMessage(ws: WebSocketLike, data: unknown): void {
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
    if (this.requests.settle(m)) return;
    if (m.type === RoomJoined.name && typeof m.room === 'string') {
      this.handleJoined(m);
      return;
    }
    if (m.type === RoomMessage.name && typeof m.room === 'string' && typeof m.offset === 'number') {
      this.handleRoomMessage(m);
      return;
    }
    if (this.auth && typeof m.name === 'string' && 'data' in m) {
      if (m.name === Authenticated.name) {
        this.handleAuthenticated(ws, m);
        return;
      }
      // Refresh first; the application's handlers hear of it as well.
      if (m.name === AuthExpiring.name) this.auth.expiringOn(ws);
    }
    this.dispatchValue(m);
  }

  private handleAuthenticated(ws: WebSocketLike, m: Record<string, unknown>): void {
    const data = this.auth?.acceptedOn(ws, m.data);
    if (!data) return;
    this.dispatch(Authenticated.name, data, m);
    // The first acceptance makes the socket ready (unless a handler closed it).
    if (!data.refresh && this.ws === ws) this.ready(ws);
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
    const data = this.roomState.joined(m);
    this.dispatch(RoomJoined.name, data, m);
    const recovered = this.roomState.answered(data);
    if (recovered) this.dispatch(Recovered.name, recovered, null);
  }

  private handleRoomMessage(m: Record<string, unknown>): void {
    const data = this.roomState.message(m);
    if (!data) return; // already seen
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
    const wasOpen = this.opened;
    this.opened = false;
    this.auth?.reset();
    this.roomState.connectionClosed();
    this.clearTimer('connectTimer');
    this.clearTimer('pingTimer');
    this.clearTimer('pongTimer');
    this.requests.closed(ws, code);
    if (wasOpen) this.dispatch(Disconnected.name, { code, reason, wasClean }, null);
    const final = isFinalClose(code, reason, this.auth !== null);
    if (final) {
      this.wanted = false;
      this.error(new Error(`Connection closed by the server (${code}${reason ? ` ${reason}` : ''}); not reconnecting`));
    }
    this.afterClose(final);
  }

  /** After a close (`final`: one that ends reconnecting): reconnect, or rest. */
  private afterClose(final: boolean): void {
    if (!this.wanted || !this.opts.reconnect || this.destroyed || final) {
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
