"""`source.rules`: what a response means, first match wins (Airbyte's HttpResponseFilter,
dlt's response_actions). A rule matches on the status (one or a list) and, optionally, a
text in the body and a header (`Name` present, or `Name: text` within its value); its action
is `retry`, `skip`, `stop` or `fail`. No rule matching leaves the default handling: 2xx is
a page, 408/429/5xx are retried, other errors fail the attempt. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tg_actors.jobs import Rule


def matching(
    rules: Sequence[Rule], status: int, headers: Mapping[str, str], body: bytes
) -> Rule | None:
    """The first rule that matches the response, or None."""
    for rule in rules:
        if status not in rule.codes:
            continue
        if rule.body_contains is not None and rule.body_contains.encode() not in body:
            continue
        if rule.header is not None and not _has_header(headers, rule.header):
            continue
        return rule
    return None


def _has_header(headers: Mapping[str, str], wanted: str) -> bool:
    name, _, text = wanted.partition(":")
    lowered = {k.lower(): v for k, v in headers.items()}
    value = lowered.get(name.strip().lower())
    if value is None:
        return False
    return text.strip() in value if text.strip() else True
