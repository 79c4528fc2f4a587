"""An admission as one I/O-free state machine, and the two loops that drive it.

``admission`` decides, step by step, what one caller does to be admitted: ask the backend for a
turn, sleep for it, pass the gate, wait out a shared cooldown, give a turn back. It performs no
I/O: it yields each step and is sent each backend answer with the seconds the call took, so the
same decisions run in a thread (``drive_sync``) and on an event loop (``drive_async``). An error
of a step (a cancellation, a timeout, a backend failure) is thrown into it: a turn it holds is
refunded (a ``Refund`` step) before the error goes on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, NamedTuple

from ccxt_questdb_assets.ratelimit.bucket import COOLDOWN, GO
from ccxt_questdb_assets.ratelimit.local import Ticket

__all__ = ["Admission", "admission", "drive_async", "drive_sync"]


class Reserve(NamedTuple):
    """Ask the backend for a turn of ``weight`` tokens (answered with a ``Grant``)."""

    weight: float


class Admit(NamedTuple):
    """Pass the gate with a turn (answered with ``(kind, wait, slot)``)."""

    ticket: Ticket
    held_at: Any


class Sleep(NamedTuple):
    seconds: float


class Refund(NamedTuple):
    """Give a turn back (and the gate's token when ``gate``)."""

    ticket: Ticket
    gate: bool


Step = Reserve | Admit | Sleep | Refund
Admission = Generator[Step, Any, tuple[Ticket, bool]]


def admission(
    weight: float, *, check_deadline: Callable[[float], None], on_cooldown: Callable[[float], None]
) -> Admission:
    """The steps of one admission; returns ``(ticket, cooldown_waited)``.

    ``check_deadline(wait)`` raises when sleeping ``wait`` more would pass the caller's deadline;
    ``on_cooldown(seconds)`` is told of each shared cooldown waited out. A wait the backend
    answers counts from when it was computed, so the caller sleeps it minus the way back (a slow
    round trip must not make every waiter late).
    """
    cooldown_waited = False
    while True:
        grant, took = yield Reserve(weight)
        if grant.ticket is None:  # a shared cooldown runs: wait it out, then ask again
            check_deadline(grant.wait_s)
            cooldown_waited = True
            on_cooldown(grant.wait_s)
            yield Sleep(grant.wait_s)
            continue
        ticket = grant.ticket
        if grant.admitted:
            return ticket, cooldown_waited
        wait, held_at = max(0.0, grant.wait_s - took), None
        try:
            while True:  # sleep for the turn, then pass the gate
                check_deadline(wait)
                yield Sleep(wait)
                (kind, wait, slot), took = yield Admit(ticket, held_at)
                if kind == GO:
                    return ticket, cooldown_waited
                if kind == COOLDOWN:
                    break
                wait, held_at = max(0.0, wait - took), slot  # the gate's token at slot is ours
        except BaseException:
            yield Refund(ticket, held_at is not None)
            raise
        # a cooldown started while we slept: give the turn back, wait it out, queue again
        yield Refund(ticket, held_at is not None)
        cooldown_waited = True


class _Steps:
    """The steps of a machine, each one's outcome (``answer`` or ``fail``) sent into it before the
    next; ``admitted`` is what the machine returned once it is done."""

    admitted: tuple[Ticket, bool]

    def __init__(self, machine: Admission) -> None:
        self._machine = machine
        self._answer: Any = None
        self._error: BaseException | None = None

    def __iter__(self) -> Iterator[Step]:
        while True:
            answer, error = self._answer, self._error
            self._answer, self._error = None, None
            try:
                step = self._machine.throw(error) if error is not None else self._machine.send(answer)
            except StopIteration as done:
                self.admitted = done.value
                return
            yield step

    def answer(self, value: Any) -> None:
        self._answer = value

    def fail(self, error: BaseException) -> None:
        """The step failed: the error is thrown into the machine, which refunds and re-raises."""
        self._error = error


def drive_sync(machine: Admission, backend: Any) -> tuple[Ticket, bool]:
    """Run ``machine`` in this thread: backend calls and sleeps block it."""
    steps = _Steps(machine)
    for step in steps:
        try:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
            elif isinstance(step, Refund):
                backend.refund(step.ticket, step.gate)
            else:
                t0 = time.monotonic()
                answer = (
                    backend.reserve(step.weight)
                    if isinstance(step, Reserve)
                    else backend.admit(step.ticket, step.held_at)
                )
                steps.answer((answer, time.monotonic() - t0))
        except BaseException as exc:  # noqa: BLE001 - handed to the machine, which refunds and re-raises
            steps.fail(exc)
    return steps.admitted


async def drive_async(
    machine: Admission,
    backend: Any,
    *,
    timed: Callable[..., Awaitable[tuple[Any, float]]],
    refund_soon: Callable[[Ticket, bool], None],
) -> tuple[Ticket, bool]:
    """Run ``machine`` on the event loop: ``timed(fn, *args)`` makes a backend call (off the loop
    when it blocks) and times it; ``refund_soon`` hands a refund to the backend's thread."""
    steps = _Steps(machine)
    for step in steps:
        try:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
            elif isinstance(step, Refund):
                refund_soon(step.ticket, step.gate)
            elif isinstance(step, Reserve):
                steps.answer(await timed(backend.reserve, step.weight, refund_grant=True))
            else:
                steps.answer(await timed(backend.admit, step.ticket, step.held_at))
        except BaseException as exc:  # noqa: BLE001 - handed to the machine, which refunds and re-raises
            steps.fail(exc)
    return steps.admitted
