"""Logging set-up shared by the driver and every Ray worker (worker_process_setup_hook)."""

from __future__ import annotations

import logging
import os


def setup() -> None:
    level = os.environ.get("TG_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logging.getLogger("tg_actors").setLevel(level)
    for noisy in ("httpx", "httpcore", "uvicorn.access", "ray.serve"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
