#!/usr/bin/env bash
# Checks clients/ts as the npm package `@ori/client` a front end installs:
# packs it (`npm pack`, nothing is published), checks the tarball's files and
# manifest, installs the tarball into a scratch project beside the esbuild and
# TypeScript versions of clients/ts's devDependencies, generates message types
# with the packaged gen-types.mjs, type-checks a consumer (moduleResolution
# bundler and node16), bundles it with esbuild and runs the bundle, and
# imports/requires the package in Node as the README says.
#
# Needs node and npm (Node 20 or newer) and the npm registry (or a warm npm
# cache). Run from anywhere: scripts/ts-package-check.sh. Every npm step is
# bounded by TS_PACKAGE_CHECK_TIMEOUT seconds (default 300); the scratch
# directory is removed on exit. Exits non-zero on the first problem.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
pkg="$root/clients/ts"
limit=${TS_PACKAGE_CHECK_TIMEOUT:-300}
start=$SECONDS

log() { printf 'ts-package-check: %s\n' "$*"; }
fail() {
  printf 'ts-package-check: FAILED: %s\n' "$*" >&2
  exit 1
}
command -v node >/dev/null || fail "node is missing (Node.js 20 or newer)"
command -v npm >/dev/null || fail "npm is missing"
command -v timeout >/dev/null || fail "timeout (coreutils) is missing"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ori-ts-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- 1. the tarball ----------------------------------------------------------
log "npm pack (clients/ts)"
(cd "$pkg" && timeout "$limit" npm pack --json --loglevel=error --pack-destination "$tmp") >"$tmp/pack.json" ||
  fail "npm pack failed"
tarball=$(node -e 'const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(p.filename)' "$tmp/pack.json")
[ -f "$tmp/$tarball" ] || fail "npm pack wrote no $tarball"
mkdir "$tmp/unpacked"
tar -xzf "$tmp/$tarball" -C "$tmp/unpacked"

# The file list: exactly what a user needs, nothing of the demo or the build.
node - "$tmp/pack.json" "$tmp/unpacked/package" <<'EOF' || fail "the tarball's contents (above)"
const fs = require('fs');
const [p] = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const dir = process.argv[3];
const files = p.files.map((f) => f.path).sort();
const errors = [];
const required = [
  'package.json', 'README.md', 'LICENSE-MIT', 'LICENSE-APACHE',
  'dist/ori-client.js', 'dist/index.d.ts', 'scripts/gen-types.mjs',
];
for (const f of required) if (!files.includes(f)) errors.push(`missing ${f}`);
const allowed = /^(package\.json|README\.md|LICENSE-(MIT|APACHE)|dist\/ori-client\.js|dist\/[a-z-]+\.d\.ts|scripts\/gen-types\.mjs)$/;
for (const f of files) if (!allowed.test(f)) errors.push(`unexpected file ${f} (demo types, sources, tests or build files do not belong in the package)`);
// Every declaration file index.d.ts refers to, directly or not, is in the tarball.
const reached = new Set();
const visit = (f) => {
  if (reached.has(f)) return;
  reached.add(f);
  if (!files.includes(f)) return errors.push(`${[...reached].join(' -> ')}: not in the tarball`);
  const text = fs.readFileSync(`${dir}/${f}`, 'utf8');
  for (const m of text.matchAll(/from '\.\/([a-z-]+)\.js'/g)) visit(`dist/${m[1]}.d.ts`);
};
visit('dist/index.d.ts');
// The manifest.
const m = JSON.parse(fs.readFileSync(`${dir}/package.json`, 'utf8'));
if ('private' in m) errors.push('package.json has "private"');
if (m.license !== 'MIT OR Apache-2.0') errors.push(`license is ${JSON.stringify(m.license)}, not "MIT OR Apache-2.0"`);
if (m.type !== 'module') errors.push('package.json "type" is not "module"');
if (m.sideEffects !== false) errors.push('package.json "sideEffects" is not false');
const dot = m.exports?.['.'];
if (!dot || dot.types !== './dist/index.d.ts' || dot.import !== './dist/ori-client.js' || dot.default !== './dist/ori-client.js' || Object.keys(dot)[0] !== 'types')
  errors.push(`exports["."] is ${JSON.stringify(dot)}: want types (first), import and default`);
if (m.repository?.url !== 'git+https://github.com/ori-rs/ori.git' || m.repository?.directory !== 'clients/ts')
  errors.push(`repository is ${JSON.stringify(m.repository)}`);
if (!m.homepage || !Array.isArray(m.keywords) || m.keywords.length === 0) errors.push('homepage or keywords missing');
if (Object.keys(m.dependencies ?? {}).length) errors.push(`runtime dependencies: ${Object.keys(m.dependencies)}`);
if (p.unpackedSize > 300_000) errors.push(`unpacked size ${p.unpackedSize} bytes: more than 300 kB, what got in?`);
if (errors.length) {
  console.error(files.join('\n'));
  for (const e of errors) console.error(`ts-package-check: ${e}`);
  process.exit(1);
}
console.log(`ts-package-check: ${p.filename}: ${files.length} files, ${p.size} bytes packed, ${p.unpackedSize} unpacked`);
EOF
# The packaged licenses are the workspace's.
for f in LICENSE-MIT LICENSE-APACHE; do
  cmp -s "$root/$f" "$tmp/unpacked/package/$f" || fail "clients/ts/$f differs from the repository root's $f"
done

# --- 2. a scratch project that installs the tarball ------------------------------
app="$tmp/app"
mkdir -p "$app/src"
cd "$app"
npm init -y >/dev/null
npm pkg set type=module
esbuild_version=$(node -p 'require(process.argv[1]).devDependencies.esbuild' "$pkg/package.json")
typescript_version=$(node -p 'require(process.argv[1]).devDependencies.typescript' "$pkg/package.json")
log "npm install the tarball, esbuild@$esbuild_version, typescript@$typescript_version"
timeout "$limit" npm install --no-audit --no-fund --prefer-offline --loglevel=error \
  "$tmp/$tarball" "esbuild@$esbuild_version" "typescript@$typescript_version" >/dev/null ||
  fail "npm install in the scratch project failed"
[ -f node_modules/@ori/client/dist/ori-client.js ] || fail "the installed package has no dist/ori-client.js"

# Message types generated with the packaged generator, as the README shows.
cat >schemas.json <<'EOF'
{
  "order.create": {
    "title": "CreateOrder",
    "type": "object",
    "properties": { "id": { "type": "string" }, "quantity": { "type": "integer", "minimum": 1 } },
    "required": ["id", "quantity"]
  }
}
EOF
node node_modules/@ori/client/scripts/gen-types.mjs schemas.json --import @ori/client --out src/server-messages.ts ||
  fail "node_modules/@ori/client/scripts/gen-types.mjs failed"

# A consumer using the public API and its types. The @ts-expect-error lines
# fail the type-check if the types resolve to `any` (or do not resolve).
cat >src/main.ts <<'EOF'
import {
  SocketClient,
  ClientMessage,
  Connected,
  Disconnected,
  RoomJoined,
  RequestError,
  backoffDelay,
  type ConnectionState,
  type DataOf,
  type MessageDefinition,
  type SocketClientOptions,
  type WebSocketConstructor,
} from '@ori/client';
import { OrderCreate, type CreateOrder } from './server-messages.js';

export const Notification: MessageDefinition<{ message: string }> = ClientMessage.define<{ message: string }>('notification');
export const note: DataOf<typeof Notification> = { message: 'hi' };
// @ts-expect-error: message is a string
export const wrongNote: DataOf<typeof Notification> = { message: 1 };
export const order: CreateOrder = { id: 'o-1', quantity: 2 };
// @ts-expect-error: quantity is required
export const wrongOrder: DataOf<typeof OrderCreate> = { id: 'o-1' };

/** Connects with the given WebSocket class, joins `lobby`, emits a notification and an order. */
export function run(WebSocket: WebSocketConstructor): { client: SocketClient; log: string[] } {
  const log: string[] = [];
  const options: SocketClientOptions = { WebSocket, onlineEvents: null, heartbeatInterval: 60_000, maxAttempts: 3 };
  const client = new SocketClient('ws://127.0.0.1:3000/ws', options);
  client.onStateChange((state: ConnectionState) => log.push(`state ${state}`));
  client.on(Connected, ({ reconnected }) => log.push(`connected ${reconnected}`));
  client.on(Disconnected, ({ code }) => log.push(`closed ${code.toFixed(0)}`));
  client.on(RoomJoined, (joined) => log.push(`joined ${JSON.stringify(joined)}`));
  client.on(Notification, (n) => log.push(n.message.toUpperCase()));
  client.connect();
  client.joinRoom('lobby');
  client.emit(Notification, note);
  client.emit(OrderCreate, order);
  // @ts-expect-error: an order's data is checked
  client.emit(OrderCreate, { id: 1 });
  client
    .request<{ published: boolean }>('publish', { topic: 'lobby', message: 'hi' }, { timeout: 1000 })
    .then((r) => log.push(`published ${r.published}`))
    .catch((e: unknown) => log.push(e instanceof RequestError ? `request ${e.kind}` : String(e)));
  log.push(`delay ${backoffDelay(0, 1000, 30_000, () => 0.5)}`);
  return { client, log };
}
EOF
# Only backoffDelay: a bundler leaves the client out (package.json "sideEffects": false, no top-level effects).
cat >src/tiny.ts <<'EOF'
import { backoffDelay } from '@ori/client';
console.log(backoffDelay(1, 1000, 30_000, () => 0.5));
EOF
for resolution in bundler node16; do
  module=$([ "$resolution" = bundler ] && echo ES2020 || echo node16)
  cat >"tsconfig.$resolution.json" <<EOF
{
  "compilerOptions": {
    "target": "ES2020", "module": "$module", "moduleResolution": "$resolution",
    "lib": ["ES2020", "DOM"], "types": [], "strict": true, "noEmit": true, "skipLibCheck": false
  },
  "include": ["src"]
}
EOF
  log "tsc --noEmit (moduleResolution $resolution)"
  timeout "$limit" node_modules/.bin/tsc -p "tsconfig.$resolution.json" || fail "the consumer does not type-check with moduleResolution $resolution"
done

log "esbuild --bundle --format=esm"
timeout "$limit" node_modules/.bin/esbuild src/main.ts --bundle --format=esm --platform=browser --log-level=warning --outfile=out/main.js ||
  fail "esbuild could not bundle the consumer"
timeout "$limit" node_modules/.bin/esbuild src/tiny.ts --bundle --format=esm --platform=browser --log-level=warning --outfile=out/tiny.js ||
  fail "esbuild could not bundle src/tiny.ts"
grep -q 'SocketClient' out/main.js || fail "the bundle has no SocketClient"
if grep -q 'SocketClient' out/tiny.js; then fail "a bundle importing only backoffDelay still contains SocketClient (tree-shaking)"; fi

# The bundle runs: against a fake WebSocket, the join, emits and request go out once open.
cat >run-bundle.mjs <<'EOF'
import { run } from './out/main.js';
const sockets = [];
class FakeWebSocket {
  constructor(url) { this.url = url; this.readyState = 0; this.sent = []; sockets.push(this); }
  send(data) { if (this.readyState !== 1) throw new Error('not open'); this.sent.push(JSON.parse(data)); }
  close() { this.readyState = 3; }
}
const { client, log } = run(FakeWebSocket);
const ws = sockets[0];
if (sockets.length !== 1 || ws.url !== 'ws://127.0.0.1:3000/ws') throw new Error(`sockets: ${JSON.stringify(sockets)}`);
ws.readyState = 1;
ws.onopen({});
const types = ws.sent.map((m) => m.type);
for (const t of ['room.join', 'notification', 'order.create', 'publish']) {
  if (!types.includes(t)) throw new Error(`${t} not sent: ${JSON.stringify(ws.sent)}`);
}
const publish = ws.sent.find((m) => m.type === 'publish');
ws.onmessage({ data: JSON.stringify({ type: 'publish', correlationId: publish.correlationId, data: { published: true } }) });
ws.onmessage({ data: JSON.stringify({ name: 'notification', data: { message: 'hello' }, timestamp: 1 }) });
await new Promise((r) => setTimeout(r, 0));
client.destroy();
for (const line of ['state connected', 'connected false', 'HELLO', 'published true', 'delay 500']) {
  if (!log.includes(line)) throw new Error(`"${line}" missing from ${JSON.stringify(log)}`);
}
EOF
log "node: the bundle against a fake WebSocket"
timeout 60 node run-bundle.mjs || fail "the esbuild bundle did not behave (above)"

# --- 3. Node: import, and require as the README says -----------------------------
log "node: import('@ori/client')"
timeout 60 node -e "import('@ori/client').then((m) => { if (typeof m.SocketClient !== 'function' || typeof m.ClientMessage.define !== 'function') process.exit(1) }, (e) => { console.error(e); process.exit(1) })" ||
  fail "import('@ori/client') in Node did not give SocketClient"

# README: ESM only. require() resolves (the "default" condition) and loads the
# ES module where Node has require(esm) (process.features.require_module:
# Node 20.19+, 22.12+); older Node throws ERR_REQUIRE_ESM.
cat >require.cjs <<'EOF'
const path = require('path');
const resolved = require.resolve('@ori/client');
if (!resolved.endsWith(path.join('@ori', 'client', 'dist', 'ori-client.js'))) throw new Error(`require.resolve gave ${resolved}`);
const requireEsm = process.features.require_module === true;
let m;
try {
  m = require('@ori/client');
} catch (e) {
  if (!requireEsm && e.code === 'ERR_REQUIRE_ESM') {
    console.log(`ts-package-check: require() on Node ${process.version} (no require(esm)): ERR_REQUIRE_ESM, as the README says`);
    process.exit(0);
  }
  throw e;
}
if (!requireEsm) throw new Error(`require() loaded the package on Node ${process.version}, without require(esm): the README says it throws`);
if (typeof m.SocketClient !== 'function') throw new Error('require() gave no SocketClient');
console.log(`ts-package-check: require() on Node ${process.version} (require(esm)): the ES module's exports, as the README says`);
EOF
timeout 60 node require.cjs || fail "require('@ori/client') does not do what the README says"
# And as on a Node without require(esm), where this Node can switch it off.
if node --no-experimental-require-module -e 0 2>/dev/null; then
  timeout 60 node --no-experimental-require-module require.cjs ||
    fail "require('@ori/client') without require(esm) does not do what the README says"
fi

log "ok: $tarball passed in $((SECONDS - start)) s"
