"""``image-dynamics serve``: the backend Blender (or any script) talks to over ZeroMQ.

    image-dynamics serve --model models/NAME                  a saved motion predictor
    image-dynamics serve --tiny-model 0                       an UNTRAINED test model (plumbing only)
    image-dynamics serve --tiny-model 0 --bind tcp://127.0.0.1:0   any free port

Prints "image-dynamics backend ready on tcp://127.0.0.1:PORT" once it answers. One model, loaded
once; jobs from all clients wait in one queue. Ctrl-C or SIGTERM cancels the jobs (clients are
told) and exits with status 0. The wire protocol is docs/protocol.md.

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
    g = p.add_argument_group("limits (reported to clients in hello)")
    g.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, metavar="N")
    g.add_argument("--max-output-pixels", type=int, default=d.max_output_pixels, metavar="N")
    g.add_argument("--max-message-mb", type=float, default=d.max_message_bytes / 2**20, metavar="MB")
    g.add_argument("--max-queue", type=int, default=d.max_queue, metavar="N", help="jobs waiting, all clients together")
    g.add_argument("--max-jobs-per-client", type=int, default=d.max_jobs_per_client, metavar="N")
    g.add_argument("--max-steps", type=int, default=d.max_steps, metavar="N")
    g.add_argument("--heartbeat-timeout", type=float, default=d.default_heartbeat_timeout_s, metavar="S",
                   help="forget clients silent this long unless they declared their own (default: %(default)s)")
    s = p.add_argument_group("security")
    s.add_argument("--curve-secret", metavar="FILE", help="server .key_secret: encrypt with CurveZMQ (any address)")
    s.add_argument("--allowed-clients", metavar="DIR", help="folder of the public .key files of the clients allowed in")
    s.add_argument(INSECURE_FLAG, dest="insecure_remote", action="store_true",
                   help="allow a non-loopback address without encryption or authentication (NOT recommended)")
    p.add_argument("--verbose", action="store_true", help="log every job")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..service.limits import Limits
    from ..service.security import CurveSetup, check_bind_policy, parse_bind, warn_insecure
    from ..service.server import Server

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="image-dynamics serve: %(message)s")
    logging.getLogger("image_dynamics.service").setLevel(logging.INFO if args.verbose else logging.WARNING)
    try:
        limits = Limits(
            max_image_pixels=args.max_image_pixels,
            max_output_pixels=args.max_output_pixels,
            max_message_bytes=int(args.max_message_mb * 2**20),
            max_queue=args.max_queue,
            max_jobs_per_client=args.max_jobs_per_client,
            max_steps=args.max_steps,
            default_heartbeat_timeout_s=args.heartbeat_timeout,
        )
    except ValueError as exc:
        raise UserError(str(exc), "limits must be positive numbers") from None

    bind = parse_bind(args.bind)
    mode = check_bind_policy(bind, curve_secret=args.curve_secret, allowed_clients=args.allowed_clients,
                             insecure=args.insecure_remote)
    curve = CurveSetup(args.curve_secret, args.allowed_clients) if mode == "curve" else None
    if mode == "insecure-remote":
        warn_insecure(bind)

    server = Server(limits, curve=curve)
    try:
        endpoint = server.bind(bind)  # before loading the model: a busy port fails fast
        from ..service.engine import create_engine

        engine = create_engine(model=args.model, tiny_model=args.tiny_model, device=args.device, engine=args.engine,
                               threads=args.threads)
    except BaseException:
        server.router.close(linger=0)
        if curve is not None:
            curve.stop()
        raise
    info = engine.info()
    label = " (UNTRAINED TEST MODEL)" if info.get("untrained_test_model") else ""
    print(f"image-dynamics serve: model {info.get('name')}{label} on {info.get('device')} ({info.get('engine')})",
          file=sys.stderr, flush=True)
    if curve is not None:
        print(f"image-dynamics serve: CurveZMQ on; server public key {curve.public_key.decode()}", file=sys.stderr,
              flush=True)
    print(f"image-dynamics backend ready on {endpoint}", flush=True)
    server.serve(engine)
    print("image-dynamics serve: stopped", file=sys.stderr, flush=True)
    return 0
