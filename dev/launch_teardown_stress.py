"""Launch a tiny 2-process gloo job many times and count the processes that die at exit.

Reproduces the SIGABRT of issue 27 ("terminate called without an active exception" when a
spawned worker exits with its gloo process group alive) and shows that
:func:`ian_d2.utils.comm.launch`, which destroys the process groups when the function returns,
does not have it::

    python dev/launch_teardown_stress.py --runs 30 --launch detectron2   # plain launch
    python dev/launch_teardown_stress.py --runs 60 --launch ian_d2       # with the teardown

Prints JSON: runs, failures and their messages. Run it alone (a busy machine changes the rate).
"""

import argparse
import json
import logging
import sys
from datetime import timedelta

import torch
import torch.distributed as dist


def _work() -> None:
    """A few all-reduces, as a training step's collectives would."""
    t = torch.ones(1000)
    for _ in range(20):
        dist.all_reduce(t)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--launch", choices=("detectron2", "ian_d2"), default="ian_d2")
    args = p.parse_args(argv)
    if args.launch == "ian_d2":
        from ian_d2.utils.comm import launch
    else:
        from detectron2.engine import launch
    failures = []
    for i in range(args.runs):
        try:
            launch(_work, 2, dist_url="auto", timeout=timedelta(seconds=60))
        except Exception as e:  # a worker that died: torch's ProcessExitedException
            failures.append({"run": i, "error": f"{type(e).__name__}: {e}"[:300]})
    out = {"launch": args.launch, "runs": args.runs, "failures": len(failures), "failed": failures}
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(0 if main()["failures"] == 0 else 1)
