"""Distributed training: torchrun, two CPU processes on the gloo backend, tiny preset, 3 steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import torch
    from safetensors.torch import save_file
    from image_dynamics.model import ModelConfig
    from image_dynamics.training.loop import TrainSettings
    from image_dynamics.training.train_vae import train_vae

    cache, out, dump = sys.argv[1:4]
    s = TrainSettings(out=out, steps=3, batch_size=4, eval_every=2, eval_size=8, ckpt_every=0, log_every=1,
                      threads=1, progress=False)
    result = train_vae(cache, s, ModelConfig.preset("tiny"))
    rank = int(os.environ["RANK"])
    state = {k: v.detach().contiguous() for k, v in result["net"].state_dict().items()}
    save_file(state, os.path.join(dump, f"rank{rank}.safetensors"))
    # One file per rank: both ranks share stdout, where their lines can interleave.
    with open(os.path.join(dump, f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "step": result["step"], "checkpoint": result["checkpoint"]}, f)
    """
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    from image_dynamics.synth.dataset import build_dataset
    from image_dynamics.training.data import build_cache

    root = tmp_path_factory.mktemp("ddp")
    build_dataset(root / "synth", train_count=4, test_count=2, workers=1, shard_size=4, width=48, height=32,
                  progress=False)
    build_cache([root / "synth"], root / "cache", (48, 32), workers=1, progress=False)
    return root / "cache"


@pytest.mark.slow
def test_two_gloo_processes_train_in_lockstep(cache, tmp_path):
    import torch
    from safetensors.torch import load_file

    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    out, dump = tmp_path / "run", tmp_path / "dump"
    dump.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2",
           str(script), str(cache), str(out), str(dump)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reports = sorted((json.loads(p.read_text()) for p in dump.glob("rank*.json")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in reports] == [0, 1] and all(r["step"] == 3 for r in reports)
    assert reports[0]["checkpoint"] and reports[1]["checkpoint"] is None

    # the same weights on both ranks, and in rank 0's checkpoint
    a, b = load_file(str(dump / "rank0.safetensors")), load_file(str(dump / "rank1.safetensors"))
    ck = load_file(str(Path(reports[0]["checkpoint"]) / "model.safetensors"))
    assert a.keys() == b.keys() == ck.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert torch.equal(a[k], ck[k]), k

    # only rank 0 logged and saved: one checkpoint, one log line per step, one config
    ckpts = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert ckpts == ["step_00000003"]
    steps = [json.loads(line)["step"] for line in (out / "train.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    evals = [json.loads(line)["step"] for line in (out / "eval.jsonl").read_text().splitlines()]
    assert evals == [2, 3]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["runtime"]["world_size"] == 2 and cfg["runtime"]["backend"] == "gloo"
    state = json.loads((out / "checkpoints" / "step_00000003" / "train_state.json").read_text())
    assert state["world_size"] == 2 and state["global_batch"] == 4
