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
export declare const ClientMessage: {
    /** A definition named `name` whose data is `T`. */
    define<T = unknown>(name: string): MessageDefinition<T>;
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
export declare const Connected: MessageDefinition<ConnectedData>;
/** Local event: an open connection closed. */
export declare const Disconnected: MessageDefinition<DisconnectedData>;
/** Local event: a reconnect is scheduled. */
export declare const ReconnectAttempt: MessageDefinition<ReconnectAttemptData>;
/**
 * Local event, once per connection after every room joined with positions
 * answered: which of them were recovered. A room that was not must have
 * its state re-fetched by the application.
 */
export declare const Recovered: MessageDefinition<RecoveredData>;
/** The server's reply to a join with positions or a resume (per room). */
export declare const RoomJoined: MessageDefinition<RoomJoinedData>;
/**
 * A publication of a room joined with positions (its payload is also
 * dispatched as if it had arrived on its own).
 */
export declare const RoomMessage: MessageDefinition<RoomMessageData>;
/** `{"type":"room.join","room":...}` (sent flat). */
export declare const JoinRoom: MessageDefinition<{
    room: string;
}>;
/** `{"type":"room.leave","room":...}` (sent flat). */
export declare const LeaveRoom: MessageDefinition<{
    room: string;
}>;
/** `{"type":"heartbeat"}`; the server answers `{"type":"heartbeat","timestamp":ms}`. */
export declare const Heartbeat: MessageDefinition<{
    timestamp?: number;
}>;
/** `{"type":"error","message":...}` as the server's message registry replies. */
export declare const ServerError: MessageDefinition<{
    type: "error";
    message: string;
}>;
/** The part of the WebSocket API the client uses. */
export interface WebSocketLike {
    readonly readyState: number;
    onopen: ((ev: unknown) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
        wasClean?: boolean;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
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
export declare class RequestError extends Error {
    /** The request's message type. */
    readonly type: string;
    /** The request's correlation id. */
    readonly correlationId: string;
    /** Why: the server's `error`, a timeout, or the connection closing. */
    readonly kind: 'server' | 'timeout' | 'closed';
    constructor(message: string, 
    /** The request's message type. */
    type: string, 
    /** The request's correlation id. */
    correlationId: string, 
    /** Why: the server's `error`, a timeout, or the connection closing. */
    kind: 'server' | 'timeout' | 'closed');
}
/**
 * Full-jitter exponential back-off: a uniformly random delay in
 * `[0, min(maxDelay, initialDelay * 2^attempt)]`, `attempt` counting from 0.
 */
export declare function backoffDelay(attempt: number, initialDelay: number, maxDelay: number, random?: () => number): number;
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
/** A WebSocket connection to an Ori server with rooms, typed messages, reconnect and requests. */
export declare class SocketClient {
    private readonly url;
    private readonly opts;
    private readonly WS;
    private readonly protocols;
    private readonly timers;
    private readonly random;
    private readonly makeCorrelationId;
    private readonly onlineEvents;
    private ws;
    private _state;
    private wanted;
    private destroyed;
    private paused;
    private everConnected;
    private attempt;
    /** Rooms joined, and for those with positions the latest position seen. */
    private readonly roomSet;
    /** Rooms with positions whose `room.joined` this connection still awaits. */
    /** Rooms with positions whose reply this connection awaits: resumed or first joins. */
    private awaiting;
    private recoveredNow;
    private reconnectedNow;
    private settleRecovered;
    private buffer;
    private readonly handlers;
    private readonly rawHandlers;
    private readonly stateHandlers;
    private readonly errorHandlers;
    private readonly pending;
    private connectTimer;
    private reconnectTimer;
    private pingTimer;
    private pongTimer;
    private readonly onOnline;
    private readonly onOffline;
    constructor(url: string, options?: SocketClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** True while the socket is open. */
    get isConnected(): boolean;
    /** The rooms this client is in (re-joined after every reconnect). */
    get rooms(): string[];
    /**
     * The latest position seen in a room joined with positions (what the
     * next resume sends as `since`), or `undefined`.
     */
    position(room: string): {
        epoch: string;
        offset: number;
    } | undefined;
    /** Messages waiting for a connection. */
    get bufferedCount(): number;
    /** Opens the connection (no-op while connecting or connected). */
    connect(): void;
    /** Closes the connection (1000) and stops reconnecting; rooms and handlers stay. */
    disconnect(): void;
    /** Disconnects and releases everything: handlers, rooms, buffer, browser listeners. */
    destroy(): void;
    /**
     * Calls `handler` for messages of `def`: envelopes `{name,data,timestamp}`
     * with `def.name` get their `data`; flat messages `{type,...}` with
     * `type === def.name` get the whole object. Returns the unsubscribe function.
     */
    on<T>(def: MessageDefinition<T> | string, handler: (data: T, raw: unknown) => void): () => void;
    /** Calls `handler` with every parsed message (or the raw text when it is not JSON). */
    onMessage(handler: (message: unknown) => void): () => void;
    /** Calls `handler` on every state change. */
    onStateChange(handler: (state: ConnectionState, previous: ConnectionState) => void): () => void;
    /** Calls `handler` on errors (socket errors, server `error` messages, dropped buffer entries, giving up). */
    onError(handler: (error: Error) => void): () => void;
    /**
     * Sends `{type: def.name, ...data}` (flat, as the original client does);
     * data that is not an object goes as `{type, data}`.
     */
    emit<T>(def: MessageDefinition<T> | string, data?: T): void;
    /** Sends `obj` as JSON (buffered while disconnected). */
    send(obj: unknown): void;
    /** Sends a text frame as is (buffered while disconnected). */
    sendRaw(text: string): void;
    /**
     * Joins a room now (or on the next connect), and again after every
     * reconnect; with `recover`, resuming where the last connection left off.
     */
    joinRoom(room: string, options?: JoinOptions): void;
    /**
     * Drops the connection as a network failure would (close 4001 from the
     * client side), then reconnects as after any drop, resuming the rooms
     * joined with positions. For trying recovery out.
     */
    drop(): void;
    private joinMessage;
    /** Leaves a room. */
    leaveRoom(room: string): void;
    /**
     * Calls a socket-router route: sends `{type, data, correlationId}` and
     * resolves with the reply's `data`; rejects with a {@link RequestError}
     * carrying the reply's `error`, on timeout, or when the connection closes
     * after the request went out.
     */
    request<R = unknown, T = unknown>(def: MessageDefinition<T> | string, data?: T, options?: RequestOptions): Promise<R>;
    private isOpen;
    private sendOrBuffer;
    private setState;
    private error;
    private dispatch;
    private clearTimer;
    private open;
    /** Drops `ws` now (without waiting for its close event) and handles the close. */
    private abort;
    private detach;
    private handleOpen;
    /** Every room with positions answered (or the connection closed). */
    private finishRecovered;
    private schedulePing;
    private handleMessage;
    /** Dispatches a parsed message to the typed handlers. */
    private dispatchValue;
    private handleJoined;
    private handleRoomMessage;
    private handleClose;
    private afterClose;
    private scheduleReconnect;
    private handleOffline;
    private handleOnline;
}
