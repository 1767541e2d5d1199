// Socket-router requests in flight (PROTOCOL.md section 4), matched to
// their replies by correlation id and type.

import type { Timers, WebSocketLike } from './options.js';

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

/** A request awaiting its reply. */
export interface Pending {
  readonly type: string;
  readonly resolve: (v: unknown) => void;
  readonly reject: (e: Error) => void;
  timer: unknown;
  /** The socket the request went out on (replies only come back on it); null while buffered. */
  socket: WebSocketLike | null;
}

export function defaultCorrelationId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}-${Math.random().toString(36).slice(2)}`;
}

/** The requests of one client that have not been answered yet. */
export class PendingRequests {
  private readonly map = new Map<string, Pending>();

  constructor(private readonly timers: Timers) {}

  /**
   * Tracks a request until its reply, its timeout (then `onTimeout` runs,
   * before the rejection, so a buffered copy can be withdrawn) or its
   * connection's close.
   */
  track<R>(
    type: string,
    correlationId: string,
    timeout: number,
    resolve: (v: R) => void,
    reject: (e: Error) => void,
    onTimeout: () => void,
  ): Pending {
    const entry: Pending = { type, resolve: resolve as (v: unknown) => void, reject, socket: null, timer: null };
    entry.timer = this.timers.setTimeout(() => {
      if (this.map.get(correlationId) !== entry) return;
      this.map.delete(correlationId);
      onTimeout();
      reject(new RequestError(`Request ${type} timed out after ${timeout} ms`, type, correlationId, 'timeout'));
    }, timeout);
    this.map.set(correlationId, entry);
    return entry;
  }

  /**
   * Settles the request `m` replies to and returns true; false when `m` is
   * no reply (a publication can carry a request's correlation id too, but
   * not its type with `data` or `error`).
   */
  settle(m: Record<string, unknown>): boolean {
    if (typeof m.correlationId !== 'string' || typeof m.type !== 'string') return false;
    const p = this.map.get(m.correlationId);
    if (!p || p.type !== m.type || !('data' in m || 'error' in m)) return false;
    this.map.delete(m.correlationId);
    this.timers.clearTimeout(p.timer);
    if (typeof m.error === 'string') {
      p.reject(new RequestError(m.error, p.type, m.correlationId, 'server'));
    } else {
      p.resolve(m.data);
    }
    return true;
  }

  /** Rejects the requests that went out on `ws`, which closed: their replies can no longer come. */
  closed(ws: WebSocketLike, code: number): void {
    for (const [id, p] of this.map) {
      if (p.socket !== ws) continue;
      this.map.delete(id);
      this.timers.clearTimeout(p.timer);
      p.reject(new RequestError(`Connection closed (${code}) before the reply to ${p.type}`, p.type, id, 'closed'));
    }
  }

  /** Rejects every request. */
  destroy(): void {
    for (const [id, p] of this.map) {
      this.timers.clearTimeout(p.timer);
      p.reject(new RequestError('SocketClient destroyed', p.type, id, 'closed'));
    }
    this.map.clear();
  }
}
