// Browser end-to-end test: the demo's web page in headless Chromium.
//
// Starts the release `ori-demo` (build it first: cargo build --release -p ori-demo),
// drives Debian's /usr/bin/chromium through playwright-core (never a
// downloaded browser) and checks: the page connects and joins `?room=`, a
// notify over HTTP appears in the DOM, a post from the page's form appears,
// the page reconnects and rejoins on its own after the demo restarts, and
// `?token=` is passed on to a demo started with --token. The demo runs with
// --history: after the browser goes offline and back, the page shows every
// notification published meanwhile (resumed with positions); the "Drop
// connection" control reconnects; after a restart (a new history) the room
// is marked as not recovered. In-band authentication (PROTOCOL.md section
// 9): against a demo with --auth in-band --token-ttl 3, a SocketClient
// from the bundle with getToken authenticates, stays connected past the
// TTL by refreshing on auth.expiring, re-authenticates by itself after a
// restart; one with a wrong token is closed 1008 and does not reconnect;
// the demo's page with ?token=&auth=in-band authenticates in band. With
// --compression the browser negotiates permessage-deflate and the page works.
//
// Environment: ORI_DEMO_BIN (default ../../target/release/ori-demo, or
// $CARGO_TARGET_DIR/release/ori-demo), CHROMIUM (default /usr/bin/chromium),
// E2E_SCREENSHOT=<file.png> saves a screenshot of the page at the end.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const targetDir = process.env.CARGO_TARGET_DIR ? resolve(root, process.env.CARGO_TARGET_DIR) : join(root, 'target');
const demoBin = process.env.ORI_DEMO_BIN ?? join(targetDir, 'release', 'ori-demo');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const WAIT = 15000;

const demos = new Set();

function log(msg) {
  console.log(`e2e: ${msg}`);
}

/** Starts ori-demo on 127.0.0.1 and resolves with its base URL once it listens. */
function startDemo(port, extra = []) {
  const child = spawn(demoBin, ['--host', '127.0.0.1', '--port', String(port), '--shutdown-timeout', '2', ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  demos.add(child);
  child.on('exit', () => demos.delete(child));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolveStart, reject) => {
    const timer = setTimeout(() => reject(new Error(`ori-demo did not start within ${WAIT} ms: ${stderr}`)), WAIT);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`ori-demo exited with ${code} before listening: ${stderr}`));
    });
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^listening on (http:\/\/\S+)$/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolveStart({ child, base: m[1], port: Number(new URL(m[1]).port) });
      }
    });
  });
}

/** SIGTERM and wait for the exit (the demo exits 0 after a graceful stop). */
function stopDemo(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolveStop) => {
    const hard = setTimeout(() => child.kill('SIGKILL'), 10000);
    child.once('exit', (code) => {
      clearTimeout(hard);
      resolveStop(code);
    });
    child.kill('SIGTERM');
  });
}

async function until(what, fn, timeout = WAIT) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      if (await fn()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

async function subscribers(base, topic) {
  const res = await fetch(`${base}/api/topics/${topic}`);
  return (await res.json()).subscribers;
}

async function notify(base, topic, message, token) {
  const res = await fetch(`${base}/api/notify/${topic}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ message }),
  });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), { sent: true });
}

async function expectNotification(page, text) {
  await page.locator('#notifications li .text', { hasText: text }).first().waitFor({ timeout: WAIT });
}

/**
 * A demo with `--auth in-band --token-ttl 3`, and two clients made in a page
 * from the bundle: one whose getToken returns the token (it must
 * authenticate, refresh past the TTL, and re-authenticate after a restart),
 * one whose getToken returns a wrong token (closed 1008, no reconnect).
 */
async function inBandAuth(context, pageErrors) {
  const TOKEN = 'in-band-s3cret';
  const TTL = 3;
  const flags = ['--auth', 'in-band', '--token', TOKEN, '--token-ttl', String(TTL)];
  let demo = await startDemo(0, flags);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // A document of the demo's origin that opens no client of its own (the
  // demo's page would, without a token): the bundle itself, shown as text.
  // (A page made up with page.route would not do: Chromium's local network
  // access checks block its WebSocket to 127.0.0.1.)
  await page.goto(`${demo.base}/ori-client.js`);
  await page.evaluate(async (token) => {
    const { SocketClient, Authenticated, Disconnected, Connected } = await import('/ori-client.js');
    const wsUrl = new URL('/ws', location.href);
    wsUrl.protocol = 'ws:';
    const track = (client) => {
      const log = { authenticated: [], disconnected: [], connected: 0, states: [], notes: [] };
      client.on(Authenticated, (a) => log.authenticated.push({ ...a, at: Date.now() }));
      client.on(Connected, () => (log.connected += 1));
      client.on(Disconnected, (d) => log.disconnected.push({ code: d.code, reason: d.reason }));
      client.on('notification', (n) => log.notes.push(n.message));
      client.onStateChange((s) => log.states.push(s));
      return log;
    };
    const options = { initialDelay: 200, maxDelay: 1000 };
    // Async, as a real token provider (a fetch to the session endpoint).
    const good = new SocketClient(wsUrl.href, { ...options, getToken: async () => token });
    const bad = new SocketClient(wsUrl.href, { ...options, getToken: () => `${token}-wrong` });
    window.inBand = { good, bad, goodLog: track(good), badLog: track(bad) };
    good.joinRoom('in-band');
    good.connect();
    bad.connect();
  }, TOKEN);
  const goodLog = () => page.evaluate(() => window.inBand.goodLog);
  const badLog = () => page.evaluate(() => window.inBand.badLog);
  const goodState = () => page.evaluate(() => window.inBand.good.state);

  await until('the client to authenticate', async () => (await goodLog()).connected === 1);
  let g = await goodLog();
  assert.equal(g.authenticated.length, 1);
  assert.equal(g.authenticated[0].expiresIn, TTL);
  assert.equal(g.authenticated[0].refresh, false);
  assert.deepEqual(g.states.slice(0, 2), ['connecting', 'connected'], 'connected only once authenticated');
  await until('the room join sent after the authentication', async () => (await subscribers(demo.base, 'in-band')) === 1);
  const me = await page.evaluate(() => window.inBand.good.request('whoami'));
  assert.equal(me.socketId, g.authenticated[0].socketId);
  log(`authenticated in-band (expiresIn ${TTL})`);

  // Past the TTL: still connected, thanks to the refreshes on auth.expiring.
  const firstAt = g.authenticated[0].at;
  await until(
    'a refresh and the TTL to pass',
    async () => {
      const l = await goodLog();
      return l.authenticated.some((a) => a.refresh) && Date.now() - firstAt > (TTL + 1.5) * 1000;
    },
    (TTL + 10) * 1000,
  );
  g = await goodLog();
  assert.deepEqual(g.disconnected, [], 'not disconnected by the expiry');
  assert.equal(await goodState(), 'connected');
  assert.equal(g.connected, 1, 'a refresh is not a new connection');
  const refreshes = g.authenticated.filter((a) => a.refresh);
  assert.ok(refreshes.every((a) => a.expiresIn === TTL && a.socketId === me.socketId));
  const note = `after the refresh ${Date.now()}`;
  await notify(demo.base, 'in-band', note, TOKEN);
  await until('the notification after the refresh', async () => (await goodLog()).notes.includes(note));
  log(`stayed connected past the ${TTL} s TTL (${refreshes.length} refresh(es))`);

  // The wrong token: closed 1008, and no reconnect (it would be refused forever).
  await until('the wrong token to be refused', async () => (await badLog()).disconnected.length === 1);
  let b = await badLog();
  assert.deepEqual(b.disconnected, [{ code: 1008, reason: 'Authentication failed' }]);
  assert.equal(b.connected, 0);
  assert.equal(await page.evaluate(() => window.inBand.bad.state), 'disconnected');
  assert.ok(!b.states.includes('reconnecting'), `no reconnect: ${b.states.join(', ')}`);
  log('a wrong token is closed 1008 and not retried');

  // A restart on the same port: the client reconnects and authenticates by itself.
  const before = (await goodLog()).authenticated.length;
  assert.equal(await stopDemo(demo.child), 0);
  await until('the client to see the restart', async () => (await goodState()) !== 'connected');
  demo = await startDemo(demo.port, flags);
  await until('the client to re-authenticate', async () => (await goodLog()).connected === 2);
  g = await goodLog();
  const again = g.authenticated.slice(before).filter((a) => !a.refresh);
  assert.equal(again.length, 1, 'one new authentication');
  assert.equal(again[0].expiresIn, TTL);
  assert.notEqual(again[0].socketId, me.socketId, 'a new connection');
  await until('the client to rejoin after the restart', async () => (await subscribers(demo.base, 'in-band')) === 1);
  const afterRestart = `in-band after the restart ${Date.now()}`;
  await notify(demo.base, 'in-band', afterRestart, TOKEN);
  await until('the notification after the restart', async () => (await goodLog()).notes.includes(afterRestart));
  b = await badLog();
  assert.equal(b.disconnected.length, 1, 'the refused client stayed down through the restart');
  log('re-authenticated by itself after a restart');

  await page.evaluate(() => {
    window.inBand.good.destroy();
    window.inBand.bad.destroy();
  });
  await page.close();

  // The demo's own page with &auth=in-band: the token goes in band, not
  // in the upgrade URL.
  const demoPage = await context.newPage();
  demoPage.on('pageerror', (e) => pageErrors.push(e.message));
  const upgrades = [];
  demoPage.on('websocket', (ws) => upgrades.push(ws.url()));
  await demoPage.goto(`${demo.base}/?room=page-in-band&token=${TOKEN}&auth=in-band`);
  await demoPage.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
  await until('the page to join after authenticating', async () => (await subscribers(demo.base, 'page-in-band')) === 1);
  assert.ok(upgrades.length > 0 && upgrades.every((u) => !u.includes(TOKEN)), `token kept out of ${upgrades}`);
  log('the demo page authenticates in band with &auth=in-band');
  await demoPage.close();
  await stopDemo(demo.child);
}

/** The demo with --compression: negotiated by the browser, the page works. */
async function compressed(context, pageErrors) {
  const demo = await startDemo(0, ['--compression']);
  const page = await context.newPage();
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${demo.base}/?room=deflated`);
  await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
  await until('the page to join deflated', async () => (await subscribers(demo.base, 'deflated')) === 1);
  const extensions = await page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const ws = new WebSocket(new URL('/ws', location.href).href.replace('http', 'ws'));
        ws.onopen = () => {
          resolve(ws.extensions);
          ws.close();
        };
        ws.onerror = () => reject(new Error('socket failed'));
      }),
  );
  assert.match(extensions, /^permessage-deflate/, `negotiated: ${extensions}`);
  // Long enough to be compressed (over the 128-byte threshold).
  const long = `compressed ${Date.now()} ${'and again '.repeat(40)}`;
  await notify(demo.base, 'deflated', long);
  await expectNotification(page, long.trim());
  log(`the browser negotiated "${extensions}" and the page shows compressed notifications`);
  await page.close();
  await stopDemo(demo.child);
}

async function main() {
  assert.ok(existsSync(demoBin), `${demoBin} is missing: cargo build --release -p ori-demo`);
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: apt-get install chromium`);
  const userDataDir = mkdtempSync(join(tmpdir(), 'ori-e2e-chromium-'));
  let context;
  try {
    let demo = await startDemo(0, ['--history', '100']);
    log(`demo at ${demo.base}`);
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: chromiumPath,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = context.pages()[0] ?? (await context.newPage());
    const pageErrors = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));

    // 1. The page connects and joins ?room=.
    await page.goto(`${demo.base}/?room=e2e`);
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
    await page.locator('#rooms li[data-room="e2e"]').waitFor({ timeout: WAIT });
    await until('the page to join e2e', async () => (await subscribers(demo.base, 'e2e')) === 1);
    log('connected and joined e2e');

    // 2. A notify over HTTP appears in the DOM.
    const fromHttp = `hello over http ${Date.now()}`;
    await notify(demo.base, 'e2e', fromHttp);
    await expectNotification(page, fromHttp);
    log('HTTP notify shown');

    // 3. A post from the page's form (the `publish` route) appears.
    const fromPage = `hello from the page ${Date.now()}`;
    await page.locator('#post-room').selectOption('e2e');
    await page.locator('#post-message').fill(fromPage);
    await page.locator('#post-send').click();
    await expectNotification(page, fromPage);
    await page.locator('#post-status', { hasText: 'sent to e2e' }).waitFor({ timeout: WAIT });
    log('post from the form shown');

    // 4. Offline, then back: what was published meanwhile is replayed.
    await context.setOffline(true);
    await page.locator('#state:not([data-state="connected"])').waitFor({ timeout: WAIT });
    await until('the server to see the page leave', async () => (await subscribers(demo.base, 'e2e')) === 0);
    const missed = [1, 2, 3].map((i) => `missed while offline ${i} ${Date.now()}`);
    for (const text of missed) await notify(demo.base, 'e2e', text);
    await context.setOffline(false);
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
    for (const text of missed) await expectNotification(page, text);
    await page.locator('#rooms li[data-room="e2e"][data-recovered="true"]').waitFor({ timeout: WAIT });
    await page.locator('#recovery', { hasText: '3 missed notification(s) replayed' }).waitFor({ timeout: WAIT });
    assert.equal(await page.locator('#notifications li .text', { hasText: missed[0] }).count(), 1, 'each shown once');
    log('offline and back: the 3 missed notifications replayed');

    // 5. The page's "Drop connection" control: it reconnects and resumes.
    await page.locator('#drop').click();
    await until('the page to rejoin after the drop', async () => (await subscribers(demo.base, 'e2e')) === 1);
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
    const afterDrop = `after the drop ${Date.now()}`;
    await notify(demo.base, 'e2e', afterDrop);
    await expectNotification(page, afterDrop);
    log('dropped and resumed');

    // 6. The demo restarts on the same port; the page reconnects and rejoins,
    // and marks the room: the new process has a new history.
    assert.equal(await stopDemo(demo.child), 0, 'the demo exits 0 on SIGTERM');
    await page.locator('#state:not([data-state="connected"])').waitFor({ timeout: WAIT });
    const port = demo.port;
    demo = await startDemo(port, ['--history', '100']);
    await page.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
    await until('the page to rejoin e2e', async () => (await subscribers(demo.base, 'e2e')) === 1);
    const afterRestart = `after the restart ${Date.now()}`;
    await notify(demo.base, 'e2e', afterRestart);
    await expectNotification(page, afterRestart);
    await page.locator('#rooms li[data-room="e2e"][data-recovered="false"]').waitFor({ timeout: WAIT });
    log('reconnected and rejoined after a restart; room marked not recovered');

    // 7. Leaving the room unsubscribes.
    await page.locator('#rooms li[data-room="e2e"] button').click();
    await until('the page to leave e2e', async () => (await subscribers(demo.base, 'e2e')) === 0);
    log('left e2e');

    if (process.env.E2E_SCREENSHOT) {
      await page.screenshot({ path: process.env.E2E_SCREENSHOT, fullPage: true });
      log(`screenshot saved to ${process.env.E2E_SCREENSHOT}`);
    }
    await stopDemo(demo.child);

    // 8. ?token= is passed on to a demo that requires it.
    const secured = await startDemo(0, ['--token', 's3cret']);
    const withToken = await context.newPage();
    await withToken.goto(`${secured.base}/?room=private&token=s3cret`);
    await withToken.locator('#state[data-state="connected"]').waitFor({ timeout: WAIT });
    await until('the token page to join', async () => (await subscribers(secured.base, 'private')) === 1);
    const withoutToken = await context.newPage();
    await withoutToken.goto(`${secured.base}/?room=private`);
    await new Promise((r) => setTimeout(r, 1000));
    assert.notEqual(await withoutToken.locator('#state').getAttribute('data-state'), 'connected');
    assert.equal(await subscribers(secured.base, 'private'), 1, 'no join without the token');
    log('?token= passed on; refused without it');
    await stopDemo(secured.child);

    // 9. In-band authentication with refresh (PROTOCOL.md section 9).
    await inBandAuth(context, pageErrors);

    // 10. permessage-deflate: the browser negotiates it with a demo started
    // with --compression, and the page works through compressed frames.
    await compressed(context, pageErrors);

    assert.deepEqual(pageErrors, [], 'no uncaught errors on the page');
    log('all passed');
  } finally {
    await context?.close().catch(() => {});
    await Promise.all([...demos].map(stopDemo));
    rmSync(userDataDir, { recursive: true, force: true });
  }
}

const guard = setTimeout(() => {
  console.error('e2e: overall timeout');
  for (const d of demos) d.kill('SIGKILL');
  process.exit(1);
}, 180000);
main().then(
  () => {
    clearTimeout(guard);
  },
  async (e) => {
    clearTimeout(guard);
    console.error('e2e: FAILED:', e);
    for (const d of demos) d.kill('SIGKILL');
    process.exitCode = 1;
  },
);
