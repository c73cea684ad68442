"""``python -m ian_d2.export``: export the gallery and query models of an IAN config.

Examples::

    python -m ian_d2.export --format onnx --config-file configs/Synthetic/IAN_R18_GN_step3_center.yaml \\
        --output exported/ MODEL.WEIGHTS output/synthetic/step3/model_final.pth
    python -m ian_d2.export --format torchscript onnx --config-file configs/IAN_R50.yaml \\
        --output exported_r50/ MODEL.WEIGHTS model_final.pth
    python -m ian_d2.export --format torchscript --precision auto \\
        --config-file configs/IAN_R50.yaml --output exported_auto/ MODEL.WEIGHTS model_final.pth
    python -m ian_d2.export --format onnx --precision int8 --calibration-images footage_stills/ \\
        --config-file configs/IAN_R50.yaml --output exported_int8/ MODEL.WEIGHTS model_final.pth
    python exported/runtime.py exported/ image.jpg          # runs without Detectron2
"""

import argparse
import json
import logging
import sys

__all__ = ["build_parser", "main", "run"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m ian_d2.export``."""
    p = argparse.ArgumentParser(
        prog="python -m ian_d2.export",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]),
    )
    p.add_argument(
        "--format", nargs="+", required=True, choices=("torchscript", "onnx"),
        help="one or both formats, written into the same folder",
    )  # fmt: skip
    p.add_argument(
        "--precision", choices=("fp32", "bf16", "int8", "auto"), default="fp32",
        help="bf16 (TorchScript only): backbone, RPN head and res5 in bfloat16, the rest fp32 "
        "(refused on a CPU without native bfloat16 unless --force-precision); int8 (ONNX "
        "only): backbone and res5 convolutions quantized (ONNX Runtime, QDQ), calibrated on "
        "--calibration-images; auto: fp32 or bf16, picked from this CPU's flags and a few "
        "timed passes (never int8: it needs calibration images)",
    )  # fmt: skip
    p.add_argument(
        "--force-precision", action="store_true",
        help="export bf16 even on a CPU without native bfloat16 (a warning gives its measured "
        "cost; useful when the export runs on another machine)",
    )  # fmt: skip
    p.add_argument(
        "--calibration-images", metavar="DIR_OR_LIST", default=None,
        help="int8: a folder of images (sorted, recursive) or a .txt list of image paths, "
        "like the gallery's",
    )  # fmt: skip
    p.add_argument(
        "--calibration-count", type=int, default=None, metavar="N",
        help="int8: calibrate on N of them, every k-th in order (default 32)",
    )  # fmt: skip
    p.add_argument("--config-file", required=True, metavar="FILE")
    p.add_argument("--output", required=True, metavar="DIR", help="the export folder")
    p.add_argument(
        "--no-verify", dest="verify", action="store_false",
        help="skip running the exported files against the eager model",
    )  # fmt: skip
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from ..config import get_ian_cfg
    from .exporter import export_model

    cfg = get_ian_cfg(args.config_file, args.opts)
    cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    manifest = export_model(
        cfg,
        args.output,
        args.format,
        verify=args.verify,
        precision=args.precision,
        calibration_images=args.calibration_images,
        calibration_count=args.calibration_count,
        force_precision=args.force_precision,
    )
    summary = {
        "output": args.output,
        "precision": manifest["precision"],
        "models": manifest["models"],
        "checks": manifest["checks"],
    }
    print(json.dumps(summary, indent=1))
    return manifest


def run(argv=None) -> None:
    """``main`` for the command line: bad input ends with one clear message, no traceback."""
    from .runtime import ExportedModelError

    try:
        main(argv)
    except (ValueError, ExportedModelError) as e:
        sys.exit(f"python -m ian_d2.export: error: {e}")


if __name__ == "__main__":
    run()
