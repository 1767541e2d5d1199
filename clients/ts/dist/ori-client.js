// src/definitions.ts
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
var Authenticate = ClientMessage.define("auth.authenticate");
var Authenticated = ClientMessage.define("auth.authenticated");
var AuthExpiring = ClientMessage.define("auth.expiring");
var TokenError = ClientMessage.define("__ori:token_error");

// src/reconnect.ts
function backoffDelay(attempt, initialDelay, maxDelay, random = Math.random) {
  const ceiling = Math.min(maxDelay, initialDelay * Math.pow(2, Math.max(0, attempt)));
  return Math.min(ceiling, Math.floor(random() * (ceiling + 1)));
}
var FINAL_CLOSE_CODES = /* @__PURE__ */ new Set([1008, 1011]);
var RETRYABLE_AUTH_REASONS = /* @__PURE__ */ new Set(["Token expired", "Authentication timeout"]);
function isFinalClose(code, reason, inBand) {
  if (!FINAL_CLOSE_CODES.has(code)) return false;
  return !(inBand && code === 1008 && RETRYABLE_AUTH_REASONS.has(reason));
}

// src/requests.ts
var RequestError = class extends Error {
  constructor(message, type, correlationId, kind) {
    super(message);
    this.type = type;
    this.correlationId = correlationId;
    this.kind = kind;
    this.name = "RequestError";
  }
};
function defaultCorrelationId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === "function") return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}
var PendingRequests = class {
  constructor(timers) {
    this.timers = timers;
    this.map = /* @__PURE__ */ new Map();
  }
  /**
   * Tracks a request until its reply, its timeout (then `onTimeout` runs,
   * before the rejection, so a buffered copy can be withdrawn) or its
   * connection's close.
   */
  track(type, correlationId, timeout, resolve, reject, onTimeout) {
    const entry = { type, resolve, reject, socket: null, timer: null };
    entry.timer = this.timers.setTimeout(() => {
      if (this.map.get(correlationId) !== entry) return;
      this.map.delete(correlationId);
      onTimeout();
      reject(new RequestError(`Request ${type} timed out after ${timeout} ms`, type, correlationId, "timeout"));
    }, timeout);
    this.map.set(correlationId, entry);
    return entry;
  }
  /**
   * Settles the request `m` replies to and returns true; false when `m` is
   * no reply (a publication can carry a request's correlation id too, but
   * not its type with `data` or `error`).
   */
  settle(m) {
    if (typeof m.correlationId !== "string" || typeof m.type !== "string") return false;
    const p = this.map.get(m.correlationId);
    if (!p || p.type !== m.type || !("data" in m || "error" in m)) return false;
    this.map.delete(m.correlationId);
    this.timers.clearTimeout(p.timer);
    if (typeof m.error === "string") {
      p.reject(new RequestError(m.error, p.type, m.correlationId, "server"));
    } else {
      p.resolve(m.data);
    }
    return true;
  }
  /** Rejects the requests that went out on `ws`, which closed: their replies can no longer come. */
  closed(ws, code) {
    for (const [id, p] of this.map) {
      if (p.socket !== ws) continue;
      this.map.delete(id);
      this.timers.clearTimeout(p.timer);
      p.reject(new RequestError(`Connection closed (${code}) before the reply to ${p.type}`, p.type, id, "closed"));
    }
  }
  /** Rejects every request. */
  destroy() {
    for (const [id, p] of this.map) {
      this.timers.clearTimeout(p.timer);
      p.reject(new RequestError("SocketClient destroyed", p.type, id, "closed"));
    }
    this.map.clear();
  }
};

// src/options.ts
var OPEN = 1;

// src/auth.ts
function isThenable(v) {
  return v !== null && (typeof v === "object" || typeof v === "function") && typeof v.then === "function";
}
function toError(e) {
  return e instanceof Error ? e : new Error(String(e));
}
function authenticateMessage(token, fields) {
  if (typeof token !== "string") throw new TypeError(`getToken returned ${typeof token}, not a string`);
  const msg = { type: Authenticate.name, token };
  if (fields !== void 0) {
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
      throw new TypeError("credentials must return an object");
    }
    for (const [k, v] of Object.entries(fields)) if (k !== "type" && k !== "token") msg[k] = v;
  }
  return JSON.stringify(msg);
}
var InBandAuth = class {
  constructor(opts) {
    this.opts = opts;
    this.ws = null;
    /** The server accepted an `auth.authenticate` on `ws`: later acceptances are refreshes. */
    this.accepted = false;
    /** A refresh is being fetched or awaits its reply: a second `auth.expiring` does not start another. */
    this.refreshing = false;
  }
  /** `ws` opened: sends its first `auth.authenticate` (synchronously when `getToken` returns a string). */
  start(ws) {
    this.ws = ws;
    this.accepted = false;
    this.refreshing = false;
    this.authenticate(ws, false);
  }
  /** The socket closed (or was dropped): nothing fetched for it is sent any more. */
  reset() {
    this.ws = null;
    this.accepted = false;
    this.refreshing = false;
  }
  /**
   * The server's `auth.authenticated` on `ws`: its event data, `refresh`
   * telling a refresh from the connection's first authentication; null
   * when it is not about the current socket.
   */
  acceptedOn(ws, data) {
    if (this.ws !== ws) return null;
    const refresh = this.accepted;
    this.accepted = true;
    this.refreshing = false;
    const d = data !== null && typeof data === "object" ? data : {};
    return {
      socketId: typeof d.socketId === "string" ? d.socketId : "",
      expiresIn: typeof d.expiresIn === "number" ? d.expiresIn : null,
      refresh
    };
  }
  /** The server's `auth.expiring` on `ws`: refreshes with a fresh token, unless one is under way. */
  expiringOn(ws) {
    if (this.ws !== ws || !this.accepted || this.refreshing) return;
    this.refreshing = true;
    this.authenticate(ws, true);
  }
  authenticate(ws, refresh) {
    const current = () => this.ws === ws && (!refresh || this.refreshing);
    this.obtain(
      (text) => {
        if (!current() || ws.readyState !== OPEN) return;
        try {
          ws.send(text);
        } catch {
        }
      },
      (e) => {
        if (!current()) return;
        this.refreshing = false;
        this.opts.onTokenError(toError(e), refresh, ws);
      }
    );
  }
  /**
   * Calls `getToken` (and `credentials`) and hands over the message; at
   * once when both return plain values, so the authenticate can go out in
   * the `open` handler itself.
   */
  obtain(done, fail) {
    let token;
    let fields;
    try {
      token = this.opts.getToken();
    } catch (e) {
      fail(e);
      return;
    }
    try {
      fields = this.opts.credentials?.();
    } catch (e) {
      if (isThenable(token)) token.then(void 0, () => void 0);
      fail(e);
      return;
    }
    const build = (t, f) => {
      let text;
      try {
        text = authenticateMessage(t, f);
      } catch (e) {
        fail(e);
        return;
      }
      done(text);
    };
    if (!isThenable(token) && (fields === void 0 || !isThenable(fields))) {
      build(token, fields);
      return;
    }
    Promise.all([token, fields]).then(([t, f]) => build(t, f), fail);
  }
};

// src/rooms.ts
function decodeBase64(b64) {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
var Rooms = class {
  constructor() {
    /** Rooms joined, and for those with positions the latest position seen. */
    this.set = /* @__PURE__ */ new Map();
    /** Rooms with positions whose reply this connection awaits: true for a resume, false for a first join. */
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    this.reconnectedNow = false;
    this.settleRecovered = null;
  }
  get names() {
    return [...this.set.keys()];
  }
  has(room) {
    return this.set.has(room);
  }
  add(room, positions) {
    this.set.set(room, { positions });
  }
  delete(room) {
    return this.set.delete(room);
  }
  clear() {
    this.set.clear();
  }
  position(room) {
    const r = this.set.get(room);
    return r?.epoch !== void 0 && r.offset !== void 0 ? { epoch: r.epoch, offset: r.offset } : void 0;
  }
  /**
   * The `room.join` for `room`: with positions a resume (`since`) when one
   * is known. `live`: it goes out on an open connection now, so its
   * `room.joined` counts towards that connection's recovery report.
   */
  joinMessage(room, live) {
    const r = this.set.get(room);
    if (!r?.positions) return JSON.stringify({ type: JoinRoom.name, room });
    if (live) this.awaiting.set(room, r.joined === true);
    if (r.epoch !== void 0 && r.offset !== void 0) {
      return JSON.stringify({ type: JoinRoom.name, room, since: { epoch: r.epoch, offset: r.offset } });
    }
    return JSON.stringify({ type: JoinRoom.name, room, recover: true });
  }
  /**
   * A connection is ready: the joins to send, in order, and the promise of
   * its recovery report (already settled when no room has positions).
   */
  connectionReady(reconnected) {
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    this.reconnectedNow = reconnected;
    const joins = this.names.map((room) => this.joinMessage(room, true));
    const recovered = new Promise((resolve) => {
      this.settleRecovered = resolve;
    });
    if (this.awaiting.size === 0) this.finish();
    return { joins, recovered };
  }
  /** A `room.joined` reply: takes its position; returns the `RoomJoined` event data. */
  joined(m) {
    const room = m.room;
    const r = this.set.get(room);
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
    return data;
  }
  /**
   * Counts a room's answer towards the connection's report (after its
   * `RoomJoined` went out, whose handlers may have closed the connection);
   * returns the `Recovered` event data once every awaited room answered.
   */
  answered(data) {
    const resumed = this.awaiting.get(data.room);
    if (resumed === void 0) return null;
    this.awaiting.delete(data.room);
    this.recoveredNow[data.room] = resumed ? data.recovered === true : true;
    return this.awaiting.size === 0 ? this.finish() : null;
  }
  /** A `room.message`: advances the room's offset; null for a publication already seen. */
  message(m) {
    const room = m.room;
    const offset = m.offset;
    const r = this.set.get(room);
    if (r && r.offset !== void 0 && offset <= r.offset) return null;
    if (r) r.offset = offset;
    const data = { room, offset };
    if (typeof m.binary === "string") data.binary = decodeBase64(m.binary);
    else data.data = m.data;
    return data;
  }
  /** The connection closed: rooms that had not answered count as not recovered. */
  connectionClosed() {
    if (!this.settleRecovered) return;
    const settle = this.settleRecovered;
    const rooms = this.recoveredNow;
    for (const room of this.awaiting.keys()) rooms[room] = false;
    this.settleRecovered = null;
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    settle(rooms);
  }
  /** Every awaited room answered: settles the report; the `Recovered` data unless no room has positions. */
  finish() {
    const rooms = this.recoveredNow;
    for (const room of this.awaiting.keys()) rooms[room] = false;
    this.awaiting = /* @__PURE__ */ new Map();
    this.recoveredNow = {};
    const settle = this.settleRecovered;
    this.settleRecovered = null;
    settle?.(rooms);
    if (Object.keys(rooms).length === 0) return null;
    return { reconnected: this.reconnectedNow, rooms, all: Object.values(rooms).every(Boolean) };
  }
};

// src/client.ts
var TOKEN_UNAVAILABLE = 4401;
var SocketClient = class {
  constructor(url, options = {}) {
    this.ws = null;
    /**
     * The current socket's `open` event came: its close is reported as
     * `Disconnected` (with `getToken` also while it authenticates).
     */
    this.opened = false;
    this._state = "disconnected";
    this.wanted = false;
    this.destroyed = false;
    this.paused = false;
    this.everConnected = false;
    this.attempt = 0;
    this.roomState = new Rooms();
    this.buffer = [];
    this.handlers = /* @__PURE__ */ new Map();
    this.rawHandlers = /* @__PURE__ */ new Set();
    this.stateHandlers = /* @__PURE__ */ new Set();
    this.errorHandlers = /* @__PURE__ */ new Set();
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
    this.requests = new PendingRequests(this.timers);
    this.auth = options.getToken ? new InBandAuth({
      getToken: options.getToken,
      credentials: options.credentials,
      onTokenError: (error, refresh, ws) => this.handleTokenError(error, refresh, ws)
    }) : null;
    this.onlineEvents = options.onlineEvents !== void 0 ? options.onlineEvents : typeof window !== "undefined" && typeof window.addEventListener === "function" ? window : null;
    this.onlineEvents?.addEventListener("online", this.onOnline);
    this.onlineEvents?.addEventListener("offline", this.onOffline);
  }
  /** The connection state. */
  get state() {
    return this._state;
  }
  /** True while the socket is open (and, with `getToken`, authenticated). */
  get isConnected() {
    return this._state === "connected";
  }
  /** The rooms this client is in (re-joined after every reconnect). */
  get rooms() {
    return this.roomState.names;
  }
  /**
   * The latest position seen in a room joined with positions (what the
   * next resume sends as `since`), or `undefined`.
   */
  position(room) {
    return this.roomState.position(room);
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
  /**
   * Calls `handler` on errors (socket errors, server `error` messages,
   * dropped buffer entries, giving up, a failing `getToken`).
   */
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
  /** Sends `obj` as JSON (buffered while disconnected or authenticating). */
  send(obj) {
    this.sendRaw(JSON.stringify(obj));
  }
  /** Sends a text frame as is (buffered while disconnected or authenticating). */
  sendRaw(text) {
    this.sendOrBuffer({ text });
  }
  /**
   * Joins a room now (or once connected), and again after every
   * reconnect; with `recover`, resuming where the last connection left off.
   */
  joinRoom(room, options = {}) {
    if (this.roomState.has(room)) return;
    this.roomState.add(room, options.recover ?? this.opts.recover);
    if (this.isOpen()) this.ws.send(this.roomState.joinMessage(room, true));
  }
  /** Leaves a room. */
  leaveRoom(room) {
    if (!this.roomState.delete(room)) return;
    if (this.isOpen()) this.ws.send(JSON.stringify({ type: LeaveRoom.name, room }));
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
      const text = JSON.stringify({ type, data, correlationId });
      const entry = this.requests.track(type, correlationId, timeout, resolve, reject, () => {
        this.buffer = this.buffer.filter((b) => b.text !== text);
      });
      this.sendOrBuffer({ text, onSent: (ws) => entry.socket = ws });
    });
  }
  // ---- internals ----
  /** The socket takes application messages: open and (with `getToken`) authenticated. */
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
      this.afterClose(false);
      return;
    }
    this.ws = ws;
    this.opened = false;
    ws.onopen = () => this.handleOpen(ws);
    ws.onmessage = (ev) => this.handleMessage(ws, ev.data);
    ws.onerror = () => this.error(new Error("WebSocket error"));
    ws.onclose = (ev) => this.handleClose(ws, ev.code, ev.reason ?? "", ev.wasClean ?? false);
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = null;
      const { connectionTimeout } = this.opts;
      if (this.opened) {
        this.error(new Error(`Not authenticated within ${connectionTimeout} ms (does the server authenticate in-band?)`));
        this.abort(ws, 4008, "Authentication timeout");
      } else {
        this.error(new Error(`Connection timed out after ${connectionTimeout} ms`));
        this.abort(ws, 4008, "Connection timeout");
      }
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
    this.opened = true;
    if (this.auth) {
      this.auth.start(ws);
      return;
    }
    this.ready(ws);
  }
  /** The socket takes application messages: re-join the rooms, flush the buffer, start the heartbeat. */
  ready(ws) {
    this.clearTimer("connectTimer");
    const reconnected = this.everConnected;
    this.everConnected = true;
    this.attempt = 0;
    this.setState("connected");
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
  handleTokenError(error, refresh, ws) {
    this.error(new Error(`getToken failed${refresh ? " on a refresh" : ""}: ${error.message}`));
    this.dispatch(TokenError.name, { error, refresh }, null);
    if (!refresh) this.abort(ws, TOKEN_UNAVAILABLE, "Token unavailable");
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
  handleMessage(ws, data) {
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
    if (this.requests.settle(m)) return;
    if (m.type === RoomJoined.name && typeof m.room === "string") {
      this.handleJoined(m);
      return;
    }
    if (m.type === RoomMessage.name && typeof m.room === "string" && typeof m.offset === "number") {
      this.handleRoomMessage(m);
      return;
    }
    if (this.auth && typeof m.name === "string" && "data" in m) {
      if (m.name === Authenticated.name) {
        this.handleAuthenticated(ws, m);
        return;
      }
      if (m.name === AuthExpiring.name) this.auth.expiringOn(ws);
    }
    this.dispatchValue(m);
  }
  handleAuthenticated(ws, m) {
    const data = this.auth?.acceptedOn(ws, m.data);
    if (!data) return;
    this.dispatch(Authenticated.name, data, m);
    if (!data.refresh && this.ws === ws) this.ready(ws);
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
    const data = this.roomState.joined(m);
    this.dispatch(RoomJoined.name, data, m);
    const recovered = this.roomState.answered(data);
    if (recovered) this.dispatch(Recovered.name, recovered, null);
  }
  handleRoomMessage(m) {
    const data = this.roomState.message(m);
    if (!data) return;
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
    const wasOpen = this.opened;
    this.opened = false;
    this.auth?.reset();
    this.roomState.connectionClosed();
    this.clearTimer("connectTimer");
    this.clearTimer("pingTimer");
    this.clearTimer("pongTimer");
    this.requests.closed(ws, code);
    if (wasOpen) this.dispatch(Disconnected.name, { code, reason, wasClean }, null);
    const final = isFinalClose(code, reason, this.auth !== null);
    if (final) {
      this.wanted = false;
      this.error(new Error(`Connection closed by the server (${code}${reason ? ` ${reason}` : ""}); not reconnecting`));
    }
    this.afterClose(final);
  }
  /** After a close (`final`: one that ends reconnecting): reconnect, or rest. */
  afterClose(final) {
    if (!this.wanted || !this.opts.reconnect || this.destroyed || final) {
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
  AuthExpiring,
  Authenticate,
  Authenticated,
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
  TokenError,
  backoffDelay
};
