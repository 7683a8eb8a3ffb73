"""Transfer time of a spectral volume over the wire protocol, against a plain memory copy.

The volume is complex64 16 x 2 x 256 x 160 (10,485,760 bytes, a result at the model's full
resolution). A peer process (a ROUTER, like the server) echoes every message back to a DEALER
(like the client); both sides use the protocol codec (``encode`` / ``decode``, zero-copy sends
and receives, as the server and ``BackendClient`` do). One-way time = round trip / 2, median of
``--repeats`` after warm-up, over tcp loopback and ipc. The baseline, measured in the same run,
is a plain memory copy of the same bytes (``np.copyto`` into a preallocated array); a copy into
a fresh array (what a receiver pays at least once) is shown too, and so is the same echo over a
bare TCP socket (no ZeroMQ, no codec): the kernel's own floor for tcp loopback on this machine.
Target: one-way within 2x of the plain copy.

    .venv/bin/python bench/transfer.py [--repeats 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import zmq

from image_dynamics.protocol.codec import decode, encode

SHAPE = (16, 2, 256, 160)


def peer(address: str) -> None:
    """Echo every message back to its sender, decoded and re-encoded, until an empty header."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    print("ready", flush=True)
    while True:
        frames = sock.recv_multipart(copy=False)
        identity, rest = frames[0], frames[1:]
        msg = decode(rest)
        if msg.header.get("op") == "bye":
            sock.send_multipart([identity, *encode({"protocol": 1, "op": "bye", "id": "b"})])
            break
        sock.send_multipart([identity, *encode({**msg.header, "op": "result"}, msg.arrays)], copy=False)
    sock.close(0)
    ctx.term()


def raw_peer(port_file: str) -> None:
    """Echo fixed-size blobs over a bare TCP socket (the kernel floor, no ZeroMQ)."""
    import socket

    n = int(np.prod(SHAPE)) * 8
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    print(ls.getsockname()[1], flush=True)
    conn, _ = ls.accept()
    buf = memoryview(bytearray(n))
    while True:
        got = 0
        while got < n:
            k = conn.recv_into(buf[got:])
            if k == 0:
                conn.close()
                return
            got += k
        conn.sendall(buf)


def raw_round_trip_ms(volume: np.ndarray, repeats: int) -> float:
    import socket

    proc = subprocess.Popen([sys.executable, __file__, "--raw-peer", "-"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        s = socket.create_connection(("127.0.0.1", port))
        out = memoryview(volume.reshape(-1).view(np.uint8))
        back = memoryview(bytearray(out.nbytes))

        def once() -> None:
            s.sendall(out)
            got = 0
            while got < out.nbytes:
                got += s.recv_into(back[got:])

        ms = median_ms(once, repeats)
        s.close()
        proc.wait(10)
        return ms
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def round_trip_ms(address: str, volume: np.ndarray, repeats: int) -> float:
    proc = subprocess.Popen([sys.executable, __file__, "--peer", address], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        ctx = zmq.Context()
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVTIMEO, 30_000)
        sock.connect(address)
        header = {"protocol": 1, "op": "predict", "id": "bench"}

        def once() -> None:
            sock.send_multipart(encode(header, {"S": volume}), copy=False)
            msg = decode(sock.recv_multipart(copy=False))
            assert msg.arrays["S"].shape == volume.shape

        ms = median_ms(once, repeats)
        sock.send_multipart(encode({"protocol": 1, "op": "bye", "id": "b"}))
        sock.recv_multipart()
        sock.close(0)
        ctx.term()
        proc.wait(10)
        return ms
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--peer", metavar="ADDRESS", help=argparse.SUPPRESS)
    ap.add_argument("--raw-peer", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.peer:
        peer(args.peer)
        return
    if args.raw_peer:
        raw_peer(args.raw_peer)
        return

    rng = np.random.default_rng(0)
    volume = (rng.standard_normal(SHAPE, dtype=np.float32)
              + 1j * rng.standard_normal(SHAPE, dtype=np.float32)).astype(np.complex64)
    nbytes = volume.nbytes
    dst = np.empty_like(volume)
    copy_ms = median_ms(lambda: np.copyto(dst, volume), args.repeats)
    fresh_ms = median_ms(lambda: volume.copy(), args.repeats)

    with tempfile.TemporaryDirectory(prefix="id-bench-") as tmp:
        rows = []
        for name, address in (("tcp loopback", "tcp://127.0.0.1:0"), ("ipc", f"ipc://{tmp}/bench.sock")):
            if address.endswith(":0"):
                import socket

                s = socket.socket()
                s.bind(("127.0.0.1", 0))
                address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
                s.close()
            rtt = round_trip_ms(address, volume, args.repeats)
            rows.append((f"{name}: one way (round trip / 2)", rtt / 2, f"{rtt / 2 / copy_ms:.2f}x"))
            rows.append((f"{name}: round trip", rtt, f"{rtt / copy_ms:.2f}x"))
        raw = raw_round_trip_ms(volume, args.repeats)
        rows.append(("bare TCP socket, no ZeroMQ: one way", raw / 2, f"{raw / 2 / copy_ms:.2f}x"))

    print(f"volume complex64 {'x'.join(map(str, SHAPE))} = {nbytes:,} bytes; median of {args.repeats}; "
          f"{os.cpu_count()} CPUs")
    print(f"{'what':40s} {'ms':>8s} {'GB/s':>7s} {'vs copy':>8s}")
    table = [("baseline: np.copyto (preallocated)", copy_ms, "1.00x"),
             ("baseline: copy into a fresh array", fresh_ms, f"{fresh_ms / copy_ms:.2f}x"), *rows]
    for what, ms, ratio in table:
        print(f"{what:40s} {ms:8.2f} {nbytes / ms / 1e6:7.2f} {ratio:>8s}")
    one_way = [ms for what, ms, _ in rows if "one way" in what and "bare" not in what]
    worst = max(one_way) / copy_ms
    print(f"target one way <= 2x a memory copy: {'met' if worst <= 2 else 'NOT met'} (worst {worst:.2f}x)")


if __name__ == "__main__":
    main()
