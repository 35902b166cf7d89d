"""Broker benchmark: deliveries/s and publish-to-receive latency on a local Ray.

    .venv/bin/python bench/broker_bench.py [--messages 10000] [--batch 100] [--groups 4]
        [--workers 2] [--quick]

Fan-out: every message to each of --groups consumer groups (one consumer actor each) through
the broker actor's long-poll. Competition: --workers consumers share one group backed by a
`ray.util.queue.Queue` (the engines' work queue) and split the messages between them.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import benchkit  # first: it keeps the local Ray on 127.0.0.1
import ray

from tg_actors.broker.actor import Broker


@ray.remote(num_cpus=0)
class FanOutConsumer:
    def __init__(self, broker: object, group: str) -> None:
        self.broker, self.group = broker, group

    async def subscribe(self) -> None:
        await self.broker.subscribe.remote("bench", self.group)  # type: ignore[attr-defined]

    async def drain(self, expected: int) -> list[float]:
        lat: list[float] = []
        while len(lat) < expected:
            batch = await self.broker.consume.remote("bench", self.group, 1000, 1.0)  # type: ignore[attr-defined]
            now = time.time()
            lat.extend(now - sent for sent in batch)
        return lat


@ray.remote(num_cpus=0)
class QueueConsumer:
    async def ready(self) -> bool:
        return True

    async def drain(self, queue: object, stop_after: float) -> list[float]:
        lat: list[float] = []
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < stop_after:
            size = await queue.actor.qsize.remote()  # type: ignore[attr-defined]
            if not size:
                await asyncio.sleep(0.001)
                continue
            try:  # get_nowait_batch(n) wants n items present: take a share of what is there
                items = await queue.actor.get_nowait_batch.remote(max(1, min(size // 2, 100)))  # type: ignore[attr-defined]
            except Exception:  # another worker took them first
                continue
            idle_since = time.monotonic()
            now = time.time()
            lat.extend(now - sent for sent in items)
        return lat


def latency(values: list[float]) -> str:
    p50, p99 = (benchkit.pct(values, q) * 1000 for q in (50, 99))
    return f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    args = benchkit.parse_args(parser, messages=2000, groups=2)
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR")
    queue_options = {"num_cpus": 0, "max_restarts": -1}
    broker = (
        ray.remote(Broker)
        .options(num_cpus=0)
        .remote(maxsize=args.messages, queue_options=queue_options)
    )

    consumers = [FanOutConsumer.remote(broker, f"g{i}") for i in range(args.groups)]
    ray.get([c.subscribe.remote() for c in consumers])
    pending = [c.drain.remote(args.messages) for c in consumers]
    began = time.perf_counter()
    for start in range(0, args.messages, args.batch):
        n = min(args.batch, args.messages - start)
        ray.get(broker.publish.remote("bench", [time.time()] * n))
    lat = [x for part in ray.get(pending) for x in part]
    elapsed = time.perf_counter() - began
    print(
        f"fan-out   : {args.messages} msgs x {args.groups} groups, batches of {args.batch}: "
        f"{len(lat) / elapsed:,.0f} deliveries/s, {latency(lat)}"
    )

    queue = ray.get(broker.subscribe.remote("work", "engines", shared=True))
    workers = [QueueConsumer.remote() for _ in range(args.workers)]
    ray.get([w.ready.remote() for w in workers])  # processes up before the clock starts
    pending = [w.drain.remote(queue, 2.0) for w in workers]
    time.sleep(1.0)  # let the workers start polling
    began = time.perf_counter()
    for start in range(0, args.messages, args.batch):
        n = min(args.batch, args.messages - start)
        ray.get(broker.publish.remote("work", [time.time()] * n))
    parts = ray.get(pending)
    elapsed = time.perf_counter() - began - 2.0  # minus the idle wait that ends each drain
    lat = [x for part in parts for x in part]
    split = ", ".join(str(len(p)) for p in parts)
    print(
        f"competing : {args.messages} msgs to {args.workers} workers (split {split}): "
        f"{len(lat) / elapsed:,.0f} deliveries/s, {latency(lat)}"
    )
    ray.shutdown()


if __name__ == "__main__":
    main()
