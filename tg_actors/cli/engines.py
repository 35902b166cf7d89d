"""`tg engines [COUNT] [--json]`: list the SyncEngines of a running system, or scale them,
through its HTTP API (the same call as `PUT /api/engines`), so it works wherever the API is
reachable. Exit codes: 0 ok, 1 refused, 2 no token, 3 no API answering."""

from __future__ import annotations

import argparse
import json
from typing import Any

import httpx

from tg_actors.settings import Settings


def base_url(settings: Settings, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def render(answer: dict[str, Any]) -> list[str]:
    lines = [f"{'engine':<14} {'state':<11} {'node':<24} {'slots':>5} {'runs':>5}  current runs"]
    for e in answer["engines"]:
        node = f"{e.get('node_ip', '?')} {str(e.get('node_id', ''))[:8]}".strip()
        runs = e.get("current_runs", [])
        shown = ", ".join(runs[:3]) + (" …" if len(runs) > 3 else "")
        lines.append(
            f"{e['name']:<14} {e.get('state', '?'):<11} {node:<24} {e.get('slots', 0):>5} "
            f"{len(runs):>5}  {shown}"
        )
    lines.append(
        f"{answer['count']} engine(s) on {answer['nodes']} node(s): capacity {answer['capacity']}"
        f" runs at once; {answer['running']} running, {answer['queue_depth']} queued"
    )
    for key, verb in (("added", "added"), ("removed", "removed")):
        if answer.get(key):
            lines.append(f"{verb}: {', '.join(answer[key])}")
    if answer.get("interrupted"):
        lines.append(
            f"{len(answer['interrupted'])} run(s) did not end within the grace period and are "
            f"retried on the other engines: {', '.join(answer['interrupted'])}"
        )
    return lines


def cmd_engines(args: argparse.Namespace) -> int:
    settings = Settings(**({"db_path": args.db_path} if args.db_path else {}))
    token = settings.known_token()
    if token is None:
        print(
            f"no API token: set TG_API_TOKEN or point --db at the data folder of `tg up` "
            f"(looked for {settings.token_path})"
        )
        return 2
    url = base_url(settings, args.url)
    headers = {"Authorization": f"Bearer {token}"}
    # a scale-down waits for the removed engines' runs (up to the grace period)
    timeout = httpx.Timeout(30.0, read=(args.grace or settings.stop_grace_seconds) + 180.0)
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=timeout) as client:
            if args.count is None:
                response = client.get("/api/engines")
            else:
                body = {"count": args.count, "grace_seconds": args.grace}
                response = client.put("/api/engines", json=body)
    except httpx.TransportError as exc:
        print(f"no turbo-giggle API at {url} ({type(exc).__name__}): is `tg up` running?")
        return 3  # not found: nothing answers there
    if response.status_code != 200:
        print(f"{response.status_code}: {_detail(response)}")
        return 1
    if getattr(args, "json", False):
        print(json.dumps(response.json(), indent=2))
    else:
        print("\n".join(render(response.json())))
    return 0


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        return response.text
    if isinstance(detail, list):  # pydantic's errors
        return "; ".join(f"{'.'.join(map(str, d['loc'][1:]))}: {d['msg']}" for d in detail)
    return str(detail)
