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
 * correlation id; rooms resumed with positions after reconnects (section
 * 8); in-band authentication with token refresh (`getToken`, section 9).
 *
 * This module only re-exports the public API; each part lives in its own
 * file: definitions (messages and events), options (and the environment),
 * reconnect (back-off and close policy), rooms (positions and recovery),
 * requests, auth, and the client that wires them to the socket.
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
export { ClientMessage } from './definitions.js';
export type { MessageDefinition, DataOf } from './definitions.js';
export { Connected, Disconnected, ReconnectAttempt, Recovered, RoomJoined, RoomMessage, JoinRoom, LeaveRoom, Heartbeat, ServerError, Authenticate, Authenticated, AuthExpiring, TokenError, } from './definitions.js';
export type { ConnectedData, DisconnectedData, ReconnectAttemptData, RoomJoinedData, RecoveredData, RoomMessageData, AuthenticatedData, AuthExpiringData, TokenErrorData, } from './definitions.js';
export type { ConnectionState, WebSocketLike, WebSocketConstructor, Timers, OnlineEvents, SocketClientOptions, RequestOptions, JoinOptions, } from './options.js';
export { backoffDelay } from './reconnect.js';
export { RequestError } from './requests.js';
export { SocketClient } from './client.js';
