// src/index.ts
var ClientMessage = {
  /** A definition named `name` whose data is `T`. */
  define(name) {
    return Object.freeze({ name });
  }
};
var Connected = ClientMessage.define("__ori:connected");
var Disconnected = ClientMessage.define("__ori:disconnected");
var ReconnectAttempt = ClientMessage.define("__ori:reconnect_attempt");
var Recovered = ClientMessage.define("__ori:recovered");
var RoomJoined = ClientMessage.define("room.joined");
var RoomMessage = ClientMessage.define("room.message");
var JoinRoom = ClientMessage.define("room.join");
var LeaveRoom = ClientMessage.define("room.leave");
var Heartbeat = ClientMessage.define("heartbeat");
var ServerError = ClientMessage.define("error");
var RequestError = class extends Error {
  constructor(message, type, correlationId, kind) {
    super(message);
    this.type = type;
    this.correlationId = correlationId;
    this.kind = kind;
    this.name = "RequestError";
  }
};
function backoffDelay(attempt, initialDelay, maxDelay, random = Math.random) {
  const ceiling = Math.min(maxDelay, initialDelay * Math.pow(2, Math.max(0, attempt)));
  return Math.min(ceiling, Math.floor(random() * (ceiling + 1)));
}
var OPEN = 1;
var FINAL_CLOSE_CODES = /* @__PURE__ */ new Set([1008, 1011]);
function defaultCorrelationId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}
function decodeBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
var SocketClient = class {
  constructor(url, options = {}) {
    this.ws = null;
    this._state = "disconnected";
    this.wanted = false;
    this.destroyed = false;
    this.paused = false;
    this.everConnected = false;
    this.attempt = 0;
    /** Rooms joined, and for those with positions the latest position seen. */
    this.roomSet = /* @__PURE__ */ new Map();
    /** Rooms with positions whose `room.joined` this connection still awaits. */
    /** Rooms with positions whose reply this connection awaits: resumed or first joins. */
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    this.reconnectedNow = false;
    this.settleRecovered = null;
    this.buffer = [];
    this.handlers = /* @__PURE__ */ new Map();
    this.rawHandlers = /* @__PURE__ */ new Set();
    this.stateHandlers = /* @__PURE__ */ new Set();
    this.errorHandlers = /* @__PURE__ */ new Set();
    this.pending = /* @__PURE__ */ new Map();
    this.connectTimer = null;
    this.reconnectTimer = null;
    this.pingTimer = null;
    this.pongTimer = null;
    this.onOnline = () => this.handleOnline();
    this.onOffline = () => this.handleOffline();
    this.url = url;
    this.opts = {
      reconnect: options.reconnect ?? true,
      initialDelay: options.initialDelay ?? 1e3,
      maxDelay: options.maxDelay ?? 3e4,
      maxAttempts: options.maxAttempts ?? Infinity,
      connectionTimeout: options.connectionTimeout ?? 1e4,
      heartbeatInterval: options.heartbeatInterval ?? 25e3,
      heartbeatTimeout: options.heartbeatTimeout ?? 1e4,
      bufferSize: options.bufferSize ?? 100,
      requestTimeout: options.requestTimeout ?? 1e4,
      recover: options.recover ?? false
    };
    this.WS = options.WebSocket ?? globalThis.WebSocket;
    this.protocols = options.protocols;
    this.timers = options.timers ?? {
      setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
      clearTimeout: (h) => globalThis.clearTimeout(h)
    };
    this.random = options.random ?? Math.random;
    this.makeCorrelationId = options.correlationId ?? defaultCorrelationId;
    this.onlineEvents = options.onlineEvents !== void 0 ? options.onlineEvents : typeof window !== "undefined" && typeof window.addEventListener === "function" ? window : null;
    this.onlineEvents?.addEventListener("online", this.onOnline);
    this.onlineEvents?.addEventListener("offline", this.onOffline);
  }
  /** The connection state. */
  get state() {
    return this._state;
  }
  /** True while the socket is open. */
  get isConnected() {
    return this._state === "connected";
  }
  /** The rooms this client is in (re-joined after every reconnect). */
  get rooms() {
    return [...this.roomSet.keys()];
  }
  /**
   * The latest position seen in a room joined with positions (what the
   * next resume sends as `since`), or `undefined`.
   */
  position(room) {
    const r = this.roomSet.get(room);
    return r?.epoch !== void 0 && r.offset !== void 0 ? { epoch: r.epoch, offset: r.offset } : void 0;
  }
  /** Messages waiting for a connection. */
  get bufferedCount() {
    return this.buffer.length;
  }
  /** Opens the connection (no-op while connecting or connected). */
  connect() {
    if (this.destroyed) throw new Error("SocketClient was destroyed");
    this.wanted = true;
    if (this.ws || this.reconnectTimer !== null) return;
    this.attempt = 0;
    if (this.paused) {
      this.setState("disconnected");
      return;
    }
    this.open();
  }
  /** Closes the connection (1000) and stops reconnecting; rooms and handlers stay. */
  disconnect() {
    this.wanted = false;
    this.clearTimer("reconnectTimer");
    if (this.ws) {
      const ws = this.ws;
      this.detach(ws);
      try {
        ws.close(1e3, "Client disconnect");
      } catch {
      }
      this.handleClose(ws, 1e3, "Client disconnect", true);
    } else {
      this.setState("disconnected");
    }
  }
  /** Disconnects and releases everything: handlers, rooms, buffer, browser listeners. */
  destroy() {
    if (this.destroyed) return;
    this.disconnect();
    this.destroyed = true;
    this.onlineEvents?.removeEventListener("online", this.onOnline);
    this.onlineEvents?.removeEventListener("offline", this.onOffline);
    for (const [id, p] of this.pending) {
      this.timers.clearTimeout(p.timer);
      p.reject(new RequestError("SocketClient destroyed", p.type, id, "closed"));
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
  on(def, handler) {
    const name = typeof def === "string" ? def : def.name;
    let set = this.handlers.get(name);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.handlers.set(name, set);
    }
    const h = handler;
    set.add(h);
    return () => {
      set.delete(h);
      if (set.size === 0 && this.handlers.get(name) === set) this.handlers.delete(name);
    };
  }
  /** Calls `handler` with every parsed message (or the raw text when it is not JSON). */
  onMessage(handler) {
    this.rawHandlers.add(handler);
    return () => this.rawHandlers.delete(handler);
  }
  /** Calls `handler` on every state change. */
  onStateChange(handler) {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }
  /** Calls `handler` on errors (socket errors, server `error` messages, dropped buffer entries, giving up). */
  onError(handler) {
    this.errorHandlers.add(handler);
    return () => this.errorHandlers.delete(handler);
  }
  /**
   * Sends `{type: def.name, ...data}` (flat, as the original client does);
   * data that is not an object goes as `{type, data}`.
   */
  emit(def, data) {
    const type = typeof def === "string" ? def : def.name;
    if (data !== null && typeof data === "object" && !Array.isArray(data)) {
      this.send({ ...data, type });
    } else if (data === void 0) {
      this.send({ type });
    } else {
      this.send({ type, data });
    }
  }
  /** Sends `obj` as JSON (buffered while disconnected). */
  send(obj) {
    this.sendRaw(JSON.stringify(obj));
  }
  /** Sends a text frame as is (buffered while disconnected). */
  sendRaw(text) {
    this.sendOrBuffer({ text });
  }
  /**
   * Joins a room now (or on the next connect), and again after every
   * reconnect; with `recover`, resuming where the last connection left off.
   */
  joinRoom(room, options = {}) {
    if (this.roomSet.has(room)) return;
    this.roomSet.set(room, { positions: options.recover ?? this.opts.recover });
    if (this.isOpen()) this.ws.send(this.joinMessage(room));
  }
  /**
   * Drops the connection as a network failure would (close 4001 from the
   * client side), then reconnects as after any drop, resuming the rooms
   * joined with positions. For trying recovery out.
   */
  drop() {
    const ws = this.ws;
    if (!ws || !this.isOpen()) return;
    this.abort(ws, 4001, "Dropped by the application");
  }
  joinMessage(room) {
    const r = this.roomSet.get(room);
    if (!r?.positions) return JSON.stringify({ type: JoinRoom.name, room });
    if (this.isOpen()) this.awaiting.set(room, r.joined === true);
    if (r.epoch !== void 0 && r.offset !== void 0) {
      return JSON.stringify({ type: JoinRoom.name, room, since: { epoch: r.epoch, offset: r.offset } });
    }
    return JSON.stringify({ type: JoinRoom.name, room, recover: true });
  }
  /** Leaves a room. */
  leaveRoom(room) {
    if (!this.roomSet.delete(room)) return;
    if (this.isOpen()) this.ws.send(JSON.stringify({ type: LeaveRoom.name, room }));
  }
  /**
   * Calls a socket-router route: sends `{type, data, correlationId}` and
   * resolves with the reply's `data`; rejects with a {@link RequestError}
   * carrying the reply's `error`, on timeout, or when the connection closes
   * after the request went out.
   */
  request(def, data, options = {}) {
    const type = typeof def === "string" ? def : def.name;
    const correlationId = this.makeCorrelationId();
    const timeout = options.timeout ?? this.opts.requestTimeout;
    return new Promise((resolve, reject) => {
      if (this.destroyed) {
        reject(new RequestError("SocketClient destroyed", type, correlationId, "closed"));
        return;
      }
      const entry = {
        type,
        resolve,
        reject,
        socket: null,
        timer: this.timers.setTimeout(() => {
          if (this.pending.get(correlationId) !== entry) return;
          this.pending.delete(correlationId);
          this.buffer = this.buffer.filter((b) => b.text !== text);
          reject(new RequestError(`Request ${type} timed out after ${timeout} ms`, type, correlationId, "timeout"));
        }, timeout)
      };
      this.pending.set(correlationId, entry);
      const text = JSON.stringify({ type, data, correlationId });
      this.sendOrBuffer({ text, onSent: (ws) => entry.socket = ws });
    });
  }
  // ---- internals ----
  isOpen() {
    return this._state === "connected" && this.ws !== null && this.ws.readyState === OPEN;
  }
  sendOrBuffer(item) {
    if (this.destroyed) return;
    if (this.isOpen()) {
      this.ws.send(item.text);
      item.onSent?.(this.ws);
      return;
    }
    this.buffer.push(item);
    while (this.buffer.length > this.opts.bufferSize) {
      const dropped = this.buffer.shift();
      this.error(new Error(`Send buffer full (${this.opts.bufferSize}); dropped the oldest message: ${dropped.text.slice(0, 100)}`));
    }
  }
  setState(s) {
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
  error(e) {
    const err = e instanceof Error ? e : new Error(String(e));
    for (const h of [...this.errorHandlers]) {
      try {
        h(err);
      } catch {
      }
    }
  }
  dispatch(name, data, raw) {
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
  clearTimer(key) {
    if (this[key] !== null) {
      this.timers.clearTimeout(this[key]);
      this[key] = null;
    }
  }
  open() {
    if (!this.WS) {
      this.error(new Error("No WebSocket implementation available"));
      this.setState("disconnected");
      return;
    }
    if (this._state !== "reconnecting") this.setState("connecting");
    let ws;
    try {
      ws = this.protocols === void 0 ? new this.WS(this.url) : new this.WS(this.url, this.protocols);
    } catch (e) {
      this.error(e);
      this.afterClose(1006);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this.handleOpen(ws);
    ws.onmessage = (ev) => this.handleMessage(ev.data);
    ws.onerror = () => this.error(new Error("WebSocket error"));
    ws.onclose = (ev) => this.handleClose(ws, ev.code, ev.reason ?? "", ev.wasClean ?? false);
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = null;
      this.error(new Error(`Connection timed out after ${this.opts.connectionTimeout} ms`));
      this.abort(ws, 4008, "Connection timeout");
    }, this.opts.connectionTimeout);
  }
  /** Drops `ws` now (without waiting for its close event) and handles the close. */
  abort(ws, code, reason) {
    if (this.ws !== ws) return;
    this.detach(ws);
    try {
      ws.close(code, reason);
    } catch {
    }
    this.handleClose(ws, code, reason, false);
  }
  detach(ws) {
    ws.onopen = null;
    ws.onmessage = null;
    ws.onerror = null;
    ws.onclose = null;
  }
  handleOpen(ws) {
    if (this.ws !== ws) return;
    this.clearTimer("connectTimer");
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.attempt = 0;
    this.setState("connected");
    if (this.ws !== ws || !this.isOpen()) return;
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    this.reconnectedNow = reconnected;
    for (const room of this.roomSet.keys()) ws.send(this.joinMessage(room));
    const recovered = new Promise((resolve) => {
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
  finishRecovered() {
    const rooms = this.recoveredNow;
    for (const room of this.awaiting.keys()) rooms[room] = false;
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    const settle = this.settleRecovered;
    this.settleRecovered = null;
    settle?.(rooms);
    if (Object.keys(rooms).length === 0) return;
    const all = Object.values(rooms).every(Boolean);
    this.dispatch(Recovered.name, { reconnected: this.reconnectedNow, rooms, all }, null);
  }
  schedulePing() {
    this.clearTimer("pingTimer");
    if (this.opts.heartbeatInterval <= 0) return;
    const ws = this.ws;
    this.pingTimer = this.timers.setTimeout(() => {
      this.pingTimer = null;
      if (!ws || this.ws !== ws || !this.isOpen()) return;
      ws.send("2");
      if (this.pongTimer === null) {
        this.pongTimer = this.timers.setTimeout(() => {
          this.pongTimer = null;
          this.error(new Error(`No pong within ${this.opts.heartbeatTimeout} ms; reconnecting`));
          this.abort(ws, 4e3, "Heartbeat timeout");
        }, this.opts.heartbeatTimeout);
      }
      this.schedulePing();
    }, this.opts.heartbeatInterval);
  }
  handleMessage(data) {
    this.clearTimer("pongTimer");
    if (typeof data !== "string") {
      for (const h of [...this.rawHandlers]) h(data);
      return;
    }
    if (data === "3") return;
    let msg;
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
    if (msg === null || typeof msg !== "object" || Array.isArray(msg)) return;
    const m = msg;
    if (typeof m.correlationId === "string" && typeof m.type === "string") {
      const p = this.pending.get(m.correlationId);
      if (p && p.type === m.type && ("data" in m || "error" in m)) {
        this.pending.delete(m.correlationId);
        this.timers.clearTimeout(p.timer);
        if (typeof m.error === "string") {
          p.reject(new RequestError(m.error, p.type, m.correlationId, "server"));
        } else {
          p.resolve(m.data);
        }
        return;
      }
    }
    if (m.type === RoomJoined.name && typeof m.room === "string") {
      this.handleJoined(m);
      return;
    }
    if (m.type === RoomMessage.name && typeof m.room === "string" && typeof m.offset === "number") {
      this.handleRoomMessage(m);
      return;
    }
    this.dispatchValue(m);
  }
  /** Dispatches a parsed message to the typed handlers. */
  dispatchValue(m) {
    if (typeof m.name === "string" && "data" in m) {
      this.dispatch(m.name, m.data, m);
    } else if (typeof m.type === "string") {
      if (m.type === ServerError.name && typeof m.message === "string") {
        this.error(new Error(m.message));
      }
      this.dispatch(m.type, m, m);
    }
  }
  handleJoined(m) {
    const room = m.room;
    const r = this.roomSet.get(room);
    const recovered = typeof m.recovered === "boolean" ? m.recovered : null;
    if (r) {
      r.joined = true;
      if (typeof m.epoch === "string" && typeof m.offset === "number") {
        if (recovered !== true) r.offset = m.offset;
        r.epoch = m.epoch;
      } else {
        r.epoch = void 0;
        r.offset = void 0;
      }
    }
    const data = { room, recovered };
    if (typeof m.epoch === "string") data.epoch = m.epoch;
    if (typeof m.offset === "number") data.offset = m.offset;
    if (typeof m.missed === "number") data.missed = m.missed;
    this.dispatch(RoomJoined.name, data, m);
    const resumed = this.awaiting.get(room);
    if (resumed === void 0) return;
    this.awaiting.delete(room);
    this.recoveredNow[room] = resumed ? recovered === true : true;
    if (this.awaiting.size === 0) this.finishRecovered();
  }
  handleRoomMessage(m) {
    const room = m.room;
    const offset = m.offset;
    const r = this.roomSet.get(room);
    if (r && r.offset !== void 0 && offset <= r.offset) return;
    if (r) r.offset = offset;
    const data = { room, offset };
    if (typeof m.binary === "string") data.binary = decodeBase64(m.binary);
    else data.data = m.data;
    this.dispatch(RoomMessage.name, data, m);
    if (data.binary !== void 0) {
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
    if (inner !== null && typeof inner === "object" && !Array.isArray(inner)) {
      this.dispatchValue(inner);
    }
  }
  handleClose(ws, code, reason, wasClean) {
    if (this.ws !== ws) return;
    this.detach(ws);
    this.ws = null;
    if (this.settleRecovered) {
      const settle = this.settleRecovered;
      const rooms = this.recoveredNow;
      for (const room of this.awaiting.keys()) rooms[room] = false;
      this.settleRecovered = null;
      this.awaiting = /* @__PURE__ */ new Map();
      this.recoveredNow = {};
      settle(rooms);
    }
    this.clearTimer("connectTimer");
    this.clearTimer("pingTimer");
    this.clearTimer("pongTimer");
    const wasConnected = this._state === "connected";
    for (const [id, p] of this.pending) {
      if (p.socket === ws) {
        this.pending.delete(id);
        this.timers.clearTimeout(p.timer);
        p.reject(new RequestError(`Connection closed (${code}) before the reply to ${p.type}`, p.type, id, "closed"));
      }
    }
    if (wasConnected) this.dispatch(Disconnected.name, { code, reason, wasClean }, null);
    if (FINAL_CLOSE_CODES.has(code)) {
      this.wanted = false;
      this.error(new Error(`Connection closed by the server (${code}${reason ? ` ${reason}` : ""}); not reconnecting`));
    }
    this.afterClose(code);
  }
  afterClose(code) {
    if (!this.wanted || !this.opts.reconnect || this.destroyed || FINAL_CLOSE_CODES.has(code)) {
      this.setState("disconnected");
      return;
    }
    if (this.paused) {
      this.setState("disconnected");
      return;
    }
    this.scheduleReconnect();
  }
  scheduleReconnect() {
    if (this.attempt >= this.opts.maxAttempts) {
      this.wanted = false;
      this.setState("disconnected");
      this.error(new Error(`Gave up reconnecting after ${this.attempt} attempts`));
      return;
    }
    const delay = backoffDelay(this.attempt, this.opts.initialDelay, this.opts.maxDelay, this.random);
    this.attempt += 1;
    this.setState("reconnecting");
    this.dispatch(ReconnectAttempt.name, { attempt: this.attempt, delay }, null);
    this.reconnectTimer = this.timers.setTimeout(() => {
      this.reconnectTimer = null;
      if (this.wanted && !this.destroyed && !this.paused && !this.ws) this.open();
    }, delay);
  }
  handleOffline() {
    if (this.destroyed || this.paused) return;
    this.paused = true;
    this.clearTimer("reconnectTimer");
    if (this.ws) this.abort(this.ws, 4001, "Offline");
    else if (this._state === "reconnecting") this.setState("disconnected");
  }
  handleOnline() {
    if (this.destroyed || !this.paused) return;
    this.paused = false;
    if (this.wanted && !this.ws && this.reconnectTimer === null) {
      this.attempt = 0;
      this.open();
    }
  }
};
export {
  ClientMessage,
  Connected,
  Disconnected,
  Heartbeat,
  JoinRoom,
  LeaveRoom,
  ReconnectAttempt,
  Recovered,
  RequestError,
  RoomJoined,
  RoomMessage,
  ServerError,
  SocketClient,
  backoffDelay
};
