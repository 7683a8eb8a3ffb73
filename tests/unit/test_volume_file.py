"""The canonical .npz spectral-volume file: round trip, atomic write, readable errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from image_dynamics.motion.spectral import frequencies_hz
from image_dynamics.motion.volume_file import SpectralVolume, VolumeFileError, load_volume, save_volume


def make_volume(rng=None, K=16, H=6, W=8, with_image=True):
    rng = rng or np.random.default_rng(0)
    S = (rng.normal(size=(K, 2, H, W)) + 1j * rng.normal(size=(K, 2, H, W))).astype(np.complex64)
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8) if with_image else None
    return SpectralVolume(S=S, image=image, source="synth", meta={"seed": 7, "name": "tree"})


def raw_arrays(vol):
    return {
        "S": vol.S,
        "freqs_hz": frequencies_hz(vol.num_freqs),
        "fps": np.float32(30.0),
        "num_frames": np.int32(150),
    }


def test_round_trip(tmp_path):
    vol = make_volume()
    path = tmp_path / "sub" / "v.npz"
    save_volume(path, vol)
    back = load_volume(path)
    np.testing.assert_array_equal(back.S, vol.S)
    assert back.S.dtype == np.complex64
    np.testing.assert_array_equal(back.image, vol.image)
    assert back.fps == 30.0 and back.num_frames == 150
    assert back.source == "synth" and back.meta == {"seed": 7, "name": "tree"}
    np.testing.assert_allclose(back.freqs_hz, np.arange(16) * 0.2, atol=1e-6)


def test_round_trip_minimal_uncompressed(tmp_path):
    vol = SpectralVolume(S=np.zeros((4, 2, 3, 5), np.complex64), fps=24.0, num_frames=120)
    save_volume(tmp_path / "m.npz", vol, compress=False)
    back = load_volume(tmp_path / "m.npz")
    assert back.image is None and back.source == "" and back.meta == {}
    assert (back.fps, back.num_frames, back.width, back.height) == (24.0, 120, 5, 3)


def test_atomic_write_leaves_no_partial(tmp_path):
    save_volume(tmp_path / "a.npz", make_volume())
    save_volume(tmp_path / "a.npz", make_volume(np.random.default_rng(1)))  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_wrong_extension(tmp_path):
    with pytest.raises(VolumeFileError, match=".npz"):
        save_volume(tmp_path / "a.bin", make_volume())


def test_missing_file(tmp_path):
    with pytest.raises(VolumeFileError, match="no such"):
        load_volume(tmp_path / "nope.npz")


def test_garbage_file(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"this is not a zip archive at all" * 10)
    with pytest.raises(VolumeFileError, match="cannot read"):
        load_volume(p)


def test_missing_keys(tmp_path):
    arrays = raw_arrays(make_volume())
    del arrays["num_frames"]
    np.savez(tmp_path / "k.npz", **arrays)
    with pytest.raises(VolumeFileError, match="num_frames"):
        load_volume(tmp_path / "k.npz")


def test_nan_rejected(tmp_path):
    vol = make_volume()
    vol.S[3, 1, 2, 2] = np.nan
    save_volume(tmp_path / "n.npz", vol)
    with pytest.raises(VolumeFileError, match="NaN"):
        load_volume(tmp_path / "n.npz")


def test_real_S_rejected(tmp_path):
    arrays = raw_arrays(make_volume())
    arrays["S"] = np.zeros((16, 2, 2, 2), np.float32)
    np.savez(tmp_path / "r.npz", **arrays)
    with pytest.raises(VolumeFileError, match="complex"):
        load_volume(tmp_path / "r.npz")


def test_wrong_freqs_rejected(tmp_path):
    arrays = raw_arrays(make_volume())
    arrays["freqs_hz"] = (np.arange(16) * 0.25).astype(np.float32)
    np.savez(tmp_path / "f.npz", **arrays)
    with pytest.raises(VolumeFileError, match="freqs_hz"):
        load_volume(tmp_path / "f.npz")


def test_bad_image_and_shape():
    with pytest.raises(VolumeFileError):
        SpectralVolume(S=np.zeros((4, 3, 2, 2), np.complex64))
    with pytest.raises(VolumeFileError, match="image"):
        SpectralVolume(S=np.zeros((4, 2, 2, 2), np.complex64), image=np.zeros((3, 2, 3), np.uint8))


def test_meta_is_plain_json(tmp_path):
    save_volume(tmp_path / "j.npz", make_volume())
    with np.load(tmp_path / "j.npz", allow_pickle=False) as data:
        assert json.loads(str(data["meta_json"])) == {"name": "tree", "seed": 7}


def test_failed_or_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "a.npz"
    old = make_volume()
    save_volume(path, old)
    for exc in (KeyboardInterrupt(), OSError(28, "No space left on device")):
        def broken(fh, **arrays):
            fh.write(b"PK\x03\x04 half a zip")
            raise exc

        monkeypatch.setattr(np, "savez_compressed", broken)
        with pytest.raises(type(exc)):
            save_volume(path, make_volume(np.random.default_rng(5)))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
        np.testing.assert_array_equal(load_volume(path).S, old.S)


def test_a_folder_is_not_overwritten(tmp_path):
    (tmp_path / "d.npz").mkdir()
    with pytest.raises(VolumeFileError, match="folder"):
        save_volume(tmp_path / "d.npz", make_volume())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_concurrent_writers_of_one_file_publish_whole_files(tmp_path):
    """Each writer has its own temp file, so the file is always one writer's whole volume."""
    from concurrent.futures import ThreadPoolExecutor

    path = tmp_path / "same.npz"
    volumes = [make_volume(np.random.default_rng(i), H=40, W=50) for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: save_volume(path, volumes[i % 4]), range(24)))
    got = load_volume(path).S
    assert any(np.array_equal(got, v.S) for v in volumes)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.npz"]


def test_written_file_has_the_usual_permissions(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    os.umask(umask)
    save_volume(tmp_path / "m.npz", make_volume())
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o666 & ~umask
