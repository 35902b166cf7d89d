"""Replay or soak the simulation: `python -m tests.sim --seed N [-v]`, or `--seeds N`."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from tests.sim.checks import Violation
from tests.sim.world import explore_seed, run_seed


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim")
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", type=int, default=200, help="run seeds FIRST..FIRST+N-1")
    parser.add_argument("--first", type=int, default=0, help="first seed of --seeds")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every step")
    args = parser.parse_args()
    if args.seed is not None:
        logging.disable(logging.CRITICAL if not args.verbose else logging.NOTSET)
        try:
            world = run_seed(args.seed, args.steps, verbose=args.verbose)
        except Violation as exc:
            print(exc)
            return 1
        print(f"seed {args.seed}: {world.step_no} steps, every invariant held")
        return 0
    seeds = range(args.first, args.first + args.seeds)
    failed, steps, began = [], 0, time.monotonic()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, args.jobs), mp_context=context) as pool:
        results = pool.map(explore_seed, seeds, [args.steps] * len(seeds), chunksize=4)
        for seed, (taken, report) in zip(seeds, results, strict=True):
            steps += taken
            if report:
                failed.append(seed)
                print(report.splitlines()[0], flush=True)
    print(
        f"{len(seeds)} seeds, {steps} steps, {len(failed)} failed {failed[:20]}"
        f" in {time.monotonic() - began:.0f}s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
