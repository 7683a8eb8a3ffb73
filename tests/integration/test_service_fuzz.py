"""Fuzz a real ``image-dynamics serve`` with more than 10,000 malformed messages.

Every malformed message must get exactly one well-formed ``error`` reply (with the expected code
where the defect decides it), the server must keep running, and hello and predict must still work
afterwards. Messages from one DEALER are answered in order, so after each batch a ``ping`` marks
its end: everything received before the ``pong`` answers that batch.

Two sources: a seeded generator of ~20 kinds of targeted defects (9,000 messages), and hypothesis
(1,000 messages of random frames of random bytes, 1,000 with random JSON headers built from the
protocol's own field names): 11,000 in all.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_dynamics.protocol import BackendClient, decode, encode
from image_dynamics.protocol.messages import CLIENT_SIDE_CODES, ErrorCode, check_error_header

READY = "image-dynamics backend ready on "
MAX_MESSAGE_BYTES = 1 << 20  # --max-message-mb 1
SERVER_CODES = {c.value for c in ErrorCode} - {c.value for c in CLIENT_SIDE_CODES}
M, BH, BA, UO, BI, BO, TL, UV, UJ = (
    "malformed_message", "bad_header", "bad_array", "unknown_op", "bad_image", "bad_option", "too_large",
    "unsupported_version", "unknown_job")


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    out, err = folder / "server.out", folder / "server.err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(
            cli() + ["serve", "--tiny-model", "0", "--bind", "tcp://127.0.0.1:0", "--threads", "1",
                     "--max-message-mb", "1", "--max-image-pixels", "4096", "--max-output-pixels", "4096",
                     "--max-steps", "4"],
            stdout=fo, stderr=fe, env={**os.environ, "OMP_NUM_THREADS": "1"})
    end = time.monotonic() + 90
    address = None
    while address is None:
        text = out.read_text()
        if READY in text:
            address = text.split(READY, 1)[1].split()[0]
        elif proc.poll() is not None or time.monotonic() > end:
            raise AssertionError(f"server did not start: {err.read_text()}")
        else:
            time.sleep(0.05)
    yield proc, address, err
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0


class Fuzzer:
    """One DEALER; sends batches, returns the replies of each batch (up to the sync pong)."""

    def __init__(self, address: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SNDHWM, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(address)
        self.n = 0
        self.codes: dict[str, int] = {}

    def exchange(self, messages: list[list[bytes]]) -> list[dict]:
        self.n += 1
        sync = f"sync-{self.n}"
        for frames in messages:
            self.sock.send_multipart(frames)
        self.sock.send_multipart(encode({"protocol": 1, "op": "ping", "id": sync}))
        replies = []
        while True:
            assert self.sock.poll(20_000), "the server stopped answering"
            header = decode(self.sock.recv_multipart(copy=False)).header
            if header.get("op") == "pong" and header.get("id") == sync:
                return replies
            replies.append(header)
            if header.get("op") == "error":
                self.codes[header["code"]] = self.codes.get(header["code"], 0) + 1

    def close(self) -> None:
        self.sock.close()


def check_error(header: dict) -> None:
    check_error_header(header)
    assert header["code"] in SERVER_CODES, header
    assert header["code"] != "internal_error", header
    assert header["protocol"] == 1


# -- targeted defects (seeded) --------------------------------------------------------------------------

def _j(obj) -> bytes:
    return json.dumps(obj).encode()


def _img_header(rid: str, shape, dtype="uint8", **extra) -> dict:
    return {"protocol": 1, "op": "predict", "id": rid, "arrays": [{"name": "image", "dtype": dtype, "shape": shape}],
            **extra}


def defect(rng: random.Random, i: int) -> tuple[list[bytes], set[str]]:
    """One malformed message and the error code(s) it must get."""
    rid = f"f{i}"
    kind = i % 22
    valid_img = np.zeros((8, 8, 3), np.uint8).tobytes()
    if kind == 0:  # random frame counts of random bytes (header invalid UTF-8)
        n = rng.randint(1, 12)
        frames = [b"\xff" + rng.randbytes(rng.randint(0, 40))] + [rng.randbytes(rng.randint(0, 40)) for _ in range(n - 1)]
        return frames, {M}
    if kind == 1:  # truncated JSON (any proper prefix of an object is invalid)
        full = _j(_img_header(rid, [8, 8, 3], options={"seed": 3, "steps": 2}))
        return [full[: rng.randint(1, len(full) - 1)], valid_img], {M}
    if kind == 2:  # wrong type of 'protocol'
        v = rng.choice(["1", 1.0, True, None, [1], {"v": 1}])
        return [_j({"protocol": v, "op": "hello", "id": rid})], {BH}
    if kind == 3:  # wrong versions
        v = rng.choice([0, 2, 3, -1, 10**12, 1 + rng.randint(1, 1000)])
        return [_j({"protocol": v, "op": rng.choice(["hello", "predict", "ping"]), "id": rid})], {UV}
    if kind == 4:  # unknown ops
        op = rng.choice(["HELLO", "Predict", "predict ", "", "shutdown", "eval", "__import__"]) + rng.choice(["", "x", "1"])
        return [_j({"protocol": 1, "op": op, "id": rid})], {UO}
    if kind == 5:  # op of the wrong type / id missing or invalid
        choice = rng.randint(0, 2)
        if choice == 0:
            return [_j({"protocol": 1, "op": rng.choice([1, None, ["ping"], {"op": "ping"}]), "id": rid})], {BH}
        bad_id = rng.choice([None, 7, "", "has space", "x" * 129, "tab\tid", ["id"]])
        header = {"protocol": 1, "op": rng.choice(["ping", "hello", "status", "cancel"])}
        if choice == 1:
            header["id"] = bad_id
        return [_j(header)], {BH}
    if kind == 6:  # huge declared shapes
        shape = [rng.choice([10**6, 2**31, 10**12]), rng.choice([10**6, 2**20]), 3]
        return [_j(_img_header(rid, shape, rng.choice(["uint8", "float32"]))), valid_img], {TL}
    if kind == 7:  # buffer length differs from the descriptor
        delta = rng.choice([-1, 1, -7, 13, -192, 5000])
        return [_j(_img_header(rid, [8, 8, 3])), b"\0" * (192 + delta)], {BA}
    if kind == 8:  # descriptor / frame count mismatch
        if rng.random() < 0.5:
            return [_j(_img_header(rid, [8, 8, 3]))], {BA}
        return [_j(_img_header(rid, [8, 8, 3])), valid_img, valid_img], {BA}
    if kind == 9:  # dtypes off the whitelist
        dt = rng.choice(["object", "O", "<f4", "float128", "bool", "str", "|S8", "V8", "pickle", ""])
        return [_j(_img_header(rid, [8, 8, 3], dt)), valid_img], {BA}
    if kind == 10:  # NaN / Inf images
        img = np.full((8, 8, 3), 0.5, np.float32)
        for _ in range(rng.randint(1, 10)):
            img[rng.randrange(8), rng.randrange(8), rng.randrange(3)] = rng.choice([np.nan, np.inf, -np.inf])
        return [_j(_img_header(rid, [8, 8, 3], "float32")), img.tobytes()], {BI}
    if kind == 11:  # images of the wrong dtype / shape / size
        shape, dtype = rng.choice([([8, 8, 3], "uint16"), ([8, 8, 2], "uint8"), ([8, 8, 3, 1], "uint8"), ([64], "uint8"),
                                   ([4, 8, 3], "uint8"), ([8, 8, 3], "complex64"), ([8, 8, 3], "int32")])
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
        return [_j(_img_header(rid, shape, dtype)), b"\1" * nbytes], {BI}
    if kind == 12:  # bad options
        opt = rng.choice([{"steps": 0}, {"steps": 5}, {"steps": "2"}, {"seed": -1}, {"seed": 2**64}, {"seed": 0.5},
                          {"guidance": -1}, {"guidance": "high"}, {"loop_frames": 1}, {"size": [8]},
                          {"size": "8x8"}, {"size": [8, 8, 8]}, {"size": [2, 8]}, {"sampler": "euler"},
                          {"preview": "yes"}, {"stpes": 2}, {"size": [True, 8]}])
        return [_j(_img_header(rid, [8, 8, 3], options=opt)), valid_img], {BO}
    if kind == 13:  # non-object JSON
        return [_j(rng.choice([[1, 2], "hello", 3, None, True, [{"protocol": 1}]]))], {M}
    if kind == 14:  # empty frames
        return [b""] * rng.randint(1, 3), {M}
    if kind == 15:  # too many frames
        return [_j({"protocol": 1, "op": "ping", "id": rid})] + [b"x"] * rng.randint(9, 20), {M}
    if kind == 16:  # oversized, every frame within libzmq's per-frame limit: a rare, heavy one
        if i % 440 == 16:
            half = b"\0" * (MAX_MESSAGE_BYTES // 2 + 1)
            return [_j(_img_header(rid, [8, 8, 3])), half, half], {TL}
        return [_j(_img_header(rid, [100, 100, 3])), b"\0" * 30000], {TL}  # over --max-image-pixels
    if kind == 17:  # NaN constants and duplicate keys in the header
        return [rng.choice([b'{"protocol": 1, "op": "ping", "id": "a", "x": NaN}', b'{"protocol": Infinity}',
                            b'{"protocol": 1, "protocol": 1, "op": "ping", "id": "a"}',
                            b'{"protocol": 1, "op": "ping", "id": "a", "id": "b"}'])], {M}
    if kind == 18:  # cancel of jobs that do not exist
        return [_j({"protocol": 1, "op": "cancel", "id": f"ghost-{rng.randint(0, 10**9)}"})], {UJ}
    if kind == 19:  # deep nesting / non-UTF-8 header
        if rng.random() < 0.5:
            depth = rng.randint(2000, 30000)
            return [b"[" * depth + b"]" * depth], {M, TL}
        return [b'{"protocol": 1, "op": "\xc3\x28", "id": "a"}'], {M}
    if kind == 20:  # arrays on ops that take none / arrays field of the wrong type
        if rng.random() < 0.5:
            return [_j({"protocol": 1, "op": "ping", "id": rid, "arrays": [{"name": "a", "dtype": "uint8", "shape": [1]}]}),
                    b"\0"], {BA}
        return [_j({"protocol": 1, "op": "predict", "id": rid, "arrays": rng.choice(["image", 5, {"a": 1}])})], {BA}
    # kind 21: wrong header field types in hello / predict
    return [rng.choice([
        _j({"protocol": 1, "op": "hello", "id": rid, "heartbeat_timeout_s": rng.choice([0, 1, -5, 10**6, "10", [10]])}),
        _j({"protocol": 1, "op": "hello", "id": rid, "client": rng.choice(["blender", 5, [1]])}),
        _j({"protocol": 1, "op": "predict", "id": rid, "options": rng.choice([[1], "fast", 3])}),
    ])], {BH}


def test_ten_thousand_malformed_messages_then_hello_and_predict(server):
    proc, address, err = server
    rng = random.Random(20240607)
    fuzzer = Fuzzer(address)
    total = 0
    try:
        messages = [defect(rng, i) for i in range(9_000)]
        for start in range(0, len(messages), 300):
            batch = messages[start:start + 300]
            replies = fuzzer.exchange([frames for frames, _ in batch])
            assert len(replies) == len(batch), f"batch at {start}: {len(replies)} replies to {len(batch)} messages"
            for (frames, expected), reply in zip(batch, replies):
                check_error(reply)
                assert reply["code"] in expected, (frames[0][:120], reply)
            total += len(batch)
    finally:
        fuzzer.close()
    assert total == 9_000
    assert proc.poll() is None
    _still_serves(address)


def _still_serves(address: str) -> None:
    with BackendClient(address, timeout=20) as client:
        info = client.hello()
        assert info["model"]["untrained_test_model"] is True
        image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        result = client.predict(image, seed=1, steps=2, size=(16, 16), timeout=60)
        assert result.S.shape == (16, 2, 16, 16) and np.isfinite(result.S).all()
        status = client.status()
        assert status["running"] == 0 and status["queue_length"] == 0


# -- hypothesis: random bytes, random JSON headers ---------------------------------------------------------

FIELD_NAMES = ["protocol", "op", "id", "arrays", "options", "client", "heartbeat_timeout_s", "name", "dtype", "shape",
               "seed", "steps", "size"]
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=12), st.sampled_from(["hello", "ping", "status", "predict", "cancel", "bye",
                                                           "uint8", "float32", "image", 1, 2]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=6), inner, max_size=5)),
    max_leaves=12)
HEADERS = st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=7)


def test_hypothesis_random_frames_and_headers(server):
    proc, address, err = server
    fuzzer = Fuzzer(address)
    counts = {"bytes": 0, "json": 0}

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.lists(st.binary(max_size=64), min_size=1, max_size=12), min_size=10, max_size=10))
    def random_frames(messages):
        replies = fuzzer.exchange(messages)
        assert len(replies) == len(messages)
        for reply in replies:
            check_error(reply)
        counts["bytes"] += len(messages)

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(st.tuples(HEADERS, st.lists(st.binary(max_size=32), max_size=3)), min_size=10, max_size=10))
    def random_headers(messages):
        replies = fuzzer.exchange([[json.dumps(header).encode()] + buffers for header, buffers in messages])
        assert len(replies) == len(messages), replies
        for (header, _), reply in zip(messages, replies):
            if reply["op"] == "error":
                check_error(reply)
            else:  # a header that happens to be a valid hello / ping / status / bye (never a job: no image)
                assert reply["op"] in ("hello", "pong", "status", "bye") and reply["id"] == header["id"], reply
        counts["json"] += len(messages)

    try:
        random_frames()
        random_headers()
    finally:
        fuzzer.close()
    assert counts["bytes"] >= 1_000 and counts["json"] >= 1_000
    assert proc.poll() is None
    _still_serves(address)


def test_frame_over_the_limit_drops_only_that_connection(server):
    proc, address, err = server
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:  # one byte over max_message_bytes in one frame: libzmq (ZMQ_MAXMSGSIZE) drops the connection
        sock.send_multipart([_j({"protocol": 1, "op": "ping", "id": "x"}), b"\0" * (MAX_MESSAGE_BYTES + 1)])
        assert not sock.poll(1000)  # libzmq closed that connection; no answer
    finally:
        sock.close()
    assert proc.poll() is None
    _still_serves(address)
    assert "Traceback" not in err.read_text()
