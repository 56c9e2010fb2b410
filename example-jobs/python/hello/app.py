"""hello: greets a name from the context; reads the `greeting` config value.
The smallest useful job, and the one `elihu bench --job python` runs."""

from elihu_guest import JobInfo, config, info, job


@job
def run(ctx: dict, job: JobInfo) -> dict:
    info(f"greeting {ctx['name']} (job {job.id}, attempt {job.attempt})")
    word = config("greeting") or "Hello"
    return {"greeting": f"{word}, {ctx['name']}!"}
