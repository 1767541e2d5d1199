/** Where the connection is. With `getToken`, `connected` starts once the server accepted the token. */
export type ConnectionState = 'connecting' | 'connected' | 'disconnected' | 'reconnecting';
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
    /**
     * In-band authentication (PROTOCOL.md section 9): called on every open
     * (first connect and each reconnect) and on every `auth.expiring`; its
     * token goes out as `{"type":"auth.authenticate","token":...}`, the first
     * message of the connection. Nothing else is sent (rooms, buffered
     * messages) until the server accepts it; `Connected` and the
     * `connected` state come after that. For servers that authenticate
     * in-band (demo: `--auth in-band`); a browser cannot set upgrade headers.
     */
    getToken?: () => string | Promise<string>;
    /**
     * Extra credential fields of the application, merged into every
     * `auth.authenticate` beside `token` (`type` and `token` cannot be
     * overridden). Called with `getToken`; unused without it.
     */
    credentials?: () => Record<string, unknown> | Promise<Record<string, unknown>>;
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
    /**
     * Ms a connection attempt may take before it is abandoned (default
     * 10000); with `getToken` until the server accepted the token.
     */
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
/** `WebSocket.OPEN` (a WebSocket implementation need not carry the constants). */
export declare const OPEN = 1;
