"""The Scheduler's commands from the API and the UI (`commands` topic, its group
`scheduler`): a trigger (manual, a refresh or a backfill) and a cancel, each answered with the run id.

The actor hands its own methods in (typed by its face), so a command does exactly what the
direct call did, with the same errors: JobNotFound, BackfillRefused, RunNotFound,
IllegalTransition. Triggers go to the desk together (tg_actors/commands/desk.py): a burst
of them shares the Scheduler's one insert and dispatch.
"""

from __future__ import annotations

from collections.abc import Callable

from tg_actors import interfaces
from tg_actors.commands.reply import Reply
from tg_actors.messages import CancelRunCommand, TriggerJob
from tg_actors.runstate import Trigger


async def apply_command(
    scheduler: interfaces.Scheduler,
    command: TriggerJob | CancelRunCommand,
    job_of: Callable[[str], str | None],
) -> Reply:
    """Apply one command; raises what the direct call raises (the desk's refusal)."""
    cid = command.command_id
    if isinstance(command, CancelRunCommand):
        job = job_of(command.run_id)
        run_id = await scheduler.cancel(command.run_id)
        return Reply(cid, run_id, job=job, outcome=f"cancelled run {run_id}")
    if command.trigger is Trigger.BACKFILL:
        if command.start is None or command.end is None:
            raise ValueError("a backfill command needs start and end")
        run_id = await scheduler.backfill(command.name, command.start, command.end)
    elif command.trigger is Trigger.REFRESH:
        run_id = await scheduler.refresh(command.name)
    else:
        run_id = await scheduler.trigger(command.name, command.priority)
    kind = "" if command.trigger is Trigger.MANUAL else f"{command.trigger.value} "
    return Reply(cid, run_id, outcome=f"{kind}run {run_id}")
