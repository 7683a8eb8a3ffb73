"""Jobs per second through the ZeroMQ front: single-process server vs Ray Serve with 1 and 2 replicas.

Each backend is a real ``image-dynamics serve`` process with the tiny untrained model
(``--tiny-model 0``), one torch thread per model copy. ``--clients`` concurrent
``BackendClient``s submit ``--jobs`` predict jobs in all (each client keeps all of its jobs in
flight) after a warm-up; jobs/s = jobs / wall time from the first submit to the last result.
Ratios are against the single-process server measured in the same run. The Ray backends start
their own local Ray instance (``--ray`` with no address), so their numbers include Ray's
overhead on this machine: on few cores the replicas, Ray's own processes and the front share
the CPUs.

    .venv/bin/python bench/serve_throughput.py [--jobs 48] [--clients 4] [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from image_dynamics.protocol import BackendClient

READY_RE = re.compile(r"image-dynamics backend ready on (tcp://\S+)")


def cli() -> list[str]:
    exe = Path(sys.executable).with_name("image-dynamics")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "image_dynamics.cli"]


def start(folder: Path, name: str, extra: list[str]) -> tuple[subprocess.Popen, str]:
    out, err = folder / f"{name}.out", folder / f"{name}.err"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(cli() + ["serve", "--tiny-model", "0", "--threads", "1", "--bind", "tcp://127.0.0.1:0",
                                         *extra], stdout=o, stderr=e, env=env)
    end = time.monotonic() + 180
    while time.monotonic() < end:
        m = READY_RE.search(out.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise SystemExit(f"{name}: server exited {proc.returncode}: {err.read_text()[-2000:]}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"{name}: server never became ready")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_load(address: str, jobs: int, clients: int, steps: int, size: tuple[int, int]) -> tuple[float, set]:
    image = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    counts = [jobs // clients + (1 if i < jobs % clients else 0) for i in range(clients)]

    def one_client(i: int) -> list:
        with BackendClient(address) as client:
            client.hello()
            handles = [client.submit(image, seed=1000 * i + k, steps=steps, size=size) for k in range(counts[i])]
            return [h.wait(300) for h in handles]

    # warm-up: a few jobs on every model copy
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: run_single(address, image, steps, size), range(2 * clients)))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for rs in pool.map(one_client, range(clients)) for r in rs]
    wall = time.perf_counter() - t0
    assert len(results) == jobs
    replicas = {r.meta.get("ray", {}).get("pid") for r in results}
    return jobs / wall, replicas


def run_single(address: str, image: np.ndarray, steps: int, size: tuple[int, int]):
    with BackendClient(address) as client:
        return client.predict(image, seed=0, steps=steps, size=size, timeout=300)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=48)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", default="48x32", help="output WxH (default: the tiny model's 48x32)")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.lower().split("x"))
    assert len(size) == 2

    configs = [
        ("single-process server", []),
        ("Ray Serve, 1 replica", ["--ray", "--ray-replicas", "1", "--ray-object-store-mb", "200"]),
        ("Ray Serve, 2 replicas", ["--ray", "--ray-replicas", "2", "--ray-min-replicas", "2",
                                   "--ray-object-store-mb", "200"]),
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="id-bench-serve-") as tmp:
        for name, extra in configs:
            proc, address = start(Path(tmp), f"s{len(rows)}", extra)
            try:
                rate, replicas = run_load(address, args.jobs, args.clients, args.steps, size)
            finally:
                stop(proc)
            rows.append((name, rate, len(replicas - {None})))
            print(f"  {name}: {rate:.2f} jobs/s", file=sys.stderr, flush=True)

    base = rows[0][1]
    print(f"tiny model, {args.jobs} jobs of {args.steps} steps at {size[0]}x{size[1]} from {args.clients} concurrent "
          f"clients; {os.cpu_count()} CPUs; one torch thread per model copy")
    print(f"{'backend':26s} {'jobs/s':>8s} {'ms/job':>8s} {'vs single':>10s} {'replicas used':>14s}")
    for name, rate, used in rows:
        print(f"{name:26s} {rate:8.2f} {1e3 / rate:8.1f} {rate / base:9.2f}x {used if used else '-':>14}")


if __name__ == "__main__":
    main()
