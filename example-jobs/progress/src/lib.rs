//! `progress`: works through steps, reporting progress and saving a checkpoint
//! after each; a later attempt resumes from the checkpoint.
use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    steps: u32,
    /// On the first attempt only, fail after completing this many steps.
    #[serde(default)]
    fail_after: Option<u32>,
}

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    done: u32,
}

#[derive(Serialize)]
struct Output {
    attempt: u32,
    resumed_from: u32,
    steps: u32,
}

#[job]
fn run(ctx: Context, job: &JobInfo) -> Result<Output, String> {
    let resumed_from = match job.checkpoint_as::<Checkpoint>() {
        Some(Ok(c)) => c.done,
        Some(Err(e)) => return Err(format!("unreadable checkpoint: {e}")),
        None => 0,
    };
    if resumed_from > 0 {
        elihu_guest::info!("resuming after step {resumed_from}");
    }
    for step in resumed_from..ctx.steps {
        let done = step + 1;
        elihu_guest::progress((done * 100 / ctx.steps) as u8, format!("step {done} of {}", ctx.steps));
        elihu_guest::checkpoint(&Checkpoint { done }).map_err(|e| e.to_string())?;
        if job.attempt == 1 && ctx.fail_after == Some(done) {
            return Err(format!("stopping after step {done} on purpose"));
        }
    }
    Ok(Output { attempt: job.attempt, resumed_from, steps: ctx.steps })
}
