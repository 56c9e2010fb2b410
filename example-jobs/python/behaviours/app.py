"""behaviours: one component showing each way a run can go, chosen by the
context's `mode` (one component rather than five keeps builds short: each
Python component carries the whole interpreter).

- flaky:    fails its first `fail_times` attempts (reason `error`), then succeeds
- throw:    a bug (a key the context lacks): the run fails with the exception's
            class and message, and its traceback is logged
- spin:     loops forever; only a timeout or a cancel ends it
- memory:   allocates `chunk_mib` MiB at a time until the memory limit stops it
- progress: works through `steps`, reporting progress and saving a checkpoint
            after each; the first attempt fails after `fail_after` steps and the
            next one resumes from the checkpoint
- snooze:   snoozes `times` times, `seconds` each, counting in its checkpoint,
            then succeeds (on the same attempt)
"""

from elihu_guest import JobInfo, checkpoint, info, job, progress, snooze, warn


def flaky(ctx: dict, job: JobInfo) -> dict:
    if job.attempt <= ctx["fail_times"]:
        warn(f"attempt {job.attempt} fails on purpose")
        raise Exception(f"failing on purpose: attempt {job.attempt} of the {ctx['fail_times']} planned failures")
    return {"attempt": job.attempt, "max_attempts": job.max_attempts}


def throw(ctx: dict, job: JobInfo) -> dict:
    info("about to read a key the context lacks")
    return ctx["missing"]


def spin(ctx: dict, job: JobInfo) -> None:
    info("spinning forever")
    n = 0
    while True:
        n = (n + 1) & 0xFFFF


def memory(ctx: dict, job: JobInfo) -> None:
    mib = ctx.get("chunk_mib", 1)
    held = []
    while True:
        held.append(bytearray(b"\xa5" * (mib << 20)))
        if len(held) % 16 == 0:
            info(f"holding {len(held) * mib} MiB")


def steps(ctx: dict, job: JobInfo) -> dict:
    resumed_from = (job.checkpoint or {}).get("done", 0)
    if resumed_from > 0:
        info(f"resuming after step {resumed_from}")
    total = ctx["steps"]
    for done in range(resumed_from + 1, total + 1):
        progress(done * 100 // total, f"step {done} of {total}")
        checkpoint({"done": done})
        if job.attempt == 1 and ctx.get("fail_after") == done:
            raise Exception(f"stopping after step {done} on purpose")
    return {"attempt": job.attempt, "resumed_from": resumed_from, "steps": total}


def snoozes(ctx: dict, job: JobInfo) -> dict:
    snoozed = job.checkpoint or 0
    if snoozed < ctx["times"]:
        checkpoint(snoozed + 1)
        info(f"snooze {snoozed + 1} of {ctx['times']}: back in {ctx['seconds']} s")
        snooze(ctx["seconds"])
    return {"snoozed": snoozed, "attempt": job.attempt}


MODES = {"flaky": flaky, "throw": throw, "spin": spin, "memory": memory, "progress": steps, "snooze": snoozes}


@job
def run(ctx: dict, job: JobInfo):
    return MODES[ctx["mode"]](ctx, job)
