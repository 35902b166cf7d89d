"""The Editor's guided form for a new job: its fields -> the job's YAML text (pure, no Gradio;
tested in tests/unit/test_ui_preview.py).

The YAML the form writes is the source of truth: it lands in the editor, where it can be
edited, validated, tested and saved like any other. Secrets are never typed into the form:
it asks for the *name* of the environment variable holding each one and writes `${NAME}`,
which the engines resolve for a run only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any

import yaml

from tg_actors.redaction import DEFAULT_SECRET_ENV, SecretNames

METHODS = ["GET", "POST"]
AUTH_KINDS = [
    "none",
    "bearer",
    "basic",
    "api_key",
    "oauth2_client_credentials",
    "oauth2_refresh_token",
    "login",
]
PAGINATE_KINDS = ["none", "page", "offset", "cursor", "next_url", "link_header"]
WRITE_MODES = ["append", "merge", "replace"]
KEY_PLACES = ["header", "query"]

# which form fields each auth kind / pagination kind uses (the others are hidden)
AUTH_FIELDS: dict[str, list[str]] = {
    "none": [],
    "bearer": ["token_env"],
    "basic": ["username_env", "password_env"],
    "api_key": ["key_name", "key_in", "key_env"],
    "oauth2_client_credentials": ["token_url", "client_id_env", "client_secret_env", "scope"],
    "oauth2_refresh_token": [
        "token_url",
        "client_id_env",
        "client_secret_env",
        "refresh_token_env",
        "scope",
    ],
    "login": ["login_url", "username_env", "password_env", "token_path"],
}
PAGINATE_FIELDS: dict[str, list[str]] = {
    "none": [],
    "page": ["page_param", "page_size_param", "page_size"],
    "offset": ["offset_param", "limit_param", "limit"],
    "cursor": ["cursor_param", "cursor_path"],
    "next_url": ["next_path"],
    "link_header": [],
}

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


class FormError(ValueError):
    """What keeps the form from writing a job: one message per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass
class JobForm:
    """The form's fields, in the order the UI lays them out (`FIELD_NAMES`)."""

    name: str = ""
    url: str = ""
    method: str = "GET"
    auth: str = "none"
    # auth: secrets as the NAME of an environment variable
    token_env: str = "API_TOKEN"  # bearer
    username_env: str = "API_USER"  # basic, login
    password_env: str = "API_PASSWORD"  # basic, login
    key_name: str = "X-API-Key"  # api_key: the header or query parameter
    key_in: str = "header"  # api_key
    key_env: str = "API_KEY"  # api_key
    token_url: str = ""  # oauth2_*
    client_id_env: str = "API_CLIENT_ID"  # oauth2_*
    client_secret_env: str = "API_CLIENT_SECRET"  # oauth2_* (optional for refresh_token)
    refresh_token_env: str = "API_REFRESH_TOKEN"  # oauth2_refresh_token
    scope: str = ""  # oauth2_* (optional)
    login_url: str = ""  # login
    token_path: str = "$.token"  # login
    records: str = "$"
    paginate: str = "none"
    page_param: str = "page"
    page_size_param: str = ""
    page_size: Any = None
    offset_param: str = "offset"
    limit_param: str = "limit"
    limit: Any = 100
    cursor_param: str = "cursor"
    cursor_path: str = "$.next_cursor"
    next_path: str = "$.next"
    cursor_field: str = ""  # incremental (optional: empty means a full read each run)
    since_param: str = ""
    initial: str = ""
    table: str = ""
    write: str = "append"
    primary_key: str = ""  # comma-separated
    interval: str = ""  # schedule (optional: empty means run only when triggered)

    @classmethod
    def from_values(cls, *values: Any) -> JobForm:
        """The form from the UI's inputs, given in FIELD_NAMES order (None as the default)."""
        if len(values) != len(FIELD_NAMES):
            raise ValueError(f"expected {len(FIELD_NAMES)} values, got {len(values)}")
        given = {k: v for k, v in zip(FIELD_NAMES, values, strict=True) if v is not None}
        return cls(**given)


FIELD_NAMES = [f.name for f in fields(JobForm)]
DEFAULTS = JobForm()


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _count(value: Any, label: str, problems: list[str]) -> int | None:
    """A whole number >= 1 from a form field; None when empty."""
    text = _text(value)
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = 0.5
    if number != int(number) or number < 1:
        problems.append(f"{label} must be a whole number of at least 1, not {text!r}")
        return None
    return int(number)


def _secret(value: Any, label: str, problems: list[str], *, required: bool = True) -> str | None:
    """`${NAME}` for the environment variable NAME the field gives (`${NAME}` itself is taken
    too); a value that is no variable name is refused, so a pasted secret never reaches the
    YAML."""
    text = _text(value)
    if not text:
        if required:
            problems.append(f"{label}: give the name of the environment variable that holds it")
        return None
    match = REFERENCE.match(text)
    name = match.group(1) if match else text
    if not ENV_NAME.match(name):
        problems.append(
            f"{label}: {len(text)} characters that are not an environment variable name"
            " (letters, digits and _): give the variable's NAME, never the secret itself"
        )
        return None
    return "${" + name + "}"


def _required(value: Any, problem: str, problems: list[str]) -> str:
    text = _text(value)
    if not text:
        problems.append(problem)
    return text


def _oauth2(form: JobForm, kind: str, problems: list[str]) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": kind,
        "token_url": _required(
            form.token_url, "Token URL: where the client gets its access token", problems
        ),
        "client_id": _secret(form.client_id_env, "Client id variable", problems),
    }
    refresh = kind == "oauth2_refresh_token"
    secret = _secret(
        form.client_secret_env, "Client secret variable", problems, required=not refresh
    )
    if secret is not None:
        auth["client_secret"] = secret
    if refresh:
        auth["refresh_token"] = _secret(form.refresh_token_env, "Refresh token variable", problems)
    if _text(form.scope):
        auth["scope"] = _text(form.scope)
    return auth


def _auth(form: JobForm, problems: list[str]) -> dict[str, Any] | None:
    kind = _text(form.auth) or "none"
    if kind == "none":
        return None
    if kind.startswith("oauth2_"):
        return _oauth2(form, kind, problems)
    auth: dict[str, Any] = {"type": kind}
    if kind == "bearer":
        auth["token"] = _secret(form.token_env, "Token variable", problems)
    elif kind == "basic":
        auth["username"] = _secret(form.username_env, "Username variable", problems)
        auth["password"] = _secret(form.password_env, "Password variable", problems)
    elif kind == "api_key":
        problem = "API key name: the header or query parameter that carries the key"
        auth["name"] = _required(form.key_name, problem, problems)
        auth["in"] = _text(form.key_in) or "header"
        auth["value"] = _secret(form.key_env, "API key variable", problems)
    elif kind == "login":
        auth["url"] = _required(form.login_url, "Login URL: where the job signs in", problems)
        auth["body"] = {
            "username": _secret(form.username_env, "Username variable", problems),
            "password": _secret(form.password_env, "Password variable", problems),
        }
        auth["token_path"] = _text(form.token_path) or "$.token"
    else:
        problems.append(f"auth type {kind!r} is not one of {', '.join(AUTH_KINDS)}")
    return auth


def _paginate(form: JobForm, problems: list[str]) -> dict[str, Any]:
    kind = _text(form.paginate) or "none"
    out: dict[str, Any] = {"type": kind}
    if kind == "page":
        out["param"] = _text(form.page_param) or "page"
        size = _count(form.page_size, "Page size", problems)
        size_param = _text(form.page_size_param)
        if size_param:
            out["size_param"] = size_param
        if size is not None:
            out["size"] = size
        if size is not None and not size_param:
            problems.append("Page size: give the parameter it is sent as (e.g. per_page)")
    elif kind == "offset":
        out["param"] = _text(form.offset_param) or "offset"
        out["limit_param"] = _text(form.limit_param) or "limit"
        limit = _count(form.limit, "Limit", problems)
        if limit is not None:
            out["limit"] = limit
    elif kind == "cursor":
        out["param"] = _text(form.cursor_param) or "cursor"
        out["path"] = _text(form.cursor_path) or "$.next_cursor"
    elif kind == "next_url":
        out["path"] = _text(form.next_path) or "$.next"
    elif kind not in PAGINATE_KINDS:
        problems.append(f"pagination type {kind!r} is not one of {', '.join(PAGINATE_KINDS)}")
    return out


def job_dict(form: JobForm) -> dict[str, Any]:
    """The job the form describes, as the dict its YAML holds; FormError listing what is
    missing or not allowed. What the job model checks beyond that (names, URLs, paths) is left
    to Validate, which points at the field."""
    problems: list[str] = []
    name, url, table = _text(form.name), _text(form.url), _text(form.table)
    if not name:
        problems.append("Name: the job needs one (lowercase letters, digits and _)")
    if not url:
        problems.append("URL: where the records are read (http:// or https://)")
    job: dict[str, Any] = {"name": name}
    interval = _text(form.interval)
    if interval:
        job["schedule"] = {"interval": interval}
    source: dict[str, Any] = {"type": "http", "url": url}
    method = _text(form.method).upper() or "GET"
    if method != "GET":
        source["method"] = method
    auth = _auth(form, problems)
    if auth is not None:
        source["auth"] = auth
    source["records"] = _text(form.records) or "$"
    source["paginate"] = _paginate(form, problems)
    cursor_field, since = _text(form.cursor_field), _text(form.since_param)
    if cursor_field or since or _text(form.initial):
        if not cursor_field or not since:
            problems.append(
                "Incremental: give both the cursor field (in the records) and the parameter"
                " it is sent as, or neither"
            )
        incremental: dict[str, Any] = {"cursor_field": cursor_field, "param": since}
        if _text(form.initial):
            incremental["initial"] = _text(form.initial)
        source["incremental"] = incremental
    job["source"] = source
    write = _text(form.write) or "append"
    destination: dict[str, Any] = {"table": table or name, "write": write}
    keys = [k.strip() for k in _text(form.primary_key).split(",") if k.strip()]
    if keys:
        destination["primary_key"] = keys
    elif write == "merge":
        problems.append("Primary key: merge updates rows by it (comma-separated columns)")
    job["destination"] = destination
    if problems:
        raise FormError(problems)
    return job


def job_yaml(form: JobForm) -> str:
    """The job's YAML text for the editor (see job_dict); FormError when it cannot be written."""
    job = job_dict(form)
    header = "# Written by the form: edit it freely, then Validate, Test and Save.\n"
    return header + yaml.safe_dump(job, sort_keys=False, allow_unicode=True, width=100)


def secret_notes(form: JobForm, patterns: str = DEFAULT_SECRET_ENV) -> list[str]:
    """The variables the job names that the engines' default allow-list (TG_SECRET_ENV) would
    refuse to read: the run would fail unless the engines allow them."""
    allowed = SecretNames.parse(patterns)
    used = set(AUTH_FIELDS.get(_text(form.auth), []))
    notes = []
    for field_name in FIELD_NAMES:
        if field_name not in used or not field_name.endswith("_env"):
            continue
        text = _text(getattr(form, field_name))
        match = REFERENCE.match(text)
        name = match.group(1) if match else text
        if name and ENV_NAME.match(name) and not allowed.allows(name):
            notes.append(
                f"${{{name}}} is outside the engines' default allow-list ({patterns}):"
                " set TG_SECRET_ENV on the engines, or pick a name that matches"
            )
    return notes


def visible(kind: str | None, table: dict[str, list[str]]) -> set[str]:
    """The form fields a kind of auth or pagination uses."""
    return set(table.get(kind or "none", []))
