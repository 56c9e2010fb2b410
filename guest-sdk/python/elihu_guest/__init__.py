"""Write elihu jobs in Python.

A job is a function from a context to an output, marked with ``@job``::

    from elihu_guest import JobInfo, config, info, job

    @job
    def run(ctx: dict, job: JobInfo) -> dict:
        info(f"attempt {job.attempt} of {job.max_attempts}")
        return {"greeting": f"{config('greeting') or 'Hello'}, {ctx['name']}!"}

``@job`` makes the function the ``run`` export of elihu's ``job`` world
(``wit/job.wit``): the SDK parses the context JSON, calls the function and
serialises what it returns as JSON (``None`` gives ``null``). An exception
fails the run with reason ``error``: a plain ``Exception`` is the job saying
why it failed and its message is the reason; any other exception class is
most likely a bug, so the reason reads ``ValueError: ...`` and the traceback
is logged at ``error`` level.

While it runs a job can log (:func:`info`, :func:`warn`, ... or
:func:`log`), report :func:`progress`, save a :func:`checkpoint` that the
next attempt receives parsed in :attr:`JobInfo.checkpoint`, read
:func:`config` values set on its template and the :func:`secret` values it
grants as readable, call the hosts it grants with :mod:`elihu_guest.http`
(over ``wasi:http``), and :func:`snooze`: end the run and run again later
without using an attempt.

Build with ``python3 -m elihu_guest.build app.py -o app.wasm`` (see
:mod:`elihu_guest.build`), which runs componentize-py against the WIT world
this package carries (``componentize-py.toml``: ``wit/world.wit``, elihu's
job world plus outbound HTTP).
"""

from __future__ import annotations

import json
import math
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Literal, NoReturn, Optional, TypeVar

try:
    from componentize_py_types import Err
    from wit_world.imports import host as _host
    from wit_world.imports import elihu_job_types as _types
except ImportError:  # outside a build: `python3 -m elihu_guest.build`, or a unit test importing the job
    _host = None

__all__ = [
    "JobInfo",
    "Level",
    "LEVELS",
    "job",
    "log",
    "trace",
    "debug",
    "info",
    "warn",
    "error",
    "progress",
    "checkpoint",
    "config",
    "secret",
    "snooze",
]

Level = Literal["trace", "debug", "info", "warn", "error"]
"""How important a log line is."""

LEVELS: tuple[Level, ...] = ("trace", "debug", "info", "warn", "error")
"""The log levels of the job world, lowest first."""



def _world() -> Any:
    """The host interface of the job world; only a built component has it."""
    if _host is None:
        raise RuntimeError(
            "elihu_guest's host calls (log, progress, checkpoint, config, secret, snooze) work only inside a job "
            "component; build it with `python3 -m elihu_guest.build` and run it with `elihu run`"
        )
    return _host


@dataclass(frozen=True)
class JobInfo:
    """What a run knows about its job and this attempt."""

    id: int
    """The job's id."""
    template: str
    """The name of the template the job was enqueued against."""
    attempt: int
    """This attempt's number, starting at 1."""
    max_attempts: int
    """How many attempts the job may make in all."""
    raw_checkpoint: Optional[str] = None
    """The checkpoint an earlier attempt saved, as stored (or ``None``)."""

    @property
    def is_last_attempt(self) -> bool:
        """Whether this is the job's last attempt: a failure now is final."""
        return self.attempt >= self.max_attempts

    @property
    def checkpoint(self) -> Any:
        """The checkpoint an earlier attempt saved with :func:`checkpoint`,
        parsed (``None`` when there is none). Raises ``ValueError`` when the
        stored text is not JSON."""
        if self.raw_checkpoint is None:
            return None
        try:
            return json.loads(self.raw_checkpoint)
        except ValueError as e:
            raise ValueError(f"the checkpoint is not JSON ({e}): {self.raw_checkpoint[:200]}") from None


JobFunction = TypeVar("JobFunction", bound=Callable[[Any, JobInfo], Any])


def job(fn: JobFunction) -> JobFunction:
    """Makes ``fn(context, job)`` the job's ``run`` export. Use it once, in
    the module you build; the function stays callable as written."""
    module = sys.modules.get(fn.__module__)
    if module is None:
        raise RuntimeError(f"@job: cannot find the module {fn.__module__!r} that defines {fn.__name__}")

    class WitWorld:
        """The export componentize-py looks for in the built module."""

        def run(self, context: str, info: Any) -> str:
            return _dispatch(fn, context, info)

    # componentize-py calls `WitWorld().run(...)` of the module it builds.
    setattr(module, "WitWorld", WitWorld)
    return fn


def _dispatch(fn: Callable[[Any, JobInfo], Any], context: str, raw: Any) -> str:
    try:
        info = JobInfo(
            id=raw.id,
            template=raw.template,
            attempt=raw.attempt,
            max_attempts=raw.max_attempts,
            raw_checkpoint=raw.checkpoint,
        )
        try:
            parsed = json.loads(context)
        except ValueError as e:
            raise Exception(f"the context is not JSON: {e}") from None
        output = fn(parsed, info)
        try:
            return json.dumps(output, separators=(",", ":"))
        except (TypeError, ValueError) as e:
            raise Exception(f"the job's output is not JSON: {e}") from None
    except BaseException as e:  # every exception becomes the run's error, never a trap
        raise Err(_failure(e)) from None


def _failure(e: BaseException) -> str:
    """The run's error message for an exception (see the module docs)."""
    if type(e) is Exception:
        return str(e) or "Exception"
    try:
        # The traceback starts at the job's frames: the SDK's own is left out.
        tb = e.__traceback__.tb_next if e.__traceback__ is not None else None
        lines = traceback.format_exception(type(e), e, tb)
        _world().log(_types.Level.ERROR, "".join(lines).rstrip())
    except BaseException:  # out of memory, say: the reason below still says what happened
        pass
    text = str(e)
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _format(part: Any) -> str:
    if isinstance(part, str):
        return part
    try:
        return json.dumps(part, default=str)
    except (TypeError, ValueError):
        return str(part)


def log(level: Level, *parts: Any) -> None:
    """Appends a line to the run's log (stored with the run, streamed live).
    ``parts`` are joined with spaces; non-strings are shown as JSON."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    _world().log(_types.Level[level.upper()], " ".join(_format(p) for p in parts))


def trace(*parts: Any) -> None:
    """Logs a line at ``trace`` level."""
    log("trace", *parts)


def debug(*parts: Any) -> None:
    """Logs a line at ``debug`` level."""
    log("debug", *parts)


def info(*parts: Any) -> None:
    """Logs a line at ``info`` level."""
    log("info", *parts)


def warn(*parts: Any) -> None:
    """Logs a line at ``warn`` level."""
    log("warn", *parts)


def error(*parts: Any) -> None:
    """Logs a line at ``error`` level."""
    log("error", *parts)


def progress(percent: float, message: str = "") -> None:
    """Reports how far the run has come: ``percent`` is rounded and clamped to 0..100."""
    _world().progress(max(0, min(100, round(percent))), str(message))


def checkpoint(state: Any) -> None:
    """Saves ``state`` (anything ``json.dumps`` takes) as the job's
    checkpoint; the next attempt of the same job receives it parsed in
    :attr:`JobInfo.checkpoint`. Each call replaces the previous checkpoint."""
    _world().checkpoint(json.dumps(state, separators=(",", ":")))


def config(key: str) -> Optional[str]:
    """The configuration value ``key`` set on the job's template, or ``None``."""
    return _world().config(key)


def secret(name: str) -> Optional[str]:
    """The value of the secret ``name`` if the job's template grants it as
    readable, else ``None`` (whether or not the secret exists). For HTTP
    prefer a header grant on the template: the host adds the header and the
    job never holds the value. elihu stores ``***`` wherever the value shows
    up in the run's logs, output, error, progress or checkpoint."""
    return _world().secret(name)


def snooze(seconds: float) -> NoReturn:
    """Ends this run now and asks elihu to run the job again after
    ``seconds`` (rounded up to whole milliseconds). It does not return: the
    host stops the guest at once, so nothing after the call runs (no
    ``finally`` either). The run is recorded as ``snoozed``; the attempt is
    given back, so the next run sees the same :attr:`JobInfo.attempt`, and
    the latest :func:`checkpoint` is handed to it, which is where a job keeps
    count of its own snoozes. A node caps the snoozes of one job
    (``max_snoozes``, 100 by default): the snooze past the cap fails the run
    with reason ``snooze_limit``. A delay over 30 days fails the run with
    reason ``error``."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"snooze(seconds) takes a number of seconds, 0 or more; got {seconds!r}")
    _world().snooze(math.ceil(seconds * 1000))
    raise RuntimeError("the host ends the run at a snooze")
