"""Measurements across a running WAN lab, and the lab's self-check.

measure_rtt(lab, a, b) is the median TCP echo round trip between two nodes;
measure_throughput(lab, a, b, streams, ...) the bytes/s that `streams` TCP connections move
from a to b. selfcheck() holds both against the configured links, and measures the raw
forwarding rate with no shaping (`python -m bench.wan.lab selfcheck`).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import socket
import time
from typing import Any

from bench.wan.network import Lab
from bench.wan.topology import Topology

# --- the tools (each runs inside a node) -----------------------------------------------

def _echo_server(port: int, ready: Any) -> None:
    srv = socket.create_server(("0.0.0.0", port))
    ready.send(True)
    conn, _ = srv.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while data := conn.recv(4096):
        conn.sendall(data)


def _echo_client(host: str, port: int, count: int, out: Any) -> None:
    s = socket.create_connection((host, port), timeout=30)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts = []
    for _ in range(count):
        t = time.perf_counter()
        s.sendall(b"x" * 64)
        got = 0
        while got < 64:
            got += len(s.recv(64 - got))
        rtts.append(time.perf_counter() - t)
    s.close()
    out.send(rtts)


def _sink(port: int, streams: int, duration: float, warmup: float, ready: Any,
          out: Any) -> None:
    """Accepts `streams` connections, drains them; reports bytes/s between warmup and the end."""
    import selectors

    srv = socket.create_server(("0.0.0.0", port), backlog=streams)
    ready.send(True)
    conns = [srv.accept()[0] for _ in range(streams)]
    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c, selectors.EVENT_READ)
    buf = bytearray(1 << 20)
    total, counted, t0 = 0, 0, time.perf_counter()
    t_begin, t_end, open_ = t0 + warmup, t0 + duration, len(conns)
    last = t0
    while open_:
        for key, _ in sel.select(timeout=1.0):
            n = key.fileobj.recv_into(buf)  # type: ignore[union-attr]
            if n == 0:
                sel.unregister(key.fileobj)
                open_ -= 1
                continue
            now = time.perf_counter()
            total += n
            if t_begin <= now <= t_end:
                counted += n
                last = now
    out.send({"bytes": total, "rate": counted / max(1e-9, last - t_begin)})


def _source(host: str, port: int, streams: int, duration: float) -> None:
    socks = [socket.create_connection((host, port), timeout=30) for _ in range(streams)]
    for s in socks:
        s.setblocking(False)
    import selectors

    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
    chunk = memoryview(bytes(1 << 20))
    end = time.perf_counter() + duration
    while time.perf_counter() < end:
        for key, _ in sel.select(timeout=0.2):
            try:
                key.fileobj.send(chunk)  # type: ignore[union-attr]
            except BlockingIOError:
                pass
    for s in socks:
        s.close()


def measure_rtt(lab: Lab, a: str, b: str, count: int = 20, port: int = 5201) -> float:
    """Median TCP echo round trip a -> b -> a, seconds (first exchange dropped)."""
    ctx = mp.get_context("spawn")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    out_r, out_w = ctx.Pipe(duplex=False)
    server = lab.process(b, _echo_server, (port, ready_w))
    if not ready_r.poll(30):
        raise TimeoutError("echo server did not start")
    ready_r.recv()
    client = lab.process(a, _echo_client, (lab.ip(b), port, count + 1, out_w))
    if not out_r.poll(60):
        raise TimeoutError("echo client did not finish")
    rtts = sorted(out_r.recv()[1:])
    client.join(10)
    server.join(10)
    return rtts[len(rtts) // 2]


def measure_throughput(lab: Lab, a: str, b: str, streams: int, duration: float,
                       warmup: float, port: int = 5202) -> float:
    """Bytes/s from a to b over `streams` TCP connections, counted after `warmup` s."""
    ctx = mp.get_context("spawn")
    ready_r, ready_w = ctx.Pipe(duplex=False)
    out_r, out_w = ctx.Pipe(duplex=False)
    sink = lab.process(b, _sink, (port, streams, duration, warmup, ready_w, out_w))
    if not ready_r.poll(30):
        raise TimeoutError("sink did not start")
    ready_r.recv()
    source = lab.process(a, _source, (lab.ip(b), port, streams, duration))
    if not out_r.poll(duration + 60):
        raise TimeoutError("throughput measurement did not finish")
    result = out_r.recv()
    source.join(10)
    sink.join(10)
    return float(result["rate"])


# --- self-check -------------------------------------------------------------------------

def selfcheck(args: argparse.Namespace) -> int:
    """RTT, single-stream and 16-stream throughput against the configured link, and the
    raw forwarding rate with no shaping. Prints a table and JSON."""
    rows: list[dict[str, Any]] = []
    ok = True

    def row(what: str, expected: float | None, measured: float, unit: str, tolerance: float | None,
            note: str = "") -> None:
        nonlocal ok
        ratio = measured / expected if expected else None
        passed = None if tolerance is None or ratio is None else abs(ratio - 1) <= tolerance
        if passed is False:
            ok = False
        rows.append({"what": what, "expected": expected, "measured": measured, "unit": unit,
                     "ratio": ratio, "pass": passed, "note": note})

    with Lab(f"peers=2 master=none mtu={args.mtu}") as lab:
        for streams in (1, 4):
            rate = measure_throughput(lab, "p0", "p1", streams, args.duration, 1.0)
            row(f"raw forwarding, {streams} stream(s), no shaping", None, rate / 1e6, "MB/s",
                None, "target >= 300 MB/s")
            rows[-1]["pass"] = rate >= 300e6
            ok &= rate >= 300e6
    for rtt_ms in args.rtt:
        desc = (f"peers=2 master=none rtt={rtt_ms}ms rate={args.rate} window={args.window} "
                f"mtu={args.mtu}")
        top = Topology.parse(desc)
        with Lab(top) as lab:
            rtt = measure_rtt(lab, "p0", "p1")
            row(f"RTT ({desc})", rtt_ms, rtt * 1e3, "ms", 0.10)
            window = top.window or 0
            one = measure_throughput(lab, "p0", "p1", 1, args.duration + rtt_ms / 100,
                                     1.0 + rtt_ms / 100)
            # Linux advertises about 3/4 of the buffer as window (sk scaling_ratio), so one
            # stream moves ~0.75 x buffer / RTT; the check accepts 0.6-1.1 of buffer / RTT.
            row(f"1 stream, window {window >> 10} KiB", window / (rtt_ms / 1e3) / 1e6,
                one / 1e6, "MB/s", None, "expected: window / RTT (kernel: ~0.75x)")
            rows[-1]["pass"] = 0.6 <= rows[-1]["ratio"] <= 1.1
            ok &= rows[-1]["pass"]
            many = measure_throughput(lab, "p0", "p1", 16, args.duration + rtt_ms / 100,
                                      1.0 + rtt_ms / 100)
            cap = top.default.rate / 8
            row("16 streams", cap / 1e6, many / 1e6, "MB/s", 0.10, "expected: rate cap")
            rows[-1]["drops"] = {k: v["drop_queue"] for k, v in lab.stats()["links"].items()
                                 if v["drop_queue"]}
    print(f"{'check':58} {'expected':>9} {'measured':>9} {'unit':>5} {'ratio':>6} pass")
    for r in rows:
        exp = "-" if r["expected"] is None else f"{r['expected']:.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
        print(f"{r['what']:58} {exp:>9} {r['measured']:9.2f} {r['unit']:>5} {ratio:>6} "
              f"{'-' if r['pass'] is None else ('yes' if r['pass'] else 'NO')}")
    print(json.dumps(rows, indent=1))
    return 0 if ok else 1
