"""Command line of the synthetic dataset generator.

Example::

    python -m ian_d2.data.synthetic --format cuhk_sysu --out datasets/cuhk_sysu_synth --size small
    python -m ian_d2.data.synthetic --format prw --out datasets/prw_synth --size tiny --seed 3
    python -m ian_d2.data.synthetic --format video --out datasets/video_synth --size small
    python -m ian_d2.data.synthetic --format video --site target --out datasets/target_video
    python -m ian_d2.data.synthetic --format target-site --out datasets/synthetic_target
"""

import argparse
import logging
import time
from typing import List, Optional

from .cuhk_sysu_writer import generate_cuhk_sysu
from .presets import SIZES
from .prw_writer import generate_prw
from .site_dataset import generate_target_site
from .video import generate_video

__all__ = ["build_parser", "main"]

logger = logging.getLogger("ian_d2.data.synthetic")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m ian_d2.data.synthetic``."""
    p = argparse.ArgumentParser(
        prog="python -m ian_d2.data.synthetic",
        description=(
            "Render a synthetic person-search dataset (street scenes with pedestrians whose "
            "identity is their appearance) and write it in the exact on-disk format of "
            "CUHK-SYSU or PRW, so that the real loaders read it unchanged, or (--format video) "
            "two camera videos (cam1.avi, cam2.avi, MJPG) of people walking, with per-frame "
            "person boxes in annotations.json (--site target: the second site, 4 cameras with "
            "another look and population), or (--format target-site) the target site as a "
            "person-search dataset: train/ and test/ footage with disjoint identities, sampled "
            "frames, COCO JSONs, a cross-camera protocol and a datasets.json list. "
            "Same seed -> byte-identical output."
        ),
        epilog=(
            "Presets: tiny (~30 images, ~15 identities, seconds; CUHK-SYSU galleries 5 and 10, "
            "with two zero-size boxes), small (~200 images), default (~2,500 images, "
            "~800 identities, galleries 50 and 100; 1-2 minutes). "
            "CUHK-SYSU only: ablation (1,300 images, 300 test identities = 300 queries, "
            "galleries 50-400 and the 520-image pool; the test set of make ablations). "
            "Video, at 10 fps: tiny (320x240, 3 s, 4 identities), small (640x360, 8 s, "
            "6 identities), default (640x360, 10 s, 10 identities); seconds. "
            "Target site (video --site target and target-site), 4 cameras at 5 fps: tiny "
            "(320x240, 16 s, 8 identities; seconds), small (640x360, 60 s, 24 identities), "
            "medium (640x360, 150 s, 140 identities, 300+ queries: the adaptation measurement), "
            "default (640x360, 10 min, 160 identities walking 3 times; minutes, a few GB for "
            "target-site: see docs/DATASETS.md)."
        ),
    )
    p.add_argument(
        "--format",
        required=True,
        choices=("cuhk_sysu", "prw", "video", "target-site"),
        help="output format",
    )
    p.add_argument("--out", required=True, help="output folder (the dataset root)")
    p.add_argument(
        "--size",
        default="default",
        choices=SIZES + ("ablation", "medium"),
        help="size preset (default: default; ablation: CUHK-SYSU only; medium: target site only)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument(
        "--num-images",
        type=int,
        help="number of images / frames (video: frames per camera) (preset if unset)",
    )
    p.add_argument(
        "--num-identities",
        type=int,
        help="number of labeled identities, train and test together (preset if unset)",
    )
    p.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("W", "H"),
        help="image size (preset: 400 300 for CUHK-SYSU, 480 270 for PRW; video: frame size)",
    )
    p.add_argument("--fps", type=float, help="video: frames per second (preset: 10)")
    p.add_argument(
        "--duration",
        type=float,
        help="video: seconds per camera (sets the frame count to duration x fps)",
    )
    p.add_argument(
        "--occluder",
        type=float,
        help="video: width of a pillar hiding the middle of each view, as a fraction of the "
        "frame width (default none: the output is then unchanged)",
    )
    p.add_argument(
        "--passes",
        type=int,
        help="video: times each identity walks through each of its cameras, as separate "
        "appearances (default 1: the output is then unchanged; N > 1 makes the video N times "
        "longer unless --duration or --num-images is given)",
    )
    p.add_argument(
        "--site",
        choices=("source", "target"),
        help="video: the site filmed (default source: the two street cameras, output unchanged; "
        "target: the second site, for adaptation)",
    )
    p.add_argument(
        "--cameras",
        type=int,
        help="video and target-site: number of cameras (source: 2; target: 4 to 8, default 4)",
    )
    p.add_argument(
        "--sample-fps",
        type=float,
        default=2.0,
        help="target-site: frames sampled per second of video (default: 2)",
    )
    p.add_argument(
        "--name",
        default="synthetic_target",
        help="target-site: registered name prefix in OUT/datasets.json (default: "
        "synthetic_target -> synthetic_target_train, synthetic_target_test)",
    )
    p.add_argument(
        "--gallery-sizes",
        type=int,
        nargs="+",
        metavar="N",
        help="CUHK-SYSU gallery sizes of the TestG{N}.mat files (sizes that do not fit the pool "
        "are skipped with a warning)",
    )
    p.add_argument(
        "--zero-size-boxes",
        type=int,
        help="CUHK-SYSU: number of zero-width/height boxes added to Images.mat (tiny: 2, else 0)",
    )
    p.add_argument("--workers", type=int, help="rendering processes (0 = automatic)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p


def main(argv: Optional[List[str]] = None) -> dict:
    """Run the generator; returns its summary."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = dict(
        num_images=args.num_images,
        num_identities=args.num_identities,
        image_size=tuple(args.image_size) if args.image_size else None,
        workers=args.workers,
    )
    start = time.perf_counter()
    videos = ("video", "target-site")
    if args.format not in videos and (
        args.fps is not None
        or args.duration is not None
        or args.occluder is not None
        or args.passes is not None
        or args.site is not None
        or args.cameras is not None
    ):
        logger.warning(
            "--fps / --duration / --occluder / --passes / --site / --cameras only apply to video"
        )
    if args.format in videos and args.size == "ablation":
        raise SystemExit("--size ablation is a CUHK-SYSU preset; video sizes: tiny, small, default")
    if args.size == "medium" and not (
        args.format == "target-site" or (args.format == "video" and args.site == "target")
    ):
        raise SystemExit("--size medium is a target-site preset (--format target-site)")
    if args.format in videos:
        if args.gallery_sizes or args.zero_size_boxes is not None:
            logger.warning("--gallery-sizes / --zero-size-boxes do not apply to video")
        video_args = dict(
            num_frames=args.num_images,
            num_identities=args.num_identities,
            frame_size=overrides["image_size"],
            fps=args.fps,
            duration=args.duration,
            occluder=args.occluder,
            passes=args.passes,
            workers=args.workers,
        )
    if args.format == "target-site":
        if args.site == "source":
            raise SystemExit("--format target-site films the target site (not --site source)")
        summary = generate_target_site(
            args.out,
            size=args.size,
            seed=args.seed,
            sample_fps=args.sample_fps,
            num_cameras=args.cameras,
            name=args.name,
            **video_args,
        )
    elif args.format == "video":
        summary = generate_video(
            args.out,
            size=args.size,
            seed=args.seed,
            site=args.site,
            num_cameras=args.cameras,
            **video_args,
        )
    elif args.format == "cuhk_sysu":
        overrides["gallery_sizes"] = tuple(args.gallery_sizes) if args.gallery_sizes else None
        overrides["zero_size_boxes"] = args.zero_size_boxes
        summary = generate_cuhk_sysu(args.out, size=args.size, seed=args.seed, **overrides)
    else:
        if args.gallery_sizes or args.zero_size_boxes is not None:
            logger.warning("--gallery-sizes / --zero-size-boxes only apply to cuhk_sysu")
        summary = generate_prw(args.out, size=args.size, seed=args.seed, **overrides)
    elapsed = time.perf_counter() - start
    hidden = ("train_ids", "test_ids", "out_dir", "files")
    shown = {k: v for k, v in summary.items() if k not in hidden}
    logger.info(
        "Wrote synthetic %s (%s, seed %d) to %s in %.1fs: %s",
        args.format,
        args.size,
        args.seed,
        args.out,
        elapsed,
        shown,
    )
    return summary


if __name__ == "__main__":
    main()
