"""ConfigManager actor: validates jobs, persists them through the Database actor, announces
every change on the `config` topic. Files in the jobs folder win over the database at start.

A job whose `triggers.after` would close a cycle with the jobs stored (they would trigger
each other forever) is refused, naming the cycle; saves are serialized so two concurrent
saves cannot each close half of one.

The API's and the UI's changes come as commands on the `commands` topic (its group
`config`): upsert, delete, pause, resume, each applied once per command id and answered on
the broker's reply mailbox (tg_actors/commands/desk.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tg_actors import interfaces
from tg_actors.broker.client import BrokerClient
from tg_actors.commands.desk import CONFIG_KINDS, CommandDesk
from tg_actors.commands.reply import Reply
from tg_actors.config.files import (
    announcements,
    cycle_errors,
    folder_jobs,
    parse_yaml,
    placed,
    stored_after,
)
from tg_actors.errors import JobNotFound, JobValidationError
from tg_actors.jobs import JobSpec, check_shape, parse_job
from tg_actors.lifecycle import Boot
from tg_actors.messages import (
    TOPIC_COMMANDS,
    TOPIC_CONFIG,
    DeleteJob,
    JobDeleted,
    JobPauseChanged,
    SetPaused,
    UpsertJob,
)
from tg_actors.names import CONFIG_GROUP
from tg_actors.peer import face
from tg_actors.redaction import restore_masked
from tg_actors.settings import Settings

log = logging.getLogger(__name__)
READ_ONLY_KEYS = ("paused", "origin", "status")


def public_job(row: dict[str, Any]) -> dict[str, Any]:
    """A stored job row as humans may see it: secrets masked."""
    spec = JobSpec.model_validate(row["spec"])
    return {**spec.to_public(), "paused": row["paused"], "origin": row["origin"]}


class ConfigManager:
    def __init__(self, settings: dict[str, Any], db: Any, broker: Any) -> None:
        self._settings = Settings(**settings)
        self._db: interfaces.Database = face(db)
        self._broker = BrokerClient(broker)
        self._saving = asyncio.Lock()  # check-for-cycle then store, one save at a time
        self._desk = CommandDesk(CONFIG_KINDS, self._command, self._db, self._broker.reply_all)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._boot = Boot(self._start)

    async def _start(self) -> None:
        """Join `commands` (also after a restart): the API's changes come from there."""
        await self._broker.subscribe(TOPIC_COMMANDS, CONFIG_GROUP)
        if not self._tasks:
            pump = self._broker.pump_batches(
                TOPIC_COMMANDS, CONFIG_GROUP, self._desk.on_batch, self._stop
            )
            self._tasks.append(asyncio.create_task(pump))

    async def _command(self, command: UpsertJob | DeleteJob | SetPaused) -> Reply:
        """Apply one command of ours; its errors are its answer (the desk's)."""
        cid = command.command_id
        match command:
            case UpsertJob():
                result = await self.upsert(command.body, command.name)
                created = bool(result["created"])
                return Reply(cid, {"created": created}, outcome="created" if created else "updated")
            case DeleteJob():
                await self.delete(command.name)
                return Reply(cid, True, outcome="deleted")
            case SetPaused():
                await self.set_paused(command.name, command.paused)
                return Reply(cid, None, outcome="paused" if command.paused else "resumed")

    async def load_dir(self) -> dict[str, Any]:
        """Load every file of the jobs folder; returns {"loaded": [...], "errors": [...]}."""
        folder = self._settings.jobs_dir
        async with self._saving:
            report = folder_jobs(folder, await self._stored_after())
            if report is None:
                log.warning("jobs folder %s does not exist; no job files loaded", folder)
                return {"loaded": [], "errors": []}
            for error in report.errors:
                log.error("skipped invalid job file:\n%s", error)
            await self._store([spec for _path, spec in report.jobs.values()], origin="file")
        return {"loaded": sorted(report.jobs), "errors": [str(e) for e in report.errors]}

    async def settings(self) -> dict[str, Any]:
        data = self._settings.model_dump(mode="json")
        data["api_token"] = "***" if data.get("api_token") else None
        return data

    async def upsert(self, data: dict[str, Any] | str, name: str | None = None) -> dict[str, Any]:
        """Validate and store a job (dict or YAML text). Raises JobValidationError, storing
        nothing. Returns {"created": bool, "job": public job}."""
        async with self._saving:
            spec = await self._parse(data, name)
            await self._refuse_cycle(spec, name)
            [created] = await self._store([spec], origin="api")
        return {"created": created, "job": await self.get(spec.name)}

    async def validate(self, data: dict[str, Any] | str, name: str | None = None) -> dict[str, Any]:
        """What `upsert` would store, as the public job; stores nothing. JobValidationError."""
        spec = await self._parse(data, name)
        await self._refuse_cycle(spec, name)
        return spec.to_public()

    async def parse(self, data: dict[str, Any] | str, name: str | None = None) -> dict[str, Any]:
        """What `upsert` would store, as stored (`${NAME}` references); stores nothing."""
        return (await self._parse(data, name)).to_stored()

    async def _stored_after(self) -> dict[str, list[str]]:
        """{job: its triggers.after} of every stored job."""
        return stored_after(await self._db.list_jobs())

    async def _refuse_cycle(self, spec: JobSpec, name: str | None) -> None:
        """JobValidationError when `spec` closes a cycle of triggers.after with the stored jobs."""
        source = f"job {name}" if name else "job"
        errors = cycle_errors({spec.name: (source, spec)}, await self._stored_after())
        if spec.name in errors:
            raise errors[spec.name]

    async def _parse(self, data: dict[str, Any] | str, name: str | None) -> JobSpec:
        source = f"job {name}" if name else "job"
        raw = parse_yaml(data, source) if isinstance(data, str) else data
        if isinstance(raw, dict):
            check_shape(raw, source)  # before anything below walks it recursively
            # what GET /api/jobs/{name} adds beside the job: a GET body may be PUT back as is
            raw = {k: v for k, v in raw.items() if k not in READ_ONLY_KEYS}
        if name is not None and isinstance(raw, dict):
            raw.setdefault("name", name)
            if raw["name"] != name:
                raise JobValidationError(
                    source, [("name", f"does not match the name in the URL ({name!r})")]
                )
        if isinstance(raw, dict) and isinstance(raw.get("name"), str):
            # `***` (a secret as the API and UI show it) keeps the stored reference
            row = await self._db.get_job(raw["name"])
            raw, unmatched = restore_masked(raw, row["spec"] if row else None)
            if unmatched:
                message = "'***' stands for a stored secret, and there is none here: give ${NAME}"
                raise JobValidationError(source, [(path, message) for path in unmatched])
        try:
            return parse_job(raw, source)
        except JobValidationError as exc:
            if isinstance(data, str):  # YAML text: each error names its line and column
                raise placed(exc, data, raw) from None
            raise

    async def delete(self, name: str) -> bool:
        deleted = bool(await self._db.delete_job(name))
        if not deleted:
            raise JobNotFound(name)
        await self._broker.publish(TOPIC_CONFIG, JobDeleted(name=name))
        return True

    async def set_paused(self, name: str, paused: bool) -> dict[str, Any]:
        row = await self._db.get_job(name)
        if row is None:
            raise JobNotFound(name)
        await self._db.set_paused(name, paused)
        await self._broker.publish(TOPIC_CONFIG, JobPauseChanged(name=name, paused=paused))
        return await self.get(name)

    async def get(self, name: str) -> dict[str, Any]:
        row = await self._db.get_job(name)
        if row is None:
            raise JobNotFound(name)
        return public_job(row)

    async def list(self) -> list[dict[str, Any]]:
        return [public_job(row) for row in await self._db.list_jobs()]

    async def ping(self) -> str:
        """ "ok" once it reads `commands`."""
        await self._boot.wait()
        return "ok"

    async def _store(self, specs: Sequence[JobSpec], origin: str) -> Sequence[bool]:
        """Store the jobs in one transaction and announce each; whether each was created."""
        if not specs:
            return []
        stored = [(spec.name, spec.to_stored()) for spec in specs]
        done = await self._db.upsert_jobs(stored, origin)
        for batch in announcements(stored, done):
            await self._broker.publish(TOPIC_CONFIG, *batch)
        return [row.created for row in done]


if TYPE_CHECKING:  # the actor keeps the promises of its face: mypy checks this conversion

    def _keeps_its_face(actor: ConfigManager) -> interfaces.ConfigManager:
        return actor
