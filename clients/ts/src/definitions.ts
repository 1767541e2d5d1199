// Typed message definitions, and the built-in ones: the client's local
// events (`__ori:*`, never on the wire) and the protocol's control messages.

/** A typed message definition: a name, and (at compile time only) the type of its data. */
export interface MessageDefinition<T> {
  readonly name: string;
  /** Phantom field carrying the data type; never set at run time. */
  readonly __data?: T;
}

/** Extracts the data type of a definition. */
export type DataOf<D> = D extends MessageDefinition<infer T> ? T : never;

/** Defines typed messages, the client side of the server's `ServerMessage` definitions. */
export const ClientMessage = {
  /** A definition named `name` whose data is `T`. */
  define<T = unknown>(name: string): MessageDefinition<T> {
    return Object.freeze({ name }) as MessageDefinition<T>;
  },
};

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

/** Data of the `Authenticated` event: the server accepted an `auth.authenticate`. */
export interface AuthenticatedData {
  /** The connection's id on the server. */
  socketId: string;
  /** Seconds until the credential expires (the server's whole TTL), `null` when it does not. */
  expiresIn: number | null;
  /** False for the authentication that opened the connection, true for a refresh on it. */
  refresh: boolean;
}

/** Data of the server's `auth.expiring` notice. */
export interface AuthExpiringData {
  /** Seconds left before the server closes with 1008 "Token expired" (rounded up). */
  expiresIn: number;
}

/** Data of the `TokenError` event: `getToken` (or `credentials`) threw or rejected. */
export interface TokenErrorData {
  error: Error;
  /**
   * False: on a new connection, which is closed (4401) and retried with the
   * back-off. True: on a refresh; the connection stays until the server
   * closes it as expired, and the client then reconnects.
   */
  refresh: boolean;
}

/**
 * Local event: the connection is ready: open, authenticated when `getToken`
 * is set, rooms re-joined, buffer flushed.
 */
export const Connected = ClientMessage.define<ConnectedData>('__ori:connected');
/**
 * Local event: a socket that had opened closed (with `getToken` also one
 * still authenticating, so a refusal shows its 1008 reason).
 */
export const Disconnected = ClientMessage.define<DisconnectedData>('__ori:disconnected');
/** Local event: a reconnect is scheduled. */
export const ReconnectAttempt = ClientMessage.define<ReconnectAttemptData>('__ori:reconnect_attempt');
/**
 * Local event, once per connection after every room joined with positions
 * answered: which of them were recovered. A room that was not must have
 * its state re-fetched by the application.
 */
export const Recovered = ClientMessage.define<RecoveredData>('__ori:recovered');
/** The server's reply to a join with positions or a resume (per room). */
export const RoomJoined = ClientMessage.define<RoomJoinedData>('room.joined');
/**
 * A publication of a room joined with positions (its payload is also
 * dispatched as if it had arrived on its own).
 */
export const RoomMessage = ClientMessage.define<RoomMessageData>('room.message');
/** `{"type":"room.join","room":...}` (sent flat). */
export const JoinRoom = ClientMessage.define<{ room: string }>('room.join');
/** `{"type":"room.leave","room":...}` (sent flat). */
export const LeaveRoom = ClientMessage.define<{ room: string }>('room.leave');
/** `{"type":"heartbeat"}`; the server answers `{"type":"heartbeat","timestamp":ms}`. */
export const Heartbeat = ClientMessage.define<{ timestamp?: number }>('heartbeat');
/** `{"type":"error","message":...}` as the server's message registry replies. */
export const ServerError = ClientMessage.define<{ type: 'error'; message: string }>('error');
/**
 * `{"type":"auth.authenticate","token":...}` (sent flat, PROTOCOL.md section
 * 9). The client sends it itself when `getToken` is set.
 */
export const Authenticate = ClientMessage.define<{ token: string; [field: string]: unknown }>('auth.authenticate');
/**
 * The server accepted an `auth.authenticate` (with `getToken`: the first
 * one of a connection, `refresh: false`, and every refresh, `refresh: true`).
 */
export const Authenticated = ClientMessage.define<AuthenticatedData>('auth.authenticated');
/**
 * The server's notice that the credential expires soon; with `getToken` the
 * client refreshes by itself, handlers are told as well.
 */
export const AuthExpiring = ClientMessage.define<AuthExpiringData>('auth.expiring');
/** Local event: `getToken` (or `credentials`) failed; also reported to `onError`. */
export const TokenError = ClientMessage.define<TokenErrorData>('__ori:token_error');
