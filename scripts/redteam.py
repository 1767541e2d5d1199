#!/usr/bin/env python3
"""Hostile-input run against a release `ori-demo`, with a canary.

Starts `target/release/ori-demo --port 0 --token T` with `ulimit -n 2048`,
keeps a canary WebSocket in room "canary" that must receive a notification
published every 200 ms over a kept-alive HTTP connection, runs each attack
in turn, and prints one Markdown table row per attack: what the server did,
the canary's losses during the attack, and the server's RSS before, at the
peak and after. Loopback only. Usage: scripts/redteam.py [--quick]
"""

import asyncio
import base64
import json
import os
import resource
import struct
import subprocess
import sys
import time

TOKEN = "redteam-token"
HERE = os.path.dirname(os.path.abspath(__file__))
DEMO = os.path.join(HERE, "..", "target", "release", "ori-demo")
QUICK = "--quick" in sys.argv
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def frame(opcode, payload, fin=True, declared=None):
    """A masked client frame (all-zero mask); `declared` overrides the length."""
    n = len(payload) if declared is None else declared
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n <= 0xFFFF:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return head + b"\0\0\0\0" + payload


class Demo:
    def __init__(self):
        cmd = f'ulimit -n 2048 && exec "{DEMO}" --port 0 --token {TOKEN}'
        self.proc = subprocess.Popen(
            ["sh", "-c", cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        self.host, port = line.removeprefix("listening on http://").rsplit(":", 1)
        self.port = int(port)
        self.log_lines = []

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.log_lines = err.splitlines()


async def ws_connect(demo, extra=b"", token=True):
    r, w = await asyncio.open_connection(demo.host, demo.port)
    path = f"/ws?token={TOKEN}" if token else "/ws"
    w.write(
        (
            f"GET {path} HTTP/1.1\r\nHost: {demo.host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        + extra
    )
    head = await r.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:40])
    return r, w


async def read_frame(r):
    b0, b1 = await r.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await r.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await r.readexactly(8))
    return b0 & 0x0F, await r.readexactly(n)


async def http(demo, raw, timeout=10):
    """One raw request on a new connection; the status (0: closed first)."""
    r, w = await asyncio.open_connection(demo.host, demo.port)
    w.write(raw)
    try:
        line = await asyncio.wait_for(r.readline(), timeout)
    finally:
        w.close()
    return int(line.split()[1]) if line.startswith(b"HTTP/1.") else 0


async def metric(demo, name):
    r, w = await asyncio.open_connection(demo.host, demo.port)
    w.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    text = (await asyncio.wait_for(r.read(), 10)).decode()
    w.close()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    return None


def post(path, body, headers=""):
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {TOKEN}\r\n{headers}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class Canary:
    """Room "canary": one notification every 200 ms, each must arrive."""

    def __init__(self, demo):
        self.demo, self.sent, self.got = demo, 0, set()
        self.failed_publishes = 0

    async def start(self):
        self.r, self.w = await ws_connect(self.demo)
        self.w.write(frame(1, json.dumps({"type": "room.join", "room": "canary"}).encode()))
        self.w.write(frame(1, b"2"))
        while (await read_frame(self.r))[1] != b"3":
            pass
        self.pr, self.pw = await asyncio.open_connection(self.demo.host, self.demo.port)
        self.tasks = [asyncio.create_task(self.read()), asyncio.create_task(self.publish())]

    async def read(self):
        while True:
            op, payload = await read_frame(self.r)
            if op == 9:
                self.w.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif op == 1 and payload.startswith(b"{"):
                msg = json.loads(payload).get("message", "")
                if msg.startswith("seq-"):
                    self.got.add(int(msg[4:]))

    async def publish(self):
        while True:
            n = self.sent
            self.pw.write(post("/api/notify/canary", json.dumps({"message": f"seq-{n}"})))
            self.sent += 1
            try:
                head = await asyncio.wait_for(self.pr.readuntil(b"\r\n\r\n"), 5)
                length = int(
                    [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0]
                    .split(b":")[1]
                )
                await self.pr.readexactly(length)
            except Exception:
                self.failed_publishes += 1
                self.pr, self.pw = await asyncio.open_connection(self.demo.host, self.demo.port)
            await asyncio.sleep(0.2)

    def lost(self):
        # The last second's may still be on their way.
        return sum(1 for n in range(max(0, self.sent - 5)) if n not in self.got)


def outcomes(by_conn):
    """{conn: (seconds, code)} -> (the codes, "first-last s")."""
    codes = sorted({c for _, c in by_conn.values()})
    times = sorted(t for t, _ in by_conn.values())
    return codes, (f"{times[0]:.0f}-{times[-1]:.0f} s" if times else "-")


async def attack_frame_headers(demo, n=1500):
    """n sockets each send a 1 MiB frame's header and 6 bytes, and wait."""
    conns = []
    for _ in range(n):
        r, w = await ws_connect(demo)
        w.write(frame(2, b"", declared=1 << 20) + b"abcdef")
        conns.append((r, w))
    await asyncio.sleep(3)
    peak = demo.rss_kib()
    open_ = sum(1 for r, _ in conns if not r.at_eof())
    for _, w in conns:
        w.close()
    return f"{n} partial 1 MiB frames held: all {open_} sockets open, no frame reserved", peak


async def attack_trickled_frame(demo, n=200):
    """n sockets send most of a 64 KiB frame, then a byte every 5 s."""
    conns = []
    for _ in range(n):
        r, w = await ws_connect(demo)
        w.write(frame(2, b"", declared=1 << 16) + b"x" * 60000)
        conns.append((r, w))
    start, peak, closed_at = time.monotonic(), demo.rss_kib(), {}
    limit = 40 if QUICK else 130
    while time.monotonic() - start < limit and len(closed_at) < n:
        for i, (r, w) in enumerate(conns):
            if i in closed_at:
                continue
            w.write(b"x")
            try:
                op, payload = await asyncio.wait_for(read_frame(r), 0.001)
                while op == 9:
                    op, payload = await asyncio.wait_for(read_frame(r), 0.001)
                if op == 8:
                    closed_at[i] = (time.monotonic() - start, struct.unpack(">H", payload[:2])[0])
            except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
        peak = max(peak, demo.rss_kib())
        await asyncio.sleep(5)
    for _, w in conns:
        w.close()
    codes, when = outcomes(closed_at)
    return f"{len(closed_at)} of {n} closed with {codes} after {when} of trickling", peak


async def attack_trickled_bodies(demo, n=1000):
    """n POSTs announce 100 bytes of body, send 10, then a byte every 2 s."""
    conns = []
    for _ in range(n):
        r, w = await asyncio.open_connection(demo.host, demo.port)
        w.write(post("/api/notify/x", "", "").replace(b"Content-Length: 0", b"Content-Length: 100") + b'{"message"')
        conns.append((r, w))
    start, peak = time.monotonic(), demo.rss_kib()
    answered = {}
    while time.monotonic() - start < 20 and len(answered) < n:
        for i, (r, w) in enumerate(conns):
            if i not in answered:
                w.write(b" ")
                try:
                    line = await asyncio.wait_for(r.readline(), 0.001)
                    if line:
                        answered[i] = (time.monotonic() - start, line.split()[1].decode())
                except (asyncio.TimeoutError, ConnectionError):
                    pass
        peak = max(peak, demo.rss_kib())
        await asyncio.sleep(2)
    for _, w in conns:
        w.close()
    codes, when = outcomes(answered)
    return f"{len(answered)} of {n} answered {codes} and closed after {when}", peak


async def attack_silent_flood(demo, n=2100):
    """n connections that send nothing, past the descriptor limit (2048)."""
    conns = []
    for _ in range(n):
        conns.append(await asyncio.open_connection(demo.host, demo.port))
    start, peak, resumed = time.monotonic(), demo.rss_kib(), None
    while time.monotonic() - start < 45:
        try:
            status = await http(demo, b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n", timeout=1)
            if status == 200 and time.monotonic() - start > 1:
                resumed = time.monotonic() - start
                break
        except (asyncio.TimeoutError, ConnectionError, OSError):
            pass
        peak = max(peak, demo.rss_kib())
        await asyncio.sleep(0.5)
    for _, w in conns:
        w.close()
    when = f"new requests served again after {resumed:.0f} s" if resumed else "not served within 45 s"
    return f"{n} silent connections: {when} (header-read timeout 30 s)", peak


async def attack_pings(demo, n=100_000):
    """One socket sends n pings and never reads."""
    r, w = await ws_connect(demo)
    sock = w.get_extra_info("socket")
    sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    ping = frame(9, b"p" * 125)
    try:
        for i in range(0, n, 1000):
            w.write(ping * 1000)
            await asyncio.wait_for(w.drain(), 5)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    peak = demo.rss_kib()
    before = await metric(demo, "ori_slow_consumer_closes_total")
    w.close()
    return f"pongs overflowed its queue: closed as a slow consumer, ori_slow_consumer_closes_total = {before}", peak


async def attack_handshakes(demo):
    base = (
        "{m} /ws?token=" + TOKEN + " {v}\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "{keys}Sec-WebSocket-Version: 13\r\n\r\n"
    )
    one, two = f"Sec-WebSocket-Key: {KEY}\r\n", f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n"
    cases = {
        "HEAD": dict(m="HEAD", v="HTTP/1.1", host="Host: x\r\n", keys=one),
        "HTTP/1.0": dict(m="GET", v="HTTP/1.0", host="Host: x\r\n", keys=one),
        "no Host": dict(m="GET", v="HTTP/1.1", host="", keys=one),
        "two keys": dict(m="GET", v="HTTP/1.1", host="Host: x\r\n", keys=two),
        "24 x '!'": dict(m="GET", v="HTTP/1.1", host="Host: x\r\n", keys="Sec-WebSocket-Key: " + "!" * 24 + "\r\n"),
    }
    out = []
    for name, c in cases.items():
        out.append(f"{name} {await http(demo, base.format(**c).encode())}")
    return "; ".join(out), demo.rss_kib()


async def attack_api(demo, canary):
    huge = "c" * 65536
    r, w = await ws_connect(demo)
    w.write(frame(1, json.dumps({"type": "room.join", "room": "cid"}).encode()) + frame(1, b"2"))
    while (await read_frame(r))[1] != b"3":
        pass
    s1 = await http(demo, post("/api/notify/cid", '{"message":"m"}', f"X-Correlation-Id: {huge}\r\n"))
    op, payload = await read_frame(r)
    cid = json.loads(payload)["correlationId"]
    w.close()
    no_token = await http(demo, post("/api/broadcast", '{"message":"forged"}').replace(f"Authorization: Bearer {TOKEN}\r\n".encode(), b""))
    plain = await http(demo, post("/api/broadcast", '{"message":"forged"}').replace(b"application/json", b"text/plain"))
    reserved = await http(demo, post("/api/notify/__broadcast__", '{"message":"forged"}'))
    return (
        f"64 KB X-Correlation-Id: {s1}, notification carries a {len(cid)}-character id; "
        f"no token: {no_token}; text/plain: {plain}; /api/notify/__broadcast__: {reserved}"
    ), demo.rss_kib()


async def main():
    resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
    demo = Demo()
    canary = Canary(demo)
    await canary.start()
    await asyncio.sleep(1)
    attacks = [
        ("partial frame headers (item 1)", lambda: attack_frame_headers(demo)),
        ("trickled frame (item 2)", lambda: attack_trickled_frame(demo)),
        ("trickled HTTP bodies (item 3)", lambda: attack_trickled_bodies(demo)),
        ("silent connections past the descriptor limit (item 3)", lambda: attack_silent_flood(demo)),
        ("100k pings, never read (item 4)", lambda: attack_pings(demo)),
        ("malformed handshakes (item 5)", lambda: attack_handshakes(demo)),
        ("correlation id, token, content type, reserved topic (items 6-8)", lambda: attack_api(demo, canary)),
    ]
    print("| attack | what the server did | canary lost | RSS before / peak / after (MB) |")
    print("|---|---|---:|---|")
    for name, run in attacks:
        before, lost_before, failed_before = demo.rss_kib(), canary.lost(), canary.failed_publishes
        outcome, peak = await run()
        await asyncio.sleep(3)
        after = demo.rss_kib()
        lost = canary.lost() - lost_before
        failed = canary.failed_publishes - failed_before
        note = f" ({failed} publishes failed)" if failed else ""
        print(
            f"| {name} | {outcome} | {lost}{note} | "
            f"{before / 1024:.1f} / {max(peak, before, after) / 1024:.1f} / {after / 1024:.1f} |",
            flush=True,
        )
    sent, got = canary.sent, len(canary.got)
    demo.stop()
    warns = sum(1 for l in demo.log_lines if "accept failed" in l)
    print(f"\ncanary: {sent} published, {got} received; 'accept failed' log lines: {warns}")


if __name__ == "__main__":
    asyncio.run(main())
