"""Commands of the API and the UI (tg_actors/commands): the desk applies each once per id and
answers every copy, the replies kept in tg.commands rebuild the same answer, the broker's
reply mailbox, and the audit log's SQL on a real DuckDB file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.kit.stepclock import Clock
from tg_actors.broker.mailbox import Mailbox
from tg_actors.commands.desk import CONFIG_KINDS, POOL_KINDS, SCHEDULER_KINDS, CommandDesk
from tg_actors.commands.reply import Answered, Received, Reply, from_json, refused, to_json
from tg_actors.errors import (
    IllegalTransition,
    JobNotFound,
    JobValidationError,
    PeerUnavailable,
)
from tg_actors.messages import (
    AnyCommand,
    DeleteJob,
    SetPaused,
    TriggerJob,
    UpsertJob,
    from_wire,
    to_wire,
)
from tg_actors.runstate import RunState
from tg_actors.store import commands as store
from tg_actors.store.duckdb import DuckStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class FakeDb:
    """The Database's command methods over a dict (the desk's peer)."""

    def __init__(self) -> None:
        self.kept: dict[str, str] = {}
        self.answered: list[Answered] = []
        self.down = False

    async def command_replies(self, ids: list[str]) -> dict[str, str]:
        if self.down:
            raise PeerUnavailable("tg_database", "restarting")
        return {i: self.kept[i] for i in ids if i in self.kept}

    async def commands_answered(self, answers: list[Answered]) -> None:
        if self.down:
            raise PeerUnavailable("tg_database", "restarting")
        self.answered += answers
        for a in answers:
            if a.reply is not None:
                self.kept.setdefault(a.received.command_id, a.reply)


class Owner:
    """An owner that counts what it applied; `gate` holds each apply until set."""

    def __init__(self) -> None:
        self.applied: list[str] = []
        self.sent: list[Reply] = []
        self.gate: asyncio.Event | None = None
        self.concurrent = 0
        self.most = 0

    async def apply(self, command: Any) -> Reply:
        self.concurrent += 1
        self.most = max(self.most, self.concurrent)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(0)
            self.applied.append(command.command_id)
            if command.name == "missing":
                raise JobNotFound(command.name)
            if command.name == "flaky":
                raise PeerUnavailable("tg_database", "restarting")
            return Reply(command.command_id, f"run-{command.command_id}", outcome="run")
        finally:
            self.concurrent -= 1

    async def send(self, replies: list[Reply]) -> None:
        self.sent += replies


def trigger(cid: str, name: str = "orders") -> TriggerJob:
    return TriggerJob(name=name, command_id=cid, who="api")


async def settle(d: CommandDesk, batch: list[Any]) -> None:
    """One batch, and the records it left lingering."""
    await d.on_batch(batch)
    await d.flush()


def desk(owner: Owner, db: FakeDb, together: bool = False) -> CommandDesk:
    return CommandDesk(SCHEDULER_KINDS, owner.apply, db, owner.send, together=together)  # type: ignore[arg-type]


def test_every_kind_has_one_owner() -> None:
    kinds = {"upsert", "delete", "pause", "resume", "trigger", "cancel"}
    assert CONFIG_KINDS | SCHEDULER_KINDS | POOL_KINDS == kinds | {"scale"}
    assert not (CONFIG_KINDS & SCHEDULER_KINDS or CONFIG_KINDS & POOL_KINDS)
    assert not SCHEDULER_KINDS & POOL_KINDS


def test_commands_are_frozen_messages_that_round_trip_on_the_wire() -> None:
    command = UpsertJob(name="orders", body="name: orders\n", command_id="c1", who="ui")
    assert from_wire(to_wire(command)) == command
    with pytest.raises(Exception, match="frozen"):
        command.name = "other"  # type: ignore[misc]
    assert SetPaused(kind="resume", name="a", command_id="c2").paused is False
    assert DeleteJob(name="a", command_id="c3").job == "a"
    from pydantic import TypeAdapter

    parsed = TypeAdapter(AnyCommand).validate_python(
        {"kind": "cancel", "run_id": "r", "command_id": "c4"}
    )
    assert parsed.kind == "cancel" and parsed.job is None


def test_a_duplicate_in_a_batch_and_a_later_copy_are_applied_once_and_answered_alike() -> None:
    owner, db = Owner(), FakeDb()
    d = desk(owner, db)
    asyncio.run(settle(d, [trigger("a"), trigger("a"), trigger("b")]))
    asyncio.run(settle(d, [trigger("a")]))
    assert owner.applied == ["a", "b"]
    assert [r.command_id for r in owner.sent] == ["a", "a", "b", "a"]
    assert {r.value for r in owner.sent if r.command_id == "a"} == {"run-a"}
    assert d.applied == 2


def test_a_copy_seen_by_a_new_desk_is_answered_from_the_record() -> None:
    owner, db = Owner(), FakeDb()
    asyncio.run(settle(desk(owner, db), [trigger("a"), trigger("x", "missing")]))
    again = Owner()
    asyncio.run(settle(desk(again, db), [trigger("a"), trigger("x", "missing")]))  # restarted
    assert again.applied == []
    assert again.sent[0].result() == "run-a"
    with pytest.raises(JobNotFound, match="missing"):
        again.sent[1].result()


def test_an_error_of_the_system_is_not_final_and_is_tried_again() -> None:
    owner, db = Owner(), FakeDb()
    d = desk(owner, db)
    asyncio.run(settle(d, [trigger("f", "flaky")]))
    asyncio.run(settle(d, [trigger("f", "flaky")]))
    assert owner.applied == ["f", "f"]
    assert db.kept == {}  # nothing final recorded
    assert db.answered[0].outcome.startswith("refused: PeerUnavailable")


def test_a_database_down_does_not_stop_commands_and_the_desk_remembers() -> None:
    owner, db = Owner(), FakeDb()
    db.down = True
    d = desk(owner, db)
    asyncio.run(settle(d, [trigger("a")]))
    asyncio.run(settle(d, [trigger("a")]))
    assert owner.applied == ["a"]
    assert [r.value for r in owner.sent] == ["run-a", "run-a"]


def test_others_kinds_are_left_to_their_owners() -> None:
    owner, db = Owner(), FakeDb()
    asyncio.run(settle(desk(owner, db), [DeleteJob(name="a", command_id="d")]))
    assert owner.applied == [] and owner.sent == [] and db.answered == []


@pytest.mark.parametrize("together", [False, True])
def test_together_applies_a_batch_side_by_side_else_in_order(together: bool) -> None:
    owner, db = Owner(), FakeDb()

    async def go() -> None:
        owner.gate = asyncio.Event()
        task = asyncio.create_task(desk(owner, db, together).on_batch([trigger("a"), trigger("b")]))
        for _ in range(10):
            await asyncio.sleep(0)
        owner.gate.set()
        await task

    asyncio.run(go())
    assert owner.most == (2 if together else 1)
    assert owner.applied == ["a", "b"]


def test_replies_kept_as_json_rebuild_the_same_errors() -> None:
    invalid = JobValidationError("job", [("source.url", "field required")], {"source.url": (3, 5)})
    for error in (
        invalid,
        JobNotFound("orders"),
        IllegalTransition("r1", RunState.SUCCEEDED, RunState.CANCELLED),
    ):
        back = from_json("c", to_json(refused("c", error)))
        assert type(back.error) is type(error) and str(back.error) == str(error)
    rebuilt = from_json("c", to_json(refused("c", invalid))).error
    assert isinstance(rebuilt, JobValidationError)
    assert [tuple(e) for e in rebuilt.errors] == invalid.errors
    assert tuple(rebuilt.positions["source.url"]) == (3, 5)
    ok = from_json("c", to_json(Reply("c", {"created": True}, outcome="created")))
    assert ok.result() == {"created": True} and ok.outcome == "created"


def test_a_refusal_s_outcome_masks_references_and_url_secrets() -> None:
    error = JobValidationError(
        "job", [("auth.token", "bad ${API_TOKEN} for https://u:pw@x.test/a?api_key=s3cret")]
    )
    text = refused("c", error).outcome
    assert "API_TOKEN" not in text and "s3cret" not in text and "pw@" not in text
    assert "***" in text


def test_the_mailbox_answers_every_waiter_and_drops_an_answer_nobody_waits_for() -> None:
    async def go() -> None:
        box = Mailbox()
        first, second = box.open("k"), box.open("k")
        assert box.post("k", "answer") == 2
        assert (await first, await second) == ("answer", "answer")
        box.close("k", first)
        box.close("k", second)
        assert box.post("k", "late") == 0 and len(box) == 0
        gone = box.open("j")
        box.close("j", gone)
        assert len(box) == 0

    asyncio.run(go())


# -- tg.commands on a real DuckDB file ---------------------------------------------------


@pytest.fixture
def duck(tmp_path: Path) -> Iterator[DuckStore]:
    with DuckStore(tmp_path / "w.duckdb", clock=Clock()) as opened:
        yield opened


def received(
    cid: str, kind: str = "trigger", job: str | None = "orders", minute: int = 0
) -> Received:
    return Received(cid, kind, job, "api", T0 + timedelta(minutes=minute))


def test_received_then_answered_and_answered_then_received_make_one_row(duck: DuckStore) -> None:
    con = duck.con
    store.add_received(con, [received("a"), received("a")])
    final = Answered(received("a"), T0 + timedelta(seconds=1), "run r1", '{"value":"r1"}')
    store.add_answered(con, [final])
    store.add_answered(con, [Answered(received("b", minute=1), T0, "deleted", None)])
    store.add_received(con, [received("b", minute=1)])
    rows = store.list_commands(con)
    assert [(r["command_id"], r["outcome"]) for r in rows] == [("b", "deleted"), ("a", "run r1")]
    assert rows[1]["answered_at"] == T0 + timedelta(seconds=1)
    assert store.replies(con, ["a", "b", "zz"]) == {"a": '{"value":"r1"}'}


def test_a_final_reply_is_never_replaced(duck: DuckStore) -> None:
    con = duck.con
    store.add_answered(con, [Answered(received("a"), T0, "run r1", '{"value":"r1"}')])
    store.add_answered(con, [Answered(received("a"), T0, "run r2", '{"value":"r2"}')])
    assert store.replies(con, ["a"]) == {"a": '{"value":"r1"}'}
    assert store.list_commands(con)[0]["outcome"] == "run r1"


def test_a_cancel_s_job_is_filled_in_by_its_answer(duck: DuckStore) -> None:
    con = duck.con
    store.add_received(con, [received("c", "cancel", None)])
    store.add_answered(
        con, [Answered(received("c", "cancel", "orders"), T0, "cancelled run r", None)]
    )
    assert [r["job"] for r in store.list_commands(con, "orders")] == ["orders"]


def test_list_filters_by_job_limits_and_prune_drops_old_ones(duck: DuckStore) -> None:
    con = duck.con
    store.add_received(
        con, [received(f"c{i}", job="a" if i % 2 else "b", minute=i) for i in range(6)]
    )
    assert [r["command_id"] for r in store.list_commands(con, "a", 2)] == ["c5", "c3"]
    assert store.prune(con, T0 + timedelta(minutes=3)) == 3
    assert [r["command_id"] for r in store.list_commands(con)] == ["c5", "c4", "c3"]


def test_an_id_the_api_made_is_not_looked_up_and_one_sent_again_is() -> None:
    owner, db = Owner(), FakeDb()
    looked: list[list[str]] = []
    recall = db.command_replies

    async def counting(ids: list[str]) -> dict[str, str]:
        looked.append(list(ids))
        return await recall(ids)

    db.command_replies = counting  # type: ignore[method-assign]
    minted = TriggerJob(name="orders", command_id="m1", minted=True)
    asyncio.run(settle(desk(owner, db), [minted, trigger("k1")]))
    assert looked == [["k1"]]
    asyncio.run(settle(desk(Owner(), db), [trigger("m1")]))  # m1 sent again, by its key
    assert looked[-1] == ["m1"]


def test_a_keyed_command_is_recorded_before_its_answer_a_minted_one_after() -> None:
    order: list[str] = []
    owner, db = Owner(), FakeDb()
    record = db.commands_answered

    async def recording(answers: list[Answered]) -> None:
        order.append("record")
        await record(answers)

    async def sending(replies: list[Reply]) -> None:
        order.append("answer")

    db.commands_answered = recording  # type: ignore[method-assign]
    d = CommandDesk(SCHEDULER_KINDS, owner.apply, db, sending)  # type: ignore[arg-type]
    asyncio.run(settle(d, [trigger("k1")]))
    assert order == ["record", "answer"]
    order.clear()
    asyncio.run(settle(d, [TriggerJob(name="orders", command_id="m1", minted=True)]))
    assert order == ["answer", "record"]
    order.clear()  # the UI's: recorded first, its History reads it right after
    asyncio.run(settle(d, [TriggerJob(name="orders", command_id="u1", minted=True, who="ui")]))
    assert order == ["record", "answer"]
    assert set(db.kept) == {"k1", "m1", "u1"}


def test_records_of_api_made_ids_linger_and_go_in_one_write() -> None:
    owner, db = Owner(), FakeDb()
    writes: list[int] = []
    record = db.commands_answered

    async def counting(answers: list[Answered]) -> None:
        writes.append(len(answers))
        await record(answers)

    db.commands_answered = counting  # type: ignore[method-assign]

    async def go() -> None:
        d = desk(owner, db)
        for i in range(3):  # three batches, each answered at once
            await d.on_batch([TriggerJob(name="orders", command_id=f"m{i}", minted=True)])
        assert len(owner.sent) == 3 and writes == []
        await d.flush()

    asyncio.run(go())
    assert writes == [3] and set(db.kept) == {"m0", "m1", "m2"}


def test_an_id_sent_again_with_another_request_is_refused_and_the_first_answer_kept() -> None:
    from tg_actors.errors import IdempotencyKeyReused

    owner, db = Owner(), FakeDb()
    asyncio.run(settle(desk(owner, db), [trigger("k", "orders")]))
    again = Owner()  # a new desk: the answer comes from the record, its fingerprint with it
    asyncio.run(settle(desk(again, db), [trigger("k", "customers"), trigger("k", "orders")]))
    assert owner.applied == ["k"] and again.applied == []
    with pytest.raises(IdempotencyKeyReused, match="new key"):
        again.sent[0].result()
    assert again.sent[1].result() == "run-k"
    same = Owner()  # within one batch too
    asyncio.run(settle(desk(same, FakeDb()), [trigger("j", "a"), trigger("j", "b")]))
    assert same.applied == ["j"]
    assert same.sent[0].result() == "run-j"
    with pytest.raises(IdempotencyKeyReused):
        same.sent[1].result()
