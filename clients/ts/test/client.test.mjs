import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SocketClient,
  ClientMessage,
  Connected,
  Disconnected,
  ReconnectAttempt,
  JoinRoom,
  Heartbeat,
  RequestError,
  Recovered,
  RoomJoined,
  RoomMessage,
  backoffDelay,
} from '../dist/ori-client.js';
import { FakeClock, fakeWebSocket, FakeWindow } from './fakes.mjs';

function setup(options = {}) {
  const clock = new FakeClock();
  const { FakeWebSocket, sockets } = fakeWebSocket();
  let n = 0;
  const client = new SocketClient('ws://127.0.0.1:1/ws', {
    WebSocket: FakeWebSocket,
    timers: clock,
    onlineEvents: null,
    correlationId: () => `c${++n}`,
    ...options,
  });
  const states = [];
  const errors = [];
  client.onStateChange((s) => states.push(s));
  client.onError((e) => errors.push(e.message));
  return { client, clock, sockets, states, errors, last: () => sockets[sockets.length - 1] };
}

test('full-jitter back-off stays within [0, min(max, initial * 2^n)]', () => {
  for (let attempt = 0; attempt < 20; attempt++) {
    const ceiling = Math.min(30000, 1000 * 2 ** attempt);
    assert.equal(backoffDelay(attempt, 1000, 30000, () => 0), 0);
    assert.equal(backoffDelay(attempt, 1000, 30000, () => 0.999999999), ceiling);
    for (let i = 0; i < 200; i++) {
      const d = backoffDelay(attempt, 1000, 30000);
      assert.ok(d >= 0 && d <= ceiling && Number.isInteger(d), `attempt ${attempt}: ${d}`);
    }
  }
  // Jitter actually spreads the delays.
  const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(5, 1000, 30000)));
  assert.ok(seen.size > 10);
});

test('reconnect delays follow the back-off and ReconnectAttempt reports them', () => {
  const { client, clock, sockets, states } = setup({ initialDelay: 100, maxDelay: 1000, random: () => 0.999999 });
  const attempts = [];
  client.on(ReconnectAttempt, (a) => attempts.push(a));
  client.connect();
  assert.equal(client.state, 'connecting');
  sockets[0].serverOpen();
  sockets[0].serverClose(1006);
  for (let i = 1; i <= 6; i++) {
    assert.equal(client.state, 'reconnecting');
    const { delay } = attempts[i - 1];
    clock.advance(delay - 1);
    assert.equal(sockets.length, i, 'not before the delay');
    clock.advance(1);
    assert.equal(sockets.length, i + 1, 'attempt after the delay');
    sockets[i].serverClose(1006);
  }
  assert.deepEqual(
    attempts.map((a) => a.delay),
    [100, 200, 400, 800, 1000, 1000, 1000],
  );
  assert.deepEqual(attempts.map((a) => a.attempt), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(states.slice(0, 3), ['connecting', 'connected', 'reconnecting']);
  client.destroy();
});

test('gives up after maxAttempts', () => {
  const { client, clock, sockets, errors } = setup({ initialDelay: 10, maxAttempts: 2 });
  client.connect();
  sockets[0].serverClose(1006);
  clock.advance(10);
  sockets[1].serverClose(1006);
  clock.advance(20);
  sockets[2].serverClose(1006);
  clock.advance(100000);
  assert.equal(sockets.length, 3);
  assert.equal(client.state, 'disconnected');
  assert.ok(errors.some((e) => e.includes('Gave up')));
});

test('messages sent while disconnected are buffered and flushed in order after the re-joins', () => {
  const { client, sockets } = setup();
  const Chat = ClientMessage.define('chat');
  client.joinRoom('a');
  client.send({ type: 'one' });
  client.emit(Chat, { text: 'two' });
  client.sendRaw('{"type":"three"}');
  client.joinRoom('b');
  assert.equal(client.bufferedCount, 3);
  client.connect();
  assert.deepEqual(sockets[0].sent, [], 'nothing before open');
  sockets[0].serverOpen();
  assert.deepEqual(sockets[0].sentJson, [
    { type: 'room.join', room: 'a' },
    { type: 'room.join', room: 'b' },
    { type: 'one' },
    { text: 'two', type: 'chat' },
    { type: 'three' },
  ]);
  assert.equal(client.bufferedCount, 0);
  client.send({ type: 'four' });
  assert.deepEqual(sockets[0].sentJson.at(-1), { type: 'four' });
  client.destroy();
});

test('the buffer is bounded: the oldest messages are dropped', () => {
  const { client, sockets, errors } = setup({ bufferSize: 3 });
  for (let i = 0; i < 5; i++) client.send({ type: 'm', i });
  assert.equal(client.bufferedCount, 3);
  assert.equal(errors.filter((e) => e.includes('buffer full')).length, 2);
  client.connect();
  sockets[0].serverOpen();
  assert.deepEqual(sockets[0].sentJson.map((m) => m.i), [2, 3, 4]);
  client.destroy();
});

test('rooms are re-joined after a reconnect, left rooms are not', () => {
  const { client, clock, sockets } = setup({ initialDelay: 50, random: () => 0.5 });
  const connected = [];
  const disconnected = [];
  client.on(Connected, (c) => connected.push(c.reconnected));
  client.on(Disconnected, (d) => disconnected.push(d.code));
  client.connect();
  sockets[0].serverOpen();
  client.joinRoom('x');
  client.joinRoom('y');
  client.joinRoom('x'); // no duplicate
  client.leaveRoom('y');
  assert.deepEqual(sockets[0].sentJson, [
    { type: 'room.join', room: 'x' },
    { type: 'room.join', room: 'y' },
    { type: 'room.leave', room: 'y' },
  ]);
  sockets[0].serverClose(1001, 'Server shutting down');
  client.joinRoom('z'); // while disconnected: joined on connect, not twice
  clock.advance(1000);
  assert.equal(sockets.length, 2);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].sentJson, [
    { type: 'room.join', room: 'x' },
    { type: 'room.join', room: 'z' },
  ]);
  assert.deepEqual(connected, [false, true]);
  assert.deepEqual(disconnected, [1001]);
  assert.deepEqual(client.rooms, ['x', 'z']);
  client.destroy();
});

test('a missing pong forces a reconnect; a pong keeps the connection', () => {
  const { client, clock, sockets } = setup({ heartbeatInterval: 1000, heartbeatTimeout: 500, initialDelay: 10 });
  client.connect();
  sockets[0].serverOpen();
  clock.advance(1000);
  assert.deepEqual(sockets[0].sent, ['2']);
  sockets[0].serverMessage('3');
  clock.advance(1000);
  assert.deepEqual(sockets[0].sent, ['2', '2']);
  sockets[0].serverMessage('3');
  assert.equal(sockets.length, 1);
  clock.advance(1000); // third ping, never answered
  assert.equal(sockets[0].sent.length, 3);
  clock.advance(499);
  assert.equal(client.state, 'connected');
  clock.advance(1);
  assert.equal(sockets[0].closedWith.code, 4000);
  assert.equal(client.state, 'reconnecting');
  clock.advance(10);
  assert.equal(sockets.length, 2);
  client.destroy();
});

test('a connection that never opens times out and is retried', () => {
  const { client, clock, sockets, errors } = setup({ connectionTimeout: 300, initialDelay: 10 });
  client.connect();
  clock.advance(299);
  assert.equal(sockets.length, 1);
  clock.advance(1);
  assert.ok(errors.some((e) => e.includes('timed out')));
  assert.ok(sockets[0].closedWith);
  clock.advance(10);
  assert.equal(sockets.length, 2);
  sockets[1].serverOpen();
  assert.equal(client.state, 'connected');
  client.destroy();
});

for (const code of [1008, 1011]) {
  test(`no reconnect after close ${code}`, () => {
    const { client, clock, sockets, errors } = setup({ initialDelay: 10 });
    client.connect();
    sockets[0].serverOpen();
    sockets[0].serverClose(code, 'Connection rejected by guard');
    clock.advance(60000);
    assert.equal(sockets.length, 1);
    assert.equal(client.state, 'disconnected');
    assert.ok(errors.some((e) => e.includes(`${code}`)));
    client.destroy();
  });
}

test('disconnect() stops reconnecting; connect() again rejoins', () => {
  const { client, clock, sockets } = setup({ initialDelay: 10 });
  client.connect();
  sockets[0].serverOpen();
  client.joinRoom('r');
  client.disconnect();
  assert.equal(sockets[0].closedWith.code, 1000);
  assert.equal(client.state, 'disconnected');
  clock.advance(60000);
  assert.equal(sockets.length, 1);
  client.connect();
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].sentJson, [{ type: 'room.join', room: 'r' }]);
  client.destroy();
  assert.equal(clock.pending, 0, 'no timers left after destroy');
});

test('envelopes and flat messages reach typed handlers; unsubscribe works', () => {
  const { client, sockets, errors } = setup();
  const Note = ClientMessage.define('notification');
  const Order = ClientMessage.define('order.created');
  const notes = [];
  const orders = [];
  const beats = [];
  const off = client.on(Note, (n) => notes.push(n.message));
  client.on(Order, (o, raw) => orders.push([o, raw.timestamp]));
  client.on(Heartbeat, (h) => beats.push(h.timestamp));
  client.connect();
  sockets[0].serverOpen();
  sockets[0].serverMessage({ type: 'notification', message: 'hello', timestamp: 1 });
  sockets[0].serverMessage({ name: 'order.created', data: { id: 7 }, timestamp: 5 });
  sockets[0].serverMessage({ type: 'heartbeat', timestamp: 9 });
  sockets[0].serverMessage({ type: 'error', message: 'Unknown message type: x' });
  sockets[0].serverMessage('not json');
  off();
  sockets[0].serverMessage({ type: 'notification', message: 'unheard' });
  assert.deepEqual(notes, ['hello']);
  assert.deepEqual(orders, [[{ id: 7 }, 5]]);
  assert.deepEqual(beats, [9]);
  assert.ok(errors.includes('Unknown message type: x'));
  // JoinRoom is the flat control message of the original client.
  client.emit(JoinRoom, { room: 'q' });
  assert.deepEqual(sockets[0].sentJson.at(-1), { room: 'q', type: 'room.join' });
  client.destroy();
});

test('request resolves with the reply data matched by correlation id and type', async () => {
  const { client, sockets } = setup();
  client.connect();
  sockets[0].serverOpen();
  const p = client.request('publish', { topic: 't', message: 'm' });
  assert.deepEqual(sockets[0].sentJson, [{ type: 'publish', data: { topic: 't', message: 'm' }, correlationId: 'c1' }]);
  // The notification the publish triggers carries the same id but another type.
  const notes = [];
  client.on('notification', (n) => notes.push(n.message));
  sockets[0].serverMessage({ type: 'notification', message: 'm', correlationId: 'c1' });
  sockets[0].serverMessage({ type: 'publish', data: { published: true }, correlationId: 'other' });
  sockets[0].serverMessage({ type: 'publish', data: { published: true }, correlationId: 'c1' });
  assert.deepEqual(await p, { published: true });
  assert.deepEqual(notes, ['m']);
  client.destroy();
});

test('request rejects with the server error', async () => {
  const { client, sockets } = setup();
  client.connect();
  sockets[0].serverOpen();
  const p = client.request('publish', { topic: '__x', message: 'm' });
  sockets[0].serverMessage({ type: 'publish', data: null, error: 'Validation failed: /topic: reserved topic', correlationId: 'c1' });
  await assert.rejects(p, (e) => e instanceof RequestError && e.kind === 'server' && e.message === 'Validation failed: /topic: reserved topic');
  client.destroy();
});

test('request rejects on timeout, also while buffered (and is not sent later)', async () => {
  const { client, clock, sockets } = setup({ requestTimeout: 1000 });
  const p1 = client.request('echo', 1, { timeout: 200 });
  clock.advance(200);
  await assert.rejects(p1, (e) => e instanceof RequestError && e.kind === 'timeout');
  client.connect();
  sockets[0].serverOpen();
  assert.deepEqual(sockets[0].sent, [], 'a timed-out buffered request is not sent');
  const p2 = client.request('echo', 2);
  clock.advance(999);
  let settled = false;
  p2.catch(() => (settled = true));
  await Promise.resolve();
  assert.equal(settled, false);
  clock.advance(1);
  await assert.rejects(p2, (e) => e.kind === 'timeout');
  client.destroy();
});

test('a request in flight rejects when the connection closes; a buffered one is sent on connect', async () => {
  const { client, clock, sockets } = setup({ initialDelay: 10 });
  client.connect();
  sockets[0].serverOpen();
  const inFlight = client.request('echo', 'a');
  sockets[0].serverClose(1006);
  await assert.rejects(inFlight, (e) => e.kind === 'closed');
  const buffered = client.request('echo', 'b');
  clock.advance(10);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].sentJson, [{ type: 'echo', data: 'b', correlationId: 'c2' }]);
  sockets[1].serverMessage({ type: 'echo', data: 'b', correlationId: 'c2' });
  assert.equal(await buffered, 'b');
  client.destroy();
});

test('offline closes and pauses reconnects; online reconnects at once', () => {
  const win = new FakeWindow();
  const { client, clock, sockets, states } = setup({ onlineEvents: win, initialDelay: 10 });
  client.connect();
  sockets[0].serverOpen();
  win.fire('offline');
  assert.equal(client.state, 'disconnected');
  assert.ok(sockets[0].closedWith);
  clock.advance(60000);
  assert.equal(sockets.length, 1, 'no attempts while offline');
  win.fire('online');
  assert.equal(sockets.length, 2);
  sockets[1].serverOpen();
  assert.equal(client.state, 'connected');
  assert.deepEqual(states, ['connecting', 'connected', 'disconnected', 'connecting', 'connected']);
  client.destroy();
  assert.equal(win.listeners.get('online').size, 0);
});

test('rooms joined with positions resume with since after a reconnect and report recovery', async () => {
  const { client, clock, sockets } = setup({ initialDelay: 50, random: () => 0.5 });
  const recovered = [];
  const joined = [];
  const notes = [];
  const positioned = [];
  const onConnected = [];
  client.on(Connected, (c) => onConnected.push(c.recovered));
  client.on(Recovered, (r) => recovered.push(r));
  client.on(RoomJoined, (j) => joined.push(j));
  client.on(RoomMessage, (m) => positioned.push(m.offset));
  client.on(ClientMessage.define('note'), (n) => notes.push(n.message));
  client.joinRoom('feed', { recover: true });
  client.joinRoom('plain');
  client.connect();
  sockets[0].serverOpen();
  assert.deepEqual(sockets[0].sentJson, [
    { type: 'room.join', room: 'feed', recover: true },
    { type: 'room.join', room: 'plain' },
  ]);
  sockets[0].serverMessage({ type: 'room.joined', room: 'feed', epoch: 'e1', offset: 4 });
  assert.deepEqual(recovered, [{ reconnected: false, rooms: { feed: true }, all: true }]);
  // Envelopes are unwrapped to the payload's own handlers; duplicates dropped.
  for (const offset of [5, 6, 6]) {
    sockets[0].serverMessage({ type: 'room.message', room: 'feed', offset, data: { type: 'note', message: `m${offset}` } });
  }
  assert.deepEqual(notes, ['m5', 'm6']);
  assert.deepEqual(client.position('feed'), { epoch: 'e1', offset: 6 });
  assert.equal(client.position('plain'), undefined);

  sockets[0].serverClose(1006);
  clock.advance(1000);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].sentJson, [
    { type: 'room.join', room: 'feed', since: { epoch: 'e1', offset: 6 } },
    { type: 'room.join', room: 'plain' },
  ]);
  sockets[1].serverMessage({ type: 'room.joined', room: 'feed', epoch: 'e1', offset: 8, recovered: true, missed: 2 });
  sockets[1].serverMessage({ type: 'room.message', room: 'feed', offset: 7, data: { type: 'note', message: 'm7' } });
  sockets[1].serverMessage({ type: 'room.message', room: 'feed', offset: 8, binary: 'AP8=' });
  assert.deepEqual(notes, ['m5', 'm6', 'm7']);
  assert.deepEqual(positioned, [5, 6, 7, 8]);
  assert.equal(recovered.length, 2);
  assert.deepEqual(recovered[1], { reconnected: true, rooms: { feed: true }, all: true });
  assert.equal(joined[1].missed, 2);
  assert.deepEqual(await onConnected[1], { feed: true });

  // Not recovered: reported, and the new epoch's offset is taken.
  sockets[1].serverClose(1006);
  clock.advance(1000);
  sockets[2].serverOpen();
  assert.deepEqual(sockets[2].sentJson[0], { type: 'room.join', room: 'feed', since: { epoch: 'e1', offset: 8 } });
  sockets[2].serverMessage({ type: 'room.joined', room: 'feed', epoch: 'e2', offset: 0, recovered: false });
  assert.deepEqual(recovered[2], { reconnected: true, rooms: { feed: false }, all: false });
  assert.deepEqual(client.position('feed'), { epoch: 'e2', offset: 0 });
  assert.deepEqual(await onConnected[2], { feed: false });
  // Closed before the room answered: not recovered.
  sockets[2].serverClose(1006);
  clock.advance(1000);
  sockets[3].serverOpen();
  sockets[3].serverClose(1006);
  assert.deepEqual(await onConnected[3], { feed: false });
  assert.deepEqual(await onConnected[0], { feed: true });
  client.destroy();
});

test('a room without history is recovered on a first join and not on a resume', () => {
  const { client, clock, sockets } = setup({ initialDelay: 50, random: () => 0.5, recover: true });
  const recovered = [];
  client.on(Recovered, (r) => recovered.push(r.rooms));
  client.joinRoom('plain');
  client.connect();
  sockets[0].serverOpen();
  sockets[0].serverMessage({ type: 'room.joined', room: 'plain', recovered: false });
  // No epoch: nothing to resume from, so the next join asks for positions again.
  sockets[0].serverClose(1006);
  clock.advance(1000);
  sockets[1].serverOpen();
  assert.deepEqual(sockets[1].sentJson, [{ type: 'room.join', room: 'plain', recover: true }]);
  sockets[1].serverMessage({ type: 'room.joined', room: 'plain', recovered: false });
  assert.deepEqual(recovered, [{ plain: true }, { plain: false }]);
  client.destroy();
});

test('drop() closes like a network failure and the client reconnects', () => {
  const { client, clock, sockets } = setup({ initialDelay: 50, random: () => 0.5 });
  const connected = [];
  client.on(Connected, (c) => connected.push(c.reconnected));
  client.connect();
  sockets[0].serverOpen();
  client.drop();
  assert.equal(sockets[0].closedWith.code, 4001);
  clock.advance(1000);
  sockets[1].serverOpen();
  assert.deepEqual(connected, [false, true]);
  client.destroy();
});
