import type { Timers, WebSocketLike } from './options.js';
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
/** A request awaiting its reply. */
export interface Pending {
    readonly type: string;
    readonly resolve: (v: unknown) => void;
    readonly reject: (e: Error) => void;
    timer: unknown;
    /** The socket the request went out on (replies only come back on it); null while buffered. */
    socket: WebSocketLike | null;
}
export declare function defaultCorrelationId(): string;
/** The requests of one client that have not been answered yet. */
export declare class PendingRequests {
    private readonly timers;
    private readonly map;
    constructor(timers: Timers);
    /**
     * Tracks a request until its reply, its timeout (then `onTimeout` runs,
     * before the rejection, so a buffered copy can be withdrawn) or its
     * connection's close.
     */
    track<R>(type: string, correlationId: string, timeout: number, resolve: (v: R) => void, reject: (e: Error) => void, onTimeout: () => void): Pending;
    /**
     * Settles the request `m` replies to and returns true; false when `m` is
     * no reply (a publication can carry a request's correlation id too, but
     * not its type with `data` or `error`).
     */
    settle(m: Record<string, unknown>): boolean;
    /** Rejects the requests that went out on `ws`, which closed: their replies can no longer come. */
    closed(ws: WebSocketLike, code: number): void;
    /** Rejects every request. */
    destroy(): void;
}
