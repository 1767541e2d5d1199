// In-band authentication (PROTOCOL.md section 9): the `auth.authenticate`
// of each connection and its refreshes. The client decides what a failure
// does to the connection; this keeps the per-socket bookkeeping, so a
// token that arrives for a socket that has meanwhile closed is dropped.

import { Authenticate } from './definitions.js';
import type { AuthenticatedData } from './definitions.js';
import { OPEN } from './options.js';
import type { SocketClientOptions, WebSocketLike } from './options.js';

type MaybePromise<T> = T | PromiseLike<T>;

function isThenable<T>(v: MaybePromise<T>): v is PromiseLike<T> {
  return (
    v !== null &&
    (typeof v === 'object' || typeof v === 'function') &&
    typeof (v as PromiseLike<T>).then === 'function'
  );
}

function toError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}

/** The `auth.authenticate` text; `type` and `token` win over same-named credential fields. */
function authenticateMessage(token: unknown, fields: unknown): string {
  if (typeof token !== 'string') throw new TypeError(`getToken returned ${typeof token}, not a string`);
  const msg: Record<string, unknown> = { type: Authenticate.name, token };
  if (fields !== undefined) {
    if (fields === null || typeof fields !== 'object' || Array.isArray(fields)) {
      throw new TypeError('credentials must return an object');
    }
    for (const [k, v] of Object.entries(fields)) if (k !== 'type' && k !== 'token') msg[k] = v;
  }
  return JSON.stringify(msg);
}

export interface InBandAuthOptions {
  getToken: NonNullable<SocketClientOptions['getToken']>;
  credentials?: SocketClientOptions['credentials'];
  /** `getToken` or `credentials` failed for `ws`, which is still the current socket. */
  onTokenError: (error: Error, refresh: boolean, ws: WebSocketLike) => void;
}

/** The authentication of the client's current socket. */
export class InBandAuth {
  private ws: WebSocketLike | null = null;
  /** The server accepted an `auth.authenticate` on `ws`: later acceptances are refreshes. */
  private accepted = false;
  /** A refresh is being fetched or awaits its reply: a second `auth.expiring` does not start another. */
  private refreshing = false;

  constructor(private readonly opts: InBandAuthOptions) {}

  /** `ws` opened: sends its first `auth.authenticate` (synchronously when `getToken` returns a string). */
  start(ws: WebSocketLike): void {
    this.ws = ws;
    this.accepted = false;
    this.refreshing = false;
    this.authenticate(ws, false);
  }

  /** The socket closed (or was dropped): nothing fetched for it is sent any more. */
  reset(): void {
    this.ws = null;
    this.accepted = false;
    this.refreshing = false;
  }

  /**
   * The server's `auth.authenticated` on `ws`: its event data, `refresh`
   * telling a refresh from the connection's first authentication; null
   * when it is not about the current socket.
   */
  acceptedOn(ws: WebSocketLike, data: unknown): AuthenticatedData | null {
    if (this.ws !== ws) return null;
    const refresh = this.accepted;
    this.accepted = true;
    this.refreshing = false;
    const d = data !== null && typeof data === 'object' ? (data as Record<string, unknown>) : {};
    return {
      socketId: typeof d.socketId === 'string' ? d.socketId : '',
      expiresIn: typeof d.expiresIn === 'number' ? d.expiresIn : null,
      refresh,
    };
  }

  /** The server's `auth.expiring` on `ws`: refreshes with a fresh token, unless one is under way. */
  expiringOn(ws: WebSocketLike): void {
    if (this.ws !== ws || !this.accepted || this.refreshing) return;
    this.refreshing = true;
    this.authenticate(ws, true);
  }

  private authenticate(ws: WebSocketLike, refresh: boolean): void {
    const current = (): boolean => this.ws === ws && (!refresh || this.refreshing);
    this.obtain(
      (text) => {
        // Stale (the socket closed, or a reconnect replaced it): dropped,
        // the new socket fetches its own token.
        if (!current() || ws.readyState !== OPEN) return;
        try {
          ws.send(text);
        } catch {
          /* closing: its close event follows */
        }
      },
      (e) => {
        if (!current()) return;
        this.refreshing = false;
        this.opts.onTokenError(toError(e), refresh, ws);
      },
    );
  }

  /**
   * Calls `getToken` (and `credentials`) and hands over the message; at
   * once when both return plain values, so the authenticate can go out in
   * the `open` handler itself.
   */
  private obtain(done: (text: string) => void, fail: (e: unknown) => void): void {
    let token: MaybePromise<string>;
    let fields: MaybePromise<Record<string, unknown>> | undefined;
    try {
      token = this.opts.getToken();
    } catch (e) {
      fail(e);
      return;
    }
    try {
      fields = this.opts.credentials?.();
    } catch (e) {
      // The token's own rejection, if any, is superseded by this failure.
      if (isThenable(token)) token.then(undefined, () => undefined);
      fail(e);
      return;
    }
    const build = (t: unknown, f: unknown): void => {
      let text: string;
      try {
        text = authenticateMessage(t, f);
      } catch (e) {
        fail(e);
        return;
      }
      done(text);
    };
    if (!isThenable(token) && (fields === undefined || !isThenable(fields))) {
      build(token, fields);
      return;
    }
    Promise.all([token, fields]).then(([t, f]) => build(t, f), fail);
  }
}
