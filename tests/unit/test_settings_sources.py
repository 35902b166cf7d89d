"""Issue 19 #6: settings from a `.env` file, `${NAME}` values from TG_SECRETS_DIR files, the API
token as a SecretStr that never prints, TG_RUN_HISTORY_DAYS over TG_RUN_RETENTION."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from tg_actors.errors import MissingSecret
from tg_actors.jobs import HttpSource
from tg_actors.redaction import SecretFiles, SecretNotAllowed, resolve_value, secret_environ
from tg_actors.settings import Settings
from tg_actors.sources.http import HttpSourceClient

TOKEN = "a-very-secret-token-0123456789"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory of its own (`.env` is read from it), no TG_* set."""
    monkeypatch.chdir(tmp_path)
    for name in ("TG_PORT", "TG_API_TOKEN", "TG_SECRETS_DIR", "TG_RUN_RETENTION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TG_RUN_HISTORY_DAYS", raising=False)
    return tmp_path


def test_a_dot_env_file_sets_settings_and_the_environment_wins(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / ".env").write_text(
        f"TG_PORT=8123\nTG_API_TOKEN={TOKEN}\nTG_LOG_FORMAT=json\nOTHER=ignored\n"
    )
    s = Settings()
    assert (s.port, s.known_token(), s.log_format) == (8123, TOKEN, "json")
    monkeypatch.setenv("TG_PORT", "8124")
    assert Settings().port == 8124  # the environment over the file
    assert Settings(port=8125).port == 8125  # a flag over both


def test_without_a_dot_env_file_the_defaults(workdir: Path) -> None:
    s = Settings()
    assert (s.port, s.api_token, s.log_format, s.secrets_dir) == (8000, None, "text", None)


def test_the_api_token_never_prints(workdir: Path) -> None:
    s = Settings(api_token=TOKEN)
    assert isinstance(s.api_token, SecretStr)
    assert TOKEN not in repr(s) and TOKEN not in str(s)
    assert TOKEN not in str(s.model_dump()) and TOKEN not in str(s.model_dump(mode="json"))
    assert "api_token" not in s.shareable()  # what actors and the Serve app are given
    assert Settings(**s.shareable()).api_token is None
    assert s.known_token() == TOKEN  # the one way to the value
    # a Settings copied past validation holds a str (tests/kit/ray.py does): still read
    copied = Settings().model_copy(update={"api_token": TOKEN})
    assert copied.known_token() == TOKEN
    short = "short-secret-x"
    with pytest.raises(ValidationError) as caught:
        Settings(api_token=short)
    assert short not in str(caught.value) and "at least 16 characters" in str(caught.value)
    assert short not in repr(caught.value)
    # the CLI prints each error's msg (cli/main.py): the length, never the value
    assert all(short not in e["msg"] for e in caught.value.errors())


def write_secrets(folder: Path) -> Path:
    folder.mkdir()
    (folder / "API_TOKEN").write_text("from-the-file\n")  # the newline a mount often has
    (folder / "DB_PASSWORD").write_text("pa55\r\n")
    (folder / "RAW_KEY").write_text("no newline")
    (folder / "MULTI_SECRET").write_text("line1\nline2\n\n")  # only one newline goes
    (folder / "..data").write_text("not a secret name")
    return folder


def test_secret_files_strip_one_trailing_newline(tmp_path: Path) -> None:
    files = SecretFiles(write_secrets(tmp_path / "secrets"))
    assert dict(files) == {
        "API_TOKEN": "from-the-file",
        "DB_PASSWORD": "pa55",
        "MULTI_SECRET": "line1\nline2\n",
        "RAW_KEY": "no newline",
    }
    assert "..data" not in files and "../etc/passwd" not in files and "NOPE" not in files


def test_secrets_dir_fills_names_the_environment_lacks(tmp_path: Path) -> None:
    folder = write_secrets(tmp_path / "secrets")
    env = secret_environ({"TG_SECRETS_DIR": str(folder), "API_TOKEN": "from-the-env"})
    job = {"auth": "${API_TOKEN}", "key": "${RAW_KEY}", "pw": "${DB_PASSWORD}"}
    # the environment wins over the file of the same name
    assert resolve_value(job, env) == {"auth": "from-the-env", "key": "no newline", "pw": "pa55"}
    with pytest.raises(MissingSecret):
        resolve_value("${MISSING_TOKEN}", env)
    plain = {"API_TOKEN": "x"}
    assert secret_environ(plain) is plain  # no TG_SECRETS_DIR: the environment alone


def _bearer_job() -> HttpSource:
    return HttpSource.model_validate(
        {"url": "http://api.test/orders", "auth": {"type": "bearer", "token": "${API_TOKEN}"}}
    )


async def test_a_run_reads_the_secret_file_within_the_allow_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = write_secrets(tmp_path / "secrets")
    monkeypatch.setenv("TG_SECRETS_DIR", str(folder))
    monkeypatch.delenv("API_TOKEN", raising=False)
    monkeypatch.setenv("TG_SECRET_ENV", "*_TOKEN")
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization", ""))
        return httpx.Response(200, json={"data": [{"id": 1}]})

    client = HttpSourceClient(_bearer_job(), transport=httpx.MockTransport(handler))
    pages = [page async for page in client.pages()]
    assert seen == ["Bearer from-the-file"] and len(pages) == 1
    # a name outside TG_SECRET_ENV is refused, file or not
    monkeypatch.setenv("TG_SECRET_ENV", "*_PASSWORD")
    refused = HttpSourceClient(_bearer_job(), transport=httpx.MockTransport(handler))
    with pytest.raises(SecretNotAllowed):
        await anext(refused.pages())


def test_the_engines_get_the_secrets_dir_and_log_format(tmp_path: Path, workdir: Path) -> None:
    env = Settings(secrets_dir=tmp_path, log_format="json").engine_env()
    assert (env["TG_SECRETS_DIR"], env["TG_LOG_FORMAT"]) == (str(tmp_path), "json")
    assert "TG_SECRETS_DIR" not in Settings().engine_env()


def test_run_history_days_maps_onto_the_run_retention_and_wins(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings(run_history_days=7).run_retention == 7 * 86400.0
    assert Settings(run_history_days=0).run_retention is None  # 0 keeps forever
    monkeypatch.setenv("TG_RUN_RETENTION", "5d")
    assert Settings().run_retention == 5 * 86400.0
    monkeypatch.setenv("TG_RUN_HISTORY_DAYS", "14")
    s = Settings()  # both set: TG_RUN_HISTORY_DAYS wins
    assert s.run_retention == 14 * 86400.0
    assert s.engine_env()["TG_RUN_RETENTION"] == str(14 * 86400)  # what the Database reads
    monkeypatch.setenv("TG_RUN_HISTORY_DAYS", "-1")
    with pytest.raises(ValidationError):
        Settings()
