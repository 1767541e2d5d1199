// In-band authentication (PROTOCOL.md section 9): getToken, refresh on
// auth.expiring, the 1008 policy, getToken failures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SocketClient,
  Connected,
  Disconnected,
  ReconnectAttempt,
  Authenticated,
  AuthExpiring,
  TokenError,
} from '../dist/ori-client.js';
import { FakeClock, fakeWebSocket } from './fakes.mjs';

/** A client whose getToken returns t1, t2, ... (one per call). */
function setup(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocket();
  let n = 0;
  let tokens = 0;
  const client = new SocketClient('ws://127.0.0.1:1/ws', {
    WebSocket: FakeWebSocket,
    timers: clock,
    onlineEvents: null,
    correlationId: () => `c${++n}`,
    initialDelay: 100,
    random: () => 0.5,
    getToken: () => `t${++tokens}`,
    ...options,
  });
  const states = [];
  const errors = [];
  const events = [];
  client.onStateChange((s) => states.push(s));
  client.onError((e) => errors.push(e.message));
  client.on(Authenticated, (a) => events.push(['authenticated', a]));
  client.on(Connected, (c) => events.push(['connected', c.reconnected]));
  client.on(Disconnected, (d) => events.push(['disconnected', d.code, d.reason]));
  client.on(TokenError, (t) => events.push(['token-error', t.error.message, t.refresh]));
  return { client, clock, sockets, states, errors, events, tokenCalls: () => tokens };
}

const authenticated = (socketId = 's1', expiresIn = 60) => ({
  name: 'auth.authenticated',
  data: { socketId, expiresIn },
  timestamp: 1,
});
const expiring = (expiresIn) => ({ name: 'auth.expiring', data: { expiresIn }, timestamp: 2 });
const flush = () => new Promise((r) => setImmediate(r));

test('the token goes first and alone; rooms and buffered sends only after auth.authenticated', () => {
  const { client, sockets, states, events } = setup({ heartbeatInterval: 1000 });
  client.joinRoom('a');
  client.send({ type: 'early' });
  client.connect();
  sockets[0].serverOpen();
  assert.deepEqual(sockets[0].sentJson, [{ type: 'auth.authenticate', token: 't1' }]);
  assert.equal(client.state, 'connecting', 'not connected before the server accepted the token');
  assert.equal(client.isConnected, false);
  // Sent while the authentication is in flight: buffered, not sent.
  client.send({ type: 'during' });
  client.joinRoom('b');
  const reply = client.request('echo', 1);
  assert.equal(client.bufferedCount, 3);
  assert.equal(sockets[0].sent.length, 1);
  assert.deepEqual(events, []);

  sockets[0].serverMessage(authenticated('s1', 60));
  assert.deepEqual(sockets[0].sentJson, [
    { type: 'auth.authenticate', token: 't1' },
    { type: 'room.join', room: 'a' },
    { type: 'room.join', room: 'b' },
    { type: 'early' },
    { type: 'during' },
    { type: 'echo', data: 1, correlationId: 'c1' },
  ]);
  assert.equal(client.bufferedCount, 0);
  assert.equal(client.state, 'connected');
  assert.deepEqual(states, ['connecting', 'connected']);
  // Authenticated, then Connected (after authentication, not at the open).
  assert.deepEqual(events, [
    ['authenticated', { socketId: 's1', expiresIn: 60, refresh: false }],
    ['connected', false],
  ]);
  client.send({ type: 'after' });
  assert.deepEqual(sockets[0].sentJson.at(-1), { type: 'after' });
  sockets[0].serverMessage({ type: 'echo', data: 1, correlationId: 'c1' });
  client.destroy();
  return reply;
});

test('no heartbeat while authenticating; it starts once authenticated', () => {
  const { client, clock, sockets } = setup({ heartbeatInterval: 1000, connectionTimeout: 60000 });
  client.connect();
  sockets[0].serverOpen();
  clock.advance(3000);
  assert.deepEqual(sockets[0].sent.filter((s) => s === '2'), []);
  sockets[0].serverMessage(authenticated());
  clock.advance(1000);
  assert.equal(sockets[0].sent.at(-1), '2');
  client.destroy();
});

test('every reconnect authenticates again with a fresh token before rejoining with positions', () => {
  const { client, clock, sockets, events, tokenCalls } = setup();
  client.joinRoom('feed', { recover: true });
  client.connect();
  sockets[0].serverOpen();
  sockets[0].serverMessage(authenticated('s1'));
  sockets[0].serverMessage({ type: 'room.joined', room: 'feed', epoch: 'e', offset: 3 });
  sockets[0].serverClose(1006);
  clock.advance(1000);
  assert.equal(sockets.length, 2);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].sentJson, [{ type: 'auth.authenticate', token: 't2' }]);
  sockets[1].serverMessage(authenticated('s2'));
  assert.deepEqual(sockets[1].sentJson, [
    { type: 'auth.authenticate', token: 't2' },
    { type: 'room.join', room: 'feed', since: { epoch: 'e', offset: 3 } },
  ]);
  assert.equal(tokenCalls(), 2);
  assert.deepEqual(events.filter((e) => e[0] === 'connected'), [
    ['connected', false],
    ['connected', true],
  ]);
  assert.deepEqual(
    events.filter((e) => e[0] === 'authenticated').map((e) => [e[1].socketId, e[1].refresh]),
    [
      ['s1', false],
      ['s2', false],
    ],
  );
  client.destroy();
});

test('an async getToken: nothing goes out until it resolves; credentials are merged', async () => {
  let release;
  const { client, sockets } = setup({
    getToken: () => new Promise((r) => (release = r)),
    credentials: async () => ({ tenant: 'acme', type: 'nope', token: 'nope' }),
  });
  client.send({ type: 'queued' });
  client.connect();
  sockets[0].serverOpen();
  await flush();
  assert.deepEqual(sockets[0].sent, []);
  release('async-token');
  await flush();
  // `type` and `token` cannot be overridden by the application's fields.
  assert.deepEqual(sockets[0].sentJson, [{ type: 'auth.authenticate', token: 'async-token', tenant: 'acme' }]);
  sockets[0].serverMessage(authenticated());
  assert.deepEqual(sockets[0].sentJson.at(-1), { type: 'queued' });
  client.destroy();
});

test('auth.expiring refreshes with a fresh token; the refresh is not a new connection', () => {
  const { client, sockets, events } = setup();
  const notices = [];
  client.on(AuthExpiring, (d) => notices.push(d.expiresIn));
  client.joinRoom('r');
  client.connect();
  sockets[0].serverOpen();
  sockets[0].serverMessage(authenticated('s1', 3));
  const before = sockets[0].sent.length;
  sockets[0].serverMessage(expiring(1));
  assert.deepEqual(sockets[0].sentJson.at(-1), { type: 'auth.authenticate', token: 't2' });
  assert.deepEqual(notices, [1], 'the application hears of it too');
  // A second notice while the refresh is under way does not start another.
  sockets[0].serverMessage(expiring(1));
  assert.equal(sockets[0].sent.length, before + 1);
  // The connection stays usable during the refresh.
  client.send({ type: 'meanwhile' });
  assert.deepEqual(sockets[0].sentJson.at(-1), { type: 'meanwhile' });
  sockets[0].serverMessage(authenticated('s1', 3));
  assert.deepEqual(events, [
    ['authenticated', { socketId: 's1', expiresIn: 3, refresh: false }],
    ['connected', false],
    ['authenticated', { socketId: 's1', expiresIn: 3, refresh: true }],
  ]);
  // No rejoin, no flush again.
  assert.equal(sockets[0].sentJson.filter((m) => m.type === 'room.join').length, 1);
  // The next period refreshes again, with the next token.
  sockets[0].serverMessage(expiring(1));
  assert.deepEqual(sockets[0].sentJson.at(-1), { type: 'auth.authenticate', token: 't3' });
  client.destroy();
});

for (const [when, prepare] of [
  ['on connect', (s) => s.serverOpen()],
  [
    'on a refresh',
    (s) => {
      s.serverOpen();
      s.serverMessage(authenticated());
      s.serverMessage(expiring(1));
    },
  ],
]) {
  test(`close 1008 "Authentication failed" ${when} stops reconnecting and is reported`, () => {
    const { client, clock, sockets, errors, events } = setup();
    client.connect();
    prepare(sockets[0]);
    sockets[0].serverClose(1008, 'Authentication failed');
    clock.advance(60000);
    assert.equal(sockets.length, 1, 'no reconnect');
    assert.equal(client.state, 'disconnected');
    assert.deepEqual(events.at(-1), ['disconnected', 1008, 'Authentication failed']);
    assert.ok(errors.some((e) => e.includes('1008 Authentication failed') && e.includes('not reconnecting')));
    // connect() again is the application's decision (a new login, say).
    client.connect();
    assert.equal(sockets.length, 2);
    client.destroy();
  });
}

test('other 1008 reasons (a guard) stay final with getToken too', () => {
  const { client, clock, sockets } = setup();
  client.connect();
  sockets[0].serverOpen();
  sockets[0].serverMessage(authenticated());
  sockets[0].serverClose(1008, 'Connection rejected by guard');
  clock.advance(60000);
  assert.equal(sockets.length, 1);
  client.destroy();
});

for (const reason of ['Token expired', 'Authentication timeout']) {
  test(`close 1008 "${reason}" reconnects and authenticates with a fresh token`, () => {
    const { client, clock, sockets, events, tokenCalls } = setup();
    client.connect();
    sockets[0].serverOpen();
    if (reason === 'Token expired') sockets[0].serverMessage(authenticated());
    sockets[0].serverClose(1008, reason);
    assert.deepEqual(events.at(-1), ['disconnected', 1008, reason]);
    assert.equal(client.state, 'reconnecting');
    clock.advance(100);
    assert.equal(sockets.length, 2);
    sockets[1].serverOpen();
    assert.deepEqual(sockets[1].sentJson, [{ type: 'auth.authenticate', token: 't2' }]);
    assert.equal(tokenCalls(), 2);
    sockets[1].serverMessage(authenticated());
    assert.equal(client.state, 'connected');
    client.destroy();
  });
}

test('without getToken every 1008 is final and auth envelopes are plain messages', () => {
  const { client, clock, sockets } = setup({ getToken: undefined });
  const seen = [];
  client.on(Authenticated, (d) => seen.push(['authenticated', d]));
  client.on(AuthExpiring, (d) => seen.push(['expiring', d]));
  client.connect();
  sockets[0].serverOpen();
  assert.equal(client.state, 'connected', 'connected at the open');
  assert.deepEqual(sockets[0].sent, []);
  sockets[0].serverMessage(expiring(1));
  sockets[0].serverMessage(authenticated('s', 3));
  assert.deepEqual(seen, [
    ['expiring', { expiresIn: 1 }],
    ['authenticated', { socketId: 's', expiresIn: 3 }],
  ]);
  assert.deepEqual(sockets[0].sent, [], 'no refresh without getToken');
  sockets[0].serverClose(1008, 'Token expired');
  clock.advance(60000);
  assert.equal(sockets.length, 1);
  client.destroy();
});

for (const [kind, getToken] of [
  [
    'throws',
    () => {
      throw new Error('no session');
    },
  ],
  ['rejects', () => Promise.reject(new Error('no session'))],
]) {
  test(`getToken that ${kind} on connect: TokenError, close 4401, retried with a growing back-off`, async () => {
    let fail = true;
    let calls = 0;
    const { client, clock, sockets, errors, events } = setup({
      random: () => 0.999999,
      getToken: () => (++calls, fail ? getToken() : 'good'),
    });
    const attempts = [];
    client.on(ReconnectAttempt, (a) => attempts.push(a));
    client.connect();
    sockets[0].serverOpen();
    await flush();
    assert.deepEqual(sockets[0].closedWith, { code: 4401, reason: 'Token unavailable' });
    assert.deepEqual(sockets[0].sent, [], 'nothing was sent on it');
    assert.deepEqual(events, [
      ['token-error', 'no session', false],
      ['disconnected', 4401, 'Token unavailable'],
    ]);
    assert.ok(errors.some((e) => e.includes('getToken failed: no session')));
    assert.equal(client.state, 'reconnecting');
    clock.advance(attempts[0].delay);
    sockets[1].serverOpen();
    await flush();
    // The back-off is not reset by an open that never authenticated.
    assert.deepEqual(attempts.map((a) => a.delay), [100, 200]);
    fail = false;
    clock.advance(attempts[1].delay);
    sockets[2].serverOpen();
    await flush();
    assert.deepEqual(sockets[2].sentJson, [{ type: 'auth.authenticate', token: 'good' }]);
    sockets[2].serverMessage(authenticated());
    assert.equal(client.state, 'connected');
    assert.equal(calls, 3);
    // Reset once authenticated.
    sockets[2].serverClose(1006);
    assert.equal(attempts.at(-1).delay, 100);
    client.destroy();
  });
}

test('getToken failing on a refresh keeps the connection until the server expires it, then reconnects', async () => {
  let fail = false;
  const { client, clock, sockets, events } = setup({
    getToken: () => (fail ? Promise.reject(new Error('token endpoint down')) : Promise.resolve('ok')),
  });
  client.connect();
  sockets[0].serverOpen();
  await flush();
  sockets[0].serverMessage(authenticated('s1', 3));
  fail = true;
  sockets[0].serverMessage(expiring(1));
  await flush();
  assert.deepEqual(events.at(-1), ['token-error', 'token endpoint down', true]);
  assert.equal(sockets[0].closedWith, null, 'not closed by the client');
  assert.equal(client.state, 'connected');
  fail = false;
  sockets[0].serverClose(1008, 'Token expired');
  clock.advance(100);
  sockets[1].serverOpen();
  await flush();
  assert.deepEqual(sockets[1].sentJson, [{ type: 'auth.authenticate', token: 'ok' }]);
  client.destroy();
});

test('a token that arrives after its socket closed is not sent anywhere', async () => {
  const releases = [];
  const { client, clock, sockets } = setup({ getToken: () => new Promise((r) => releases.push(r)) });
  client.connect();
  sockets[0].serverOpen();
  sockets[0].serverClose(1006);
  clock.advance(100);
  sockets[1].serverOpen();
  releases[0]('stale');
  await flush();
  assert.deepEqual(sockets[0].sent, []);
  assert.deepEqual(sockets[1].sent, []);
  releases[1]('fresh');
  await flush();
  assert.deepEqual(sockets[1].sentJson, [{ type: 'auth.authenticate', token: 'fresh' }]);
  client.destroy();
});

test('no auth.authenticated within connectionTimeout: abandoned (4008) and retried', () => {
  const { client, clock, sockets, errors, events } = setup({ connectionTimeout: 2000 });
  client.connect();
  clock.advance(500);
  sockets[0].serverOpen();
  sockets[0].serverMessage({ type: 'error', message: 'Unknown message type: auth.authenticate' });
  clock.advance(1499);
  assert.equal(sockets[0].closedWith, null);
  clock.advance(1);
  assert.deepEqual(sockets[0].closedWith, { code: 4008, reason: 'Authentication timeout' });
  assert.ok(errors.some((e) => e.includes('Not authenticated within 2000 ms')));
  assert.deepEqual(events.at(-1), ['disconnected', 4008, 'Authentication timeout']);
  clock.advance(100);
  assert.equal(sockets.length, 2);
  client.destroy();
  assert.equal(clock.pending, 0, 'no timers left after destroy');
});

test('a getToken returning no string is a token error', () => {
  const { client, sockets, events } = setup({ getToken: () => undefined });
  client.connect();
  sockets[0].serverOpen();
  assert.equal(events[0][0], 'token-error');
  assert.match(events[0][1], /not a string/);
  assert.equal(sockets[0].closedWith.code, 4401);
  client.destroy();
});
