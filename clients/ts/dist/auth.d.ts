import type { AuthenticatedData } from './definitions.js';
import type { SocketClientOptions, WebSocketLike } from './options.js';
export interface InBandAuthOptions {
    getToken: NonNullable<SocketClientOptions['getToken']>;
    credentials?: SocketClientOptions['credentials'];
    /** `getToken` or `credentials` failed for `ws`, which is still the current socket. */
    onTokenError: (error: Error, refresh: boolean, ws: WebSocketLike) => void;
}
/** The authentication of the client's current socket. */
export declare class InBandAuth {
    private readonly opts;
    private ws;
    /** The server accepted an `auth.authenticate` on `ws`: later acceptances are refreshes. */
    private accepted;
    /** A refresh is being fetched or awaits its reply: a second `auth.expiring` does not start another. */
    private refreshing;
    constructor(opts: InBandAuthOptions);
    /** `ws` opened: sends its first `auth.authenticate` (synchronously when `getToken` returns a string). */
    start(ws: WebSocketLike): void;
    /** The socket closed (or was dropped): nothing fetched for it is sent any more. */
    reset(): void;
    /**
     * The server's `auth.authenticated` on `ws`: its event data, `refresh`
     * telling a refresh from the connection's first authentication; null
     * when it is not about the current socket.
     */
    acceptedOn(ws: WebSocketLike, data: unknown): AuthenticatedData | null;
    /** The server's `auth.expiring` on `ws`: refreshes with a fresh token, unless one is under way. */
    expiringOn(ws: WebSocketLike): void;
    private authenticate;
    /**
     * Calls `getToken` (and `credentials`) and hands over the message; at
     * once when both return plain values, so the authenticate can go out in
     * the `open` handler itself.
     */
    private obtain;
}
