"""Replay or soak the simulation: `python -m tests.sim --seed N [-v]`, or `--seeds N`."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tests.sim.checks import Violation
from tests.sim.world import run_seed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", type=int, default=200, help="run seeds 0..N-1")
    parser.add_argument("--first", type=int, default=0, help="first seed of --seeds")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL if not args.verbose else logging.NOTSET)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.seeds)
    failed, steps, began = [], 0, time.monotonic()
    for seed in seeds:
        try:
            world = run_seed(seed, args.steps, verbose=args.verbose)
            steps += world.step_no
        except Violation as exc:
            failed.append(seed)
            steps += exc.world.step_no
            print(exc if args.seed is not None else str(exc).splitlines()[0], flush=True)
    print(
        f"{len(seeds)} seeds, {steps} steps, {len(failed)} failed {failed[:20]}"
        f" in {time.monotonic() - began:.0f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
