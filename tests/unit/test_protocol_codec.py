"""The wire codec and message validation: round trips and every rejection, with its error code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from image_dynamics.protocol import codec, messages
from image_dynamics.protocol.codec import DTYPES, CodecLimits, decode, encode
from image_dynamics.protocol.messages import (
    DEFAULT_HINTS,
    PROTOCOL_VERSION,
    ErrorCode,
    PredictOptions,
    ProtocolError,
    check_error_header,
    error_header,
    image_to_rgb_uint8,
    parse_options,
    parse_predict,
    validate_request,
)

PROTOCOL_DIR = Path(codec.__file__).resolve().parent
LIMITS = SimpleNamespace(max_steps=100, max_output_pixels=64 * 64, max_output_side=128, min_output_side=8,
                         max_image_pixels=100 * 100, min_image_side=8)


def frames_of(header: dict, *buffers: bytes) -> list[bytes]:
    return [json.dumps(header).encode(), *buffers]


def code_of(frames, limits: CodecLimits = CodecLimits()) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        decode(frames, limits)
    assert info.value.message and info.value.hint
    return info.value.code


def hdr(**extra) -> dict:
    return {"protocol": PROTOCOL_VERSION, "op": "predict", "id": "j1", **extra}


# -- round trips ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DTYPES))
def test_round_trip_every_dtype(name):
    rng = np.random.default_rng(0)
    dt = DTYPES[name]
    a = (rng.standard_normal((3, 5)) * 50).astype(dt) if dt.kind != "c" else (
        rng.standard_normal((3, 5)) + 1j * rng.standard_normal((3, 5))).astype(dt)
    frames = encode({"protocol": 1, "op": "x", "id": "a"}, {"a": a})
    msg = decode(frames)
    assert msg.header["arrays"] == [{"name": "a", "dtype": name, "shape": [3, 5]}]
    np.testing.assert_array_equal(msg.arrays["a"], a)
    assert msg.arrays["a"].dtype == dt and not msg.arrays["a"].flags.writeable


def test_round_trip_complex_volume_several_arrays_and_odd_shapes():
    S = (np.arange(16 * 2 * 3 * 4) * (1 + 2j)).astype(np.complex64).reshape(16, 2, 3, 4)
    arrays = {"S": S, "empty": np.zeros((0, 7), np.float32), "scalar": np.array(3.5, np.float64),
              "strided": np.arange(20, dtype=np.int32)[::2]}
    frames = encode({"protocol": 1, "op": "result", "id": "r"}, arrays)
    assert len(frames) == 5 and frames[1].nbytes == S.nbytes  # S sent as raw complex64
    msg = decode(frames)
    for k, v in arrays.items():
        np.testing.assert_array_equal(msg.arrays[k], v)
        assert msg.arrays[k].shape == v.shape


def test_big_endian_input_is_sent_little_endian():
    a = np.arange(6, dtype=">f4").reshape(2, 3)
    frames = encode({"protocol": 1, "op": "x", "id": "a"}, {"a": a})
    assert bytes(frames[1]) == np.arange(6, dtype="<f4").tobytes()
    np.testing.assert_array_equal(decode(frames).arrays["a"], a)


def test_raw_bytes_layout_is_little_endian_c_order():
    """What an independent client would send: struct-packed little-endian bytes."""
    import struct

    raw = struct.pack("<6H", 1, 2, 3, 4, 5, 256)
    msg = decode(frames_of(hdr(arrays=[{"name": "a", "dtype": "uint16", "shape": [2, 3]}]), raw))
    assert msg.arrays["a"].tolist() == [[1, 2, 3], [4, 5, 256]]


def test_encode_rejects_unlisted_dtypes_and_nan_in_header():
    with pytest.raises(TypeError):
        encode({"protocol": 1}, {"a": np.zeros(2, dtype=bool)})
    with pytest.raises(TypeError):
        encode({"protocol": 1}, {"a": np.array([object()])})
    with pytest.raises(ValueError):
        encode({"protocol": 1, "x": float("nan")})


def test_zmq_frame_like_objects_are_accepted():
    class FakeFrame:
        def __init__(self, b):
            self.buffer = memoryview(b)

    frames = encode(hdr(), {"image": np.zeros((2, 2, 3), np.uint8)})
    msg = decode([FakeFrame(bytes(f)) for f in frames])
    assert msg.arrays["image"].shape == (2, 2, 3)


# -- frame-level rejections -------------------------------------------------------------------------

def test_frame_level_errors():
    small = CodecLimits(max_header_bytes=200, max_message_bytes=1000, max_arrays=2)
    assert code_of([]) is ErrorCode.MALFORMED_MESSAGE
    assert code_of([b"{}"] * 4, small) is ErrorCode.MALFORMED_MESSAGE  # too many frames
    assert code_of([b'{"protocol":1}', b"\0" * 2000], small) is ErrorCode.TOO_LARGE
    assert code_of([b""]) is ErrorCode.MALFORMED_MESSAGE
    assert code_of([b" " * 300 + b"{}"], small) is ErrorCode.TOO_LARGE
    assert code_of([b"\xff\xfe{}"]) is ErrorCode.MALFORMED_MESSAGE  # not UTF-8
    assert code_of([b'{"protocol": 1,']) is ErrorCode.MALFORMED_MESSAGE  # truncated JSON
    assert code_of([b'{"protocol": NaN}']) is ErrorCode.MALFORMED_MESSAGE
    assert code_of([b'{"protocol": 1, "protocol": 1}']) is ErrorCode.MALFORMED_MESSAGE  # duplicate key
    assert code_of([b"[" * 50_000 + b"]" * 50_000], CodecLimits(max_header_bytes=10**6)) is ErrorCode.MALFORMED_MESSAGE
    assert code_of([b"[1, 2]"]) is ErrorCode.MALFORMED_MESSAGE  # not an object
    assert code_of([b'"hello"']) is ErrorCode.MALFORMED_MESSAGE


def test_version_errors():
    assert code_of(frames_of({"op": "hello", "id": "a"})) is ErrorCode.BAD_HEADER
    assert code_of(frames_of({"protocol": "1", "op": "hello", "id": "a"})) is ErrorCode.BAD_HEADER
    assert code_of(frames_of({"protocol": True, "op": "hello", "id": "a"})) is ErrorCode.BAD_HEADER
    with pytest.raises(ProtocolError) as info:
        decode(frames_of({"protocol": 99, "op": "hello", "id": "a"}))
    assert info.value.code is ErrorCode.UNSUPPORTED_VERSION
    assert info.value.extra["supported_versions"] == [1] and info.value.request_id == "a"


# -- array rejections ---------------------------------------------------------------------------------

GOOD = {"name": "image", "dtype": "uint8", "shape": [2, 2, 3]}


@pytest.mark.parametrize(
    "arrays, buffers, expected",
    [
        ({"name": "image"}, [b"x" * 12], ErrorCode.BAD_ARRAY),  # arrays not a list
        ([GOOD], [], ErrorCode.BAD_ARRAY),  # descriptor without frame
        ([], [b"x" * 12], ErrorCode.BAD_ARRAY),  # frame without descriptor
        (["image"], [b"x" * 12], ErrorCode.BAD_ARRAY),  # descriptor not an object
        ([{**GOOD, "order": "F"}], [b"x" * 12], ErrorCode.BAD_ARRAY),  # unknown key
        ([{"name": "image", "dtype": "uint8"}], [b"x" * 12], ErrorCode.BAD_ARRAY),  # missing shape
        ([{**GOOD, "name": ""}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "name": 7}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([GOOD, GOOD], [b"x" * 12, b"x" * 12], ErrorCode.BAD_ARRAY),  # duplicate name
        ([{**GOOD, "dtype": "object"}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "dtype": "<f4"}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "dtype": "bool"}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "shape": [2, -2, 3]}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "shape": [2.0, 2, 3]}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "shape": [True, 2, 3]}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "shape": "2,2,3"}], [b"x" * 12], ErrorCode.BAD_ARRAY),
        ([{**GOOD, "shape": [1] * 9}], [b"x"], ErrorCode.BAD_ARRAY),  # too many dims
        ([{**GOOD, "shape": [10**9, 10**9, 3]}], [b"x" * 12], ErrorCode.TOO_LARGE),  # huge declared shape
        ([GOOD], [b"x" * 11], ErrorCode.BAD_ARRAY),  # buffer one byte short
        ([GOOD], [b"x" * 13], ErrorCode.BAD_ARRAY),  # buffer one byte long
        ([{**GOOD, "dtype": "float32"}], [b"x" * 12], ErrorCode.BAD_ARRAY),  # dtype / length mismatch
    ],
)
def test_array_errors(arrays, buffers, expected):
    assert code_of(frames_of(hdr(arrays=arrays), *buffers)) is expected


def test_errors_carry_the_request_id_when_readable():
    with pytest.raises(ProtocolError) as info:
        decode(frames_of(hdr(arrays=[GOOD]), b"x"))
    assert info.value.request_id == "j1"
    with pytest.raises(ProtocolError) as info:
        decode(frames_of({**hdr(arrays=[GOOD]), "id": "has space"}, b"x"))
    assert info.value.request_id is None


def test_size_and_frame_count_errors_carry_the_request_id():
    """The header is read first, so a client waiting on its job hears about a message too big."""
    small = CodecLimits(max_header_bytes=200, max_message_bytes=1000, max_arrays=2)
    for frames, code in [(frames_of(hdr(), b"\0" * 600, b"\0" * 600), ErrorCode.TOO_LARGE),  # each frame fits
                         (frames_of(hdr(), b"\0" * 2000), ErrorCode.TOO_LARGE),
                         (frames_of(hdr(), b"", b"", b""), ErrorCode.MALFORMED_MESSAGE)]:  # too many frames
        with pytest.raises(ProtocolError) as info:
            decode(frames, small)
        assert (info.value.code, info.value.request_id) == (code, "j1")
    big_header = frames_of({**hdr(), "pad": "x" * 300})  # over max_header_bytes: not read, so no id
    with pytest.raises(ProtocolError) as info:
        decode(big_header, small)
    assert (info.value.code, info.value.request_id) == (ErrorCode.TOO_LARGE, None)
    # max_message_bytes counts header and arrays together: exactly at the limit passes
    frames = frames_of(hdr(arrays=[{"name": "image", "dtype": "uint8", "shape": [10]}]), b"\0" * 10)
    exact = CodecLimits(max_header_bytes=200, max_message_bytes=len(frames[0]) + 10)
    assert decode(frames, exact).arrays["image"].shape == (10,)
    assert code_of(frames, CodecLimits(max_header_bytes=200, max_message_bytes=len(frames[0]) + 9)) is ErrorCode.TOO_LARGE


# -- request validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "header, expected",
    [
        ({"protocol": 1, "id": "a"}, ErrorCode.BAD_HEADER),  # no op
        ({"protocol": 1, "op": 3, "id": "a"}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "fly", "id": "a"}, ErrorCode.UNKNOWN_OP),
        ({"protocol": 1, "op": "hello"}, ErrorCode.BAD_HEADER),  # no id
        ({"protocol": 1, "op": "hello", "id": ""}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "hello", "id": "a b"}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "hello", "id": "x" * 129}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "hello", "id": 5}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "hello", "id": "a", "heartbeat_timeout_s": 0.5}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "hello", "id": "a", "heartbeat_timeout_s": "10"}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "hello", "id": "a", "client": "blender"}, ErrorCode.BAD_HEADER),
        ({"protocol": 1, "op": "ping", "id": "a", "arrays": [GOOD]}, ErrorCode.BAD_ARRAY),
        ({"protocol": 1, "op": "predict", "id": "a", "options": [1]}, ErrorCode.BAD_HEADER),
    ],
)
def test_validate_request_errors(header, expected):
    with pytest.raises(ProtocolError) as info:
        validate_request(header)
    assert info.value.code is expected


def test_validate_request_accepts_every_op():
    for op in messages.Op:
        assert validate_request({"protocol": 1, "op": op.value, "id": "a-1", "unknown_field": 1}) is op


def predict_with(image, **options):
    return parse_predict(hdr(options=options), {"image": image}, LIMITS, ("ddim", "dpmpp_2m"))


@pytest.mark.parametrize(
    "image, expected",
    [
        (np.zeros((16, 16, 3), np.uint16), ErrorCode.BAD_IMAGE),
        (np.zeros((16, 16, 2), np.uint8), ErrorCode.BAD_IMAGE),
        (np.zeros((16, 16, 3, 1), np.uint8), ErrorCode.BAD_IMAGE),
        (np.zeros((16,), np.uint8), ErrorCode.BAD_IMAGE),
        (np.zeros((4, 16, 3), np.uint8), ErrorCode.BAD_IMAGE),  # too small
        (np.zeros((101, 100, 3), np.uint8), ErrorCode.TOO_LARGE),
        (np.full((16, 16, 3), np.nan, np.float32), ErrorCode.BAD_IMAGE),
        (np.full((16, 16, 3), np.inf, np.float32), ErrorCode.BAD_IMAGE),
    ],
)
def test_image_errors(image, expected):
    with pytest.raises(ProtocolError) as info:
        predict_with(image)
    assert info.value.code is expected and info.value.request_id == "j1"


def test_predict_needs_exactly_one_image():
    with pytest.raises(ProtocolError) as info:
        parse_predict(hdr(), {}, LIMITS)
    assert info.value.code is ErrorCode.BAD_ARRAY
    with pytest.raises(ProtocolError):
        parse_predict(hdr(), {"image": np.zeros((8, 8, 3), np.uint8), "extra": np.zeros(1, np.uint8)}, LIMITS)


@pytest.mark.parametrize(
    "options, expected",
    [
        ({"seeds": 1}, ErrorCode.BAD_OPTION),
        ({"seed": -1}, ErrorCode.BAD_OPTION),
        ({"seed": 2**63}, ErrorCode.BAD_OPTION),
        ({"seed": 1.5}, ErrorCode.BAD_OPTION),
        ({"seed": True}, ErrorCode.BAD_OPTION),
        ({"steps": 0}, ErrorCode.BAD_OPTION),
        ({"steps": 101}, ErrorCode.BAD_OPTION),
        ({"steps": "25"}, ErrorCode.BAD_OPTION),
        ({"guidance": -1}, ErrorCode.BAD_OPTION),
        ({"guidance": float("nan")}, ErrorCode.BAD_OPTION),
        ({"guidance": float("inf")}, ErrorCode.BAD_OPTION),
        ({"loop_frames": 1}, ErrorCode.BAD_OPTION),
        ({"loop_frames": 90.5}, ErrorCode.BAD_OPTION),
        ({"size": [32]}, ErrorCode.BAD_OPTION),
        ({"size": [32, "32"]}, ErrorCode.BAD_OPTION),
        ({"size": {"w": 1}}, ErrorCode.BAD_OPTION),
        ({"size": [4, 32]}, ErrorCode.BAD_OPTION),
        ({"size": [200, 32]}, ErrorCode.BAD_OPTION),
        ({"size": [128, 128]}, ErrorCode.TOO_LARGE),
        ({"sampler": "euler"}, ErrorCode.BAD_OPTION),
        ({"preview": 1}, ErrorCode.BAD_OPTION),
    ],
)
def test_option_errors(options, expected):
    with pytest.raises(ProtocolError) as info:
        predict_with(np.zeros((16, 16, 3), np.uint8), **options)
    assert info.value.code is expected


def test_options_defaults_and_values():
    assert parse_options(None, LIMITS) == PredictOptions()
    o = parse_options({"seed": 7, "steps": 3, "guidance": 2, "loop_frames": 90, "size": [48, 32],
                       "sampler": "ddim", "preview": True}, LIMITS, ("ddim",))
    assert o == PredictOptions(7, 3, 2.0, 90, (48, 32), "ddim", True)
    assert o.to_dict()["size"] == [48, 32]
    assert o.batch_key() == PredictOptions(8, 3, 2.0, 90, (48, 32), "ddim", False).batch_key()


def test_image_conversion():
    f = np.array([[[0.0, 0.5, 1.0, 0.2], [-1.0, 2.0, 0.25, 1.0]]], np.float32)
    out = image_to_rgb_uint8(f)
    assert out.dtype == np.uint8 and out.tolist() == [[[0, 128, 255], [0, 255, 64]]]
    gray = image_to_rgb_uint8(np.full((2, 3), 9, np.uint8))
    assert gray.shape == (2, 3, 3) and (gray == 9).all()
    assert image_to_rgb_uint8(np.zeros((2, 3, 1), np.uint8)).shape == (2, 3, 3)


def test_error_codes_are_stable_and_have_hints():
    assert {c.value for c in ErrorCode} >= {
        "malformed_message", "unsupported_version", "bad_header", "unknown_op", "bad_array", "bad_image",
        "bad_option", "too_large", "queue_full", "duplicate_job", "unknown_job", "out_of_memory",
        "internal_error", "shutting_down", "timeout", "backend_restarted", "backend_unreachable", "cancelled"}
    for code in ErrorCode:
        assert DEFAULT_HINTS[code]
        h = error_header(code, "something went wrong", request_id="a")
        check_error_header(h)
        assert json.loads(json.dumps(h)) == h
    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    for code in ErrorCode:
        assert f"`{code.value}`" in doc, f"docs/protocol.md does not document {code.value}"


# -- the add-on bundles this package as-is ----------------------------------------------------------------

def test_protocol_imports_without_torch_or_other_package_modules():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import image_dynamics.protocol as p\n"
        "from image_dynamics.protocol import BackendClient, encode, decode\n"
        "bad = sorted(m for m in sys.modules if m.startswith('image_dynamics') and m != 'image_dynamics'"
        " and not m.startswith('image_dynamics.protocol'))\n"
        "assert not bad, bad\n"
        "assert 'cv2' not in sys.modules and 'scipy' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_protocol_folder_works_as_a_standalone_copy(tmp_path):
    """Copied under another package name (as the add-on bundles it), with torch blocked."""
    dest = tmp_path / "bundled" / "protocol"
    shutil.copytree(PROTOCOL_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "bundled" / "__init__.py").write_text("")
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['image_dynamics'] = None\n"
        "from bundled.protocol import BackendClient, encode, decode\n"
        "import numpy as np\n"
        "m = decode(encode({'protocol': 1, 'op': 'ping', 'id': 'a'}, {'a': np.ones(3, np.float32)}))\n"
        "print(m.arrays['a'].sum())\n"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3.0"
