"""``image-dynamics extract``: motion from real video, as a spectral volume or as training shards.

One video:  image-dynamics extract clip.mp4 --out clip.npz [--start-frame N] [--size 256x160]
    Optical flow from the start frame to each of the next 149 frames (long range, not chained),
    then the temporal FFT (K = 16 terms). Writes one canonical spectral-volume file whose image is
    the start frame. The paper's filters apply by default: a clip with camera motion or with no
    motion is rejected with exit code 3 and nothing is written (--no-filter keeps it).

A folder:   image-dynamics extract videos/ --out shards/ [--size 256x160] [--stride 10]
    Every video under the folder (recursive), a window every 10th frame, filtered per window,
    written as shards plus manifest.json (see extract/shards.py for the format). A video that
    cannot be read is reported and skipped.

Filter thresholds are in pixels at the paper's 256x160 and scale with the output size (at 512x320
the 1 px limits become 2 px).
"""

from __future__ import annotations

import argparse
import os
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from ..extract.flow import DEFAULT_METHOD, METHODS

    p = sub.add_parser("extract", help="extract a spectral volume (or training shards) from real video",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", metavar="VIDEO", help="a video file, or a folder of videos (batch mode)")
    p.add_argument("--out", required=True, help="output .npz (one video) or output folder (batch mode)")
    p.add_argument("--start-frame", type=int, default=0, metavar="N",
                   help="first frame of the 5 s window (one video only; default 0)")
    p.add_argument("--size", default=None, metavar="WxH",
                   help="centre-crop to this aspect and resize (default: the video's size; 256x160 in batch mode)")
    p.add_argument("--method", default=DEFAULT_METHOD, metavar="NAME",
                   help=f"optical flow method: {', '.join(METHODS)} (default: {DEFAULT_METHOD})")
    p.add_argument("--no-filter", action="store_true", help="keep clips with camera motion or no motion")
    p.add_argument("--min-motion", type=float, default=None, metavar="PX",
                   help="'no motion' below this mean motion (px at 256x160; default 1, the paper's)")
    p.add_argument("--camera-motion", type=float, default=None, metavar="PX",
                   help="a pixel 'moves' above this mean motion (px at 256x160; default 1)")
    p.add_argument("--camera-fraction", type=float, default=None, metavar="F",
                   help="'camera motion' when at least this fraction of pixels moves (default 0.95)")
    p.add_argument("--stride", type=int, default=None, metavar="N",
                   help="batch mode: a window every N frames at 30 fps (default 10, the paper's)")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="batch mode: pairs per shard file (default 32)")
    p.add_argument("--no-gate", action="store_true",
                   help="keep raw flow in flat, still regions (switches off the zero-motion gate)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def _settings(args: argparse.Namespace, width: int, height: int):
    from ..errors import UserError
    from ..extract.filters import FilterSettings, scale_thresholds

    base = FilterSettings()
    camera_px = base.camera_px if args.camera_motion is None else args.camera_motion
    fraction = base.camera_fraction if args.camera_fraction is None else args.camera_fraction
    min_px = base.min_motion_px if args.min_motion is None else args.min_motion
    if camera_px < 0 or min_px < 0 or not 0 < fraction <= 1:
        raise UserError("filter thresholds must be non-negative and --camera-fraction in (0, 1]")
    return scale_thresholds(FilterSettings(camera_px, fraction, min_px), width, height)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..extract.flow import METHODS
    from ..extract.video import parse_size

    size = parse_size(args.size)
    if args.method not in METHODS:
        raise UserError(f"unknown flow method {args.method!r}", "choose one of: " + ", ".join(METHODS))
    if not os.path.exists(args.video):
        raise UserError(f"no such video file or folder: {args.video}", "check the path")
    if os.path.isdir(args.video):
        return _run_batch(args, size)
    return _run_single(args, size)


def _run_single(args: argparse.Namespace, size) -> int:
    from ..errors import RejectedClip, UserError
    from ..extract.extractor import extract_volume
    from ..extract.filters import check_clip, motion_stats
    from ..motion.volume_file import save_volume

    if args.stride is not None or args.shard_size is not None:
        raise UserError("--stride and --shard-size are for batch mode (a folder of videos)")
    if not args.out.endswith(".npz"):
        raise UserError(f"--out must be a .npz file for one video, got {args.out!r}",
                        "give a folder as VIDEO for batch mode")
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out} is a folder; give a .npz file name")
    volume = extract_volume(args.video, start_frame=args.start_frame, size=size, method=args.method,
                            progress=not args.no_progress, gate=not args.no_gate)
    settings = _settings(args, volume.width, volume.height)
    stats = motion_stats(volume.S, camera_px=settings.camera_px)
    volume.meta["motion_stats"] = stats.as_dict()
    if not args.no_filter:
        try:
            check_clip(volume.S, settings)
        except RejectedClip as exc:
            exc.message = f"{args.video} rejected, {exc.message} (nothing written)"
            raise
    save_volume(args.out, volume)
    print(f"wrote {args.out}: {volume.width}x{volume.height}, {volume.num_freqs} frequencies, "
          f"method {args.method}; {stats.summary(settings.camera_px)}")
    return 0


def _run_batch(args: argparse.Namespace, size) -> int:
    from ..errors import UserError
    from ..extract.shards import DEFAULT_SHARD_SIZE, DEFAULT_SIZE, DEFAULT_STRIDE, extract_folder

    if args.start_frame != 0:
        raise UserError("--start-frame is for one video; batch mode takes a window every --stride frames")
    if args.out.endswith(".npz") or (os.path.exists(args.out) and not os.path.isdir(args.out)):
        raise UserError(f"in batch mode --out is a folder for the shards, got {args.out!r}")
    size = size or DEFAULT_SIZE
    stride = DEFAULT_STRIDE if args.stride is None else args.stride
    shard_size = DEFAULT_SHARD_SIZE if args.shard_size is None else args.shard_size
    if stride < 1 or shard_size < 1:
        raise UserError("--stride and --shard-size must be at least 1")
    settings = None if args.no_filter else _settings(args, *size)
    result = extract_folder(args.video, args.out, size=size, method=args.method, stride=stride,
                            shard_size=shard_size, settings=settings, progress=not args.no_progress,
                            gate=not args.no_gate)
    for failed in result.failed_videos:
        print(f"skipped {failed['video']}: {failed['error']}", file=sys.stderr)
    total = result.accepted + result.rejected
    motion = (f"accepted windows: mean motion {result.mean_motion_px:.2f} px, "
              f"{100 * result.moving_fraction:.1f}% of pixels moving" if result.accepted
              else "no window accepted (reasons in manifest.json)")
    print(f"wrote {len(result.shards)} shard(s) to {args.out}: {result.accepted} of {total} windows accepted, "
          f"{result.rejected} rejected, {len(result.failed_videos)} video(s) skipped; {motion}; "
          f"{result.bytes_written / 1e6:.1f} MB, {result.seconds:.1f} s (see manifest.json)")
    return 0
