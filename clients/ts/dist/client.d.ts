import type { MessageDefinition } from './definitions.js';
import type { ConnectionState, JoinOptions, RequestOptions, SocketClientOptions } from './options.js';
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
    /** Set with `getToken`: every socket authenticates before it is ready. */
    private readonly auth;
    private ws;
    /**
     * The current socket's `open` event came: its close is reported as
     * `Disconnected` (with `getToken` also while it authenticates).
     */
    private opened;
    private _state;
    private wanted;
    private destroyed;
    private paused;
    private everConnected;
    private attempt;
    private readonly roomState;
    private buffer;
    private readonly handlers;
    private readonly rawHandlers;
    private readonly stateHandlers;
    private readonly errorHandlers;
    private readonly requests;
    private connectTimer;
    private reconnectTimer;
    private pingTimer;
    private pongTimer;
    private readonly onOnline;
    private readonly onOffline;
    constructor(url: string, options?: SocketClientOptions);
    /** The connection state. */
    get state(): ConnectionState;
    /** True while the socket is open (and, with `getToken`, authenticated). */
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
    /**
     * Calls `handler` on errors (socket errors, server `error` messages,
     * dropped buffer entries, giving up, a failing `getToken`).
     */
    onError(handler: (error: Error) => void): () => void;
    /**
     * Sends `{type: def.name, ...data}` (flat, as the original client does);
     * data that is not an object goes as `{type, data}`.
     */
    emit<T>(def: MessageDefinition<T> | string, data?: T): void;
    /** Sends `obj` as JSON (buffered while disconnected or authenticating). */
    send(obj: unknown): void;
    /** Sends a text frame as is (buffered while disconnected or authenticating). */
    sendRaw(text: string): void;
    /**
     * Joins a room now (or once connected), and again after every
     * reconnect; with `recover`, resuming where the last connection left off.
     */
    joinRoom(room: string, options?: JoinOptions): void;
    /** Leaves a room. */
    leaveRoom(room: string): void;
    /**
     * Drops the connection as a network failure would (close 4001 from the
     * client side), then reconnects as after any drop, resuming the rooms
     * joined with positions. For trying recovery out.
     */
    drop(): void;
    /**
     * Calls a socket-router route: sends `{type, data, correlationId}` and
     * resolves with the reply's `data`; rejects with a {@link RequestError}
     * carrying the reply's `error`, on timeout, or when the connection closes
     * after the request went out.
     */
    request<R = unknown, T = unknown>(def: MessageDefinition<T> | string, data?: T, options?: RequestOptions): Promise<R>;
    /** The socket takes application messages: open and (with `getToken`) authenticated. */
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
    /** The socket takes application messages: re-join the rooms, flush the buffer, start the heartbeat. */
    private ready;
    private handleTokenError;
    private schedulePing;
    private handleMessage;
    private handleAuthenticated;
    /** Dispatches a parsed message to the typed handlers. */
    private dispatchValue;
    private handleJoined;
    private handleRoomMessage;
    private handleClose;
    /** After a close (`final`: one that ends reconnecting): reconnect, or rest. */
    private afterClose;
    private scheduleReconnect;
    private handleOffline;
    private handleOnline;
}
