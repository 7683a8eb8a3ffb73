"""``image-dynamics serve``: the backend Blender (or any script) talks to over ZeroMQ.

    image-dynamics serve --model models/NAME                  a saved motion predictor
    image-dynamics serve --tiny-model 0                       an UNTRAINED test model (plumbing only)
    image-dynamics serve --tiny-model 0 --bind tcp://127.0.0.1:0   any free port

Prints "image-dynamics backend ready on tcp://127.0.0.1:PORT" once it answers. One model, loaded
once; jobs from all clients wait in one queue. Ctrl-C or SIGTERM cancels the jobs (clients are
told) and exits with status 0. The wire protocol is docs/protocol.md.

Past one GPU: --ray runs the model as a Ray Serve deployment, one replica per GPU of a Ray
cluster, behind the same ZeroMQ front (clients cannot tell). docs/scale-out.md has the recipe:

    image-dynamics serve --model models/NAME --ray HEAD_IP:6379      an existing cluster (ray start)
    image-dynamics serve --tiny-model 0 --ray --ray-replicas 2      Ray started on this machine

Only this machine can connect by default. Another address needs CurveZMQ keys
(image-dynamics keys generate DIR; then --curve-secret and --allowed-clients) or the loudly named
--insecure-allow-remote-without-encryption.
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..protocol.messages import DEFAULT_ADDRESS


def register(sub: argparse._SubParsersAction) -> None:
    from ..service.engine import ENGINES
    from ..service.limits import Limits
    from ..service.security import INSECURE_FLAG

    d = Limits()
    p = sub.add_parser("serve", help="run the prediction backend (ZeroMQ) for Blender and scripts",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default=DEFAULT_ADDRESS, metavar="ADDR",
                   help=f"tcp://HOST:PORT or ipc://PATH to listen on (default: {DEFAULT_ADDRESS}; port 0 = any free port)")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--model", metavar="FOLDER", help="a saved motion predictor (config.json, model.safetensors, scales.json)")
    m.add_argument("--tiny-model", type=int, metavar="SEED",
                   help="serve a tiny UNTRAINED model with random weights from SEED (tests and demos; its motion is meaningless)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--engine", default="torch", choices=ENGINES, help="inference engine (default: torch)")
    p.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--renderer-model", default=None, metavar="FOLDER",
                   help="trained splat renderer for render requests (default: models/renderer; without one, render "
                        "offers the mesh and backward warps)")
    g = p.add_argument_group("limits (reported to clients in hello)")
    g.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, metavar="N")
    g.add_argument("--max-output-pixels", type=int, default=d.max_output_pixels, metavar="N")
    g.add_argument("--max-message-mb", type=float, default=None, metavar="MB",
                   help="one request, header and arrays (default: room for the largest request the pixel and frame "
                        f"limits allow, {d.max_message_bytes // 2**20} at their defaults)")
    g.add_argument("--max-unread-mb", type=float, default=None, metavar="MB",
                   help="replies waiting for one connection that does not read them; past this its jobs are "
                        f"cancelled (default: two of the largest replies, {d.max_unread_bytes // 2**20} at the defaults)")
    g.add_argument("--max-queue", type=int, default=d.max_queue, metavar="N", help="jobs waiting, all clients together")
    g.add_argument("--max-jobs-per-client", type=int, default=d.max_jobs_per_client, metavar="N")
    g.add_argument("--max-steps", type=int, default=d.max_steps, metavar="N")
    g.add_argument("--max-render-frames", type=int, default=d.max_render_frames, metavar="N",
                   help="frames one render request may ask for")
    g.add_argument("--max-render-pixels", type=int, default=d.max_render_pixels, metavar="N",
                   help="frames x width x height of one render request (its reply is 3 bytes a pixel)")
    g.add_argument("--heartbeat-timeout", type=float, default=d.default_heartbeat_timeout_s, metavar="S",
                   help="forget clients silent this long unless they declared their own, 2 to 3600 "
                        "(default: %(default)s)")
    s = p.add_argument_group("security")
    s.add_argument("--curve-secret", metavar="FILE", help="server .key_secret: encrypt with CurveZMQ (any address)")
    s.add_argument("--allowed-clients", metavar="DIR", help="folder of the public .key files of the clients allowed in")
    s.add_argument(INSECURE_FLAG, dest="insecure_remote", action="store_true",
                   help="allow a non-loopback address without encryption or authentication (NOT recommended)")
    r = p.add_argument_group("scale-out on Ray Serve (docs/scale-out.md)")
    r.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the model as Ray Serve replicas: on the cluster at ADDRESS (HOST:PORT of `ray start "
                        "--head`, or 'auto'), or on a Ray instance started here when ADDRESS is left out")
    r.add_argument("--ray-replicas", type=int, default=None, metavar="N",
                   help="most replicas (default: one per GPU of the cluster; 1 on CPU)")
    r.add_argument("--ray-min-replicas", type=int, default=None, metavar="N",
                   help="replicas kept up when idle; more are added while jobs queue (default: 1)")
    r.add_argument("--ray-cpus-per-replica", type=float, default=1.0, metavar="N", help="CPUs Ray reserves per replica")
    r.add_argument("--ray-object-store-mb", type=float, default=None, metavar="MB",
                   help="object store size of a Ray instance started here (default: Ray's)")
    r.add_argument("--ray-app", default=None, metavar="NAME",
                   help="Ray Serve application name (default: image-dynamics; one per model on a shared cluster)")
    r.add_argument("--ray-timeout", type=float, default=300.0, metavar="S",
                   help="give up on a job attempt after S seconds without word from its replica (default: 300)")
    p.add_argument("--verbose", action="store_true", help="log every job")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..service.security import CurveSetup, check_bind_policy, parse_bind, warn_insecure
    from ..service.server import Server

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="image-dynamics serve: %(message)s")
    logging.getLogger("image_dynamics.service").setLevel(logging.INFO if args.verbose else logging.WARNING)
    limits = _limits(args)

    bind = parse_bind(args.bind)
    mode = check_bind_policy(bind, curve_secret=args.curve_secret, allowed_clients=args.allowed_clients,
                             insecure=args.insecure_remote)
    curve = CurveSetup(args.curve_secret, args.allowed_clients) if mode == "curve" else None
    if mode == "insecure-remote":
        warn_insecure(bind)

    server = Server(limits, curve=curve)
    try:
        endpoint = server.bind(bind)  # before loading the model: a busy port fails fast
        if getattr(args, "ray", None) is not None:
            engine = _ray_engine(args)
        else:
            from ..service.engine import create_engine

            engine = create_engine(model=args.model, tiny_model=args.tiny_model, device=args.device,
                                   engine=args.engine, threads=args.threads)
        from ..service.rendering import FrameService

        frames = FrameService(args.renderer_model, device=str(engine.info().get("device", "cpu")))
        if args.renderer_model and "splat" not in frames.renderers:
            raise UserError(f"--renderer-model {args.renderer_model} holds no trained renderer (*.safetensors)",
                            "pass the folder the renderer training wrote, or leave the flag out")
    except BaseException:
        server.router.close(linger=0)
        if curve is not None:
            curve.stop()
        raise
    info = engine.info()
    label = " (UNTRAINED TEST MODEL)" if info.get("untrained_test_model") else ""
    print(f"image-dynamics serve: model {info.get('name')}{label} on {info.get('device')} ({info.get('engine')})",
          file=sys.stderr, flush=True)
    if "ray" in info:
        r = info["ray"]
        print(f"image-dynamics serve: Ray Serve app {r['app']!r} on {r['address']}, {r['min_replicas']} to "
              f"{r['max_replicas']} replica(s) of {r['replica_resources']}", file=sys.stderr, flush=True)
    if curve is not None:
        print(f"image-dynamics serve: CurveZMQ on; server public key {curve.public_key.decode()}", file=sys.stderr,
              flush=True)
    print(f"image-dynamics serve: render with {', '.join(frames.renderers)} (default {frames.default_renderer}) "
          f"on {frames.device}", file=sys.stderr, flush=True)
    print(f"image-dynamics backend ready on {endpoint}", flush=True)
    server.serve(engine, frames=frames)
    print("image-dynamics serve: stopped", file=sys.stderr, flush=True)
    return 0


# Limits field -> the flag that sets it, to name the flag in an error
_LIMIT_FLAGS = {
    "max_image_pixels": "--max-image-pixels", "max_output_pixels": "--max-output-pixels",
    "max_message_bytes": "--max-message-mb", "max_unread_bytes": "--max-unread-mb", "max_queue": "--max-queue",
    "max_jobs_per_client": "--max-jobs-per-client", "max_steps": "--max-steps",
    "max_render_frames": "--max-render-frames", "max_render_pixels": "--max-render-pixels",
    "default_heartbeat_timeout_s": "--heartbeat-timeout",
}


def _limits(args: argparse.Namespace):
    """The ``Limits`` of the flags; a bad value is a ``UserError`` naming its flag (exit status 2)."""
    import math

    from ..errors import UserError
    from ..service.limits import MIB, LimitError, Limits, largest_request_bytes, unread_bytes_for

    def mebibytes(flag: str, value: float | None, default: int) -> int:
        if value is None:
            return default
        if not math.isfinite(value) or value <= 0:  # int(inf) raises; NaN passes every comparison
            raise UserError(f"{flag} must be a positive number of MiB, got {value}", f"pass e.g. {flag} 512")
        return int(round(value * MIB))

    # the byte budgets follow the pixel and frame limits unless set (clamped here: Limits names a bad one)
    request = largest_request_bytes(max(1, args.max_image_pixels), max(1, args.max_output_pixels),
                                    max(1, args.max_render_frames))
    try:
        limits = Limits(
            max_image_pixels=args.max_image_pixels,
            max_output_pixels=args.max_output_pixels,
            max_message_bytes=mebibytes("--max-message-mb", args.max_message_mb, request),
            max_unread_bytes=mebibytes("--max-unread-mb", args.max_unread_mb,
                                       unread_bytes_for(max(1, args.max_output_pixels), max(1, args.max_render_pixels))),
            max_queue=args.max_queue,
            max_jobs_per_client=args.max_jobs_per_client,
            max_steps=args.max_steps,
            max_render_frames=args.max_render_frames,
            max_render_pixels=args.max_render_pixels,
            default_heartbeat_timeout_s=args.heartbeat_timeout,
        )
    except LimitError as exc:
        flag = _LIMIT_FLAGS.get(exc.name)
        if flag is None:  # pragma: no cover - every field without a flag keeps its valid default
            raise UserError(str(exc), "fix the limit flags") from None
        what = f"{flag} ({exc.name})" if flag.endswith("-mb") else flag  # the value is in bytes there
        raise UserError(f"{what} {exc.rule}, got {exc.value}", f"fix {flag}; image-dynamics serve --help lists "
                        "the limit flags") from None
    if limits.max_message_bytes < request:
        logging.getLogger("image_dynamics.service").warning(
            "--max-message-mb %g is under the %d MiB the largest request the other limits allow needs: such "
            "requests get too_large", args.max_message_mb, request // MIB)
    return limits


def _ray_engine(args: argparse.Namespace):
    """``--ray [ADDRESS]``: the model on Ray Serve replicas (service/ray_engine.py)."""
    from ..errors import UserError
    from ..service.engine import ENGINES
    from ..service.ray_engine import DEFAULT_APP_NAME, RayMotionEngine

    if args.engine not in ENGINES:  # pragma: no cover - argparse checks it
        raise UserError(f"unknown engine {args.engine!r}", f"choose one of: {', '.join(ENGINES)}")
    if args.model is None and args.tiny_model is None:
        from ..model.locate import resolve_model_dir

        args.model = str(resolve_model_dir(None))  # Ray nodes need the same path: pass --model there
    for flag, value in (("--ray-replicas", args.ray_replicas), ("--ray-min-replicas", args.ray_min_replicas)):
        if value is not None and value < 1:
            raise UserError(f"{flag} must be at least 1, got {value}", f"pass {flag} N with N >= 1")
    if args.ray_cpus_per_replica <= 0 or args.ray_timeout <= 0:
        raise UserError("--ray-cpus-per-replica and --ray-timeout must be positive", "pass positive numbers")
    model = None
    if args.model is not None:
        from pathlib import Path

        model = str(Path(args.model).resolve())
    engine_kwargs = dict(model=model, tiny_model=args.tiny_model, device=args.device, engine=args.engine,
                         threads=args.threads)
    return RayMotionEngine(engine_kwargs, address=args.ray or None, max_replicas=args.ray_replicas,
                           min_replicas=args.ray_min_replicas, cpus_per_replica=args.ray_cpus_per_replica,
                           object_store_mb=args.ray_object_store_mb, app_name=args.ray_app or DEFAULT_APP_NAME,
                           stall_timeout_s=args.ray_timeout, verbose=args.verbose)
