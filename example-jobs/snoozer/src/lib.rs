//! `snoozer`: snoozes `times` times, `seconds` each, then succeeds. It counts
//! its snoozes in its checkpoint, which every snoozed run hands to the next.
use std::time::Duration;

use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    times: u32,
    seconds: f64,
}

#[derive(Serialize)]
struct Output {
    snoozed: u32,
    attempt: u32,
}

#[job]
fn run(ctx: Context, job: &JobInfo) -> Result<Output, String> {
    let snoozed: u32 = match job.checkpoint_as() {
        Some(count) => count.map_err(|e| format!("the checkpoint is not a count of snoozes: {e}"))?,
        None => 0,
    };
    if snoozed < ctx.times {
        elihu_guest::checkpoint(&(snoozed + 1)).map_err(|e| e.to_string())?;
        elihu_guest::info!("snooze {} of {}: back in {} s", snoozed + 1, ctx.times, ctx.seconds);
        elihu_guest::snooze(Duration::from_secs_f64(ctx.seconds));
    }
    Ok(Output { snoozed, attempt: job.attempt })
}
