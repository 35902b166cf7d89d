from __future__ import annotations

import pytest

from tg_actors.errors import MissingSecret
from tg_actors.redaction import mask_value, resolve_value, sanitize_url, scrub


def test_resolve_nested() -> None:
    env = {"A": "alpha", "B": "beta"}
    assert resolve_value({"x": ["${A}", "k=${B}"], "n": 3}, env) == {
        "x": ["alpha", "k=beta"],
        "n": 3,
    }


def test_resolve_missing_names_the_variable() -> None:
    with pytest.raises(MissingSecret, match="'NOPE'"):
        resolve_value("${NOPE}", {})


def test_mask() -> None:
    assert mask_value({"a": "${X}", "b": "plain", "c": [1, "${Y}z"]}) == {
        "a": "***",
        "b": "plain",
        "c": [1, "***"],
    }


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://u:p@h.example/a?x=1", "https://***@h.example/a?x=1"),
        ("http://h/a?api_key=abc&page=2", "http://h/a?api_key=***&page=2"),
        ("http://h/a?access_token=abc", "http://h/a?access_token=***"),
        ("http://h/a?page=2", "http://h/a?page=2"),
    ],
)
def test_sanitize_url(url: str, expected: str) -> None:
    assert sanitize_url(url) == expected


def test_scrub_known_secrets() -> None:
    assert scrub("bad token s3cr3t-value here", ("s3cr3t-value",)) == "bad token *** here"


def test_errors_survive_pickle() -> None:
    import pickle

    from tg_actors.errors import BrokerFull, IllegalTransition, JobValidationError

    for error in (
        BrokerFull("t", "g", 1.0),
        IllegalTransition("r1", "queued", "succeeded"),
        JobValidationError("f.yaml", [("name", "bad")]),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
        assert copy.__dict__ == error.__dict__


def test_restore_masked_puts_back_the_stored_secret_references() -> None:
    from tg_actors.redaction import restore_masked

    stored = {
        "source": {
            "auth": {"type": "bearer", "token": "${SHOP_TOKEN}"},
            "headers": {"X-Key": "key ${API_KEY}"},
            "params": {"page": "1"},
        },
        "list": ["${A}", "plain"],
    }
    sent = {
        "source": {
            "auth": {"type": "bearer", "token": "***"},
            "headers": {"X-Key": "***", "X-New": "***"},
            "params": {"page": "***"},
        },
        "list": ["***", "***"],
    }
    restored, unmatched = restore_masked(sent, stored)
    assert restored["source"]["auth"]["token"] == "${SHOP_TOKEN}"
    assert restored["source"]["headers"]["X-Key"] == "key ${API_KEY}"
    assert restored["list"][0] == "${A}"
    # `***` where nothing secret was stored is refused by the caller, by field path
    assert sorted(unmatched) == ["list.1", "source.headers.X-New", "source.params.page"]
    assert restore_masked({"a": "***"}, None) == ({"a": "***"}, ["a"])
    assert restore_masked({"a": "x"}, None) == ({"a": "x"}, [])
