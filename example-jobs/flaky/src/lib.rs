//! `flaky`: fails its first `fail_times` attempts, then succeeds. Shows retries.
use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    fail_times: u32,
}

#[derive(Serialize)]
struct Output {
    attempt: u32,
    max_attempts: u32,
}

#[job]
fn run(ctx: Context, job: &JobInfo) -> Result<Output, String> {
    if job.attempt <= ctx.fail_times {
        elihu_guest::warn!("attempt {} fails on purpose", job.attempt);
        return Err(format!(
            "failing on purpose: attempt {} of the {} planned failures",
            job.attempt, ctx.fail_times
        ));
    }
    Ok(Output { attempt: job.attempt, max_attempts: job.max_attempts })
}
