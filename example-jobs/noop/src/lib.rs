//! `noop`: does nothing and returns `null`. Used to measure what a run costs.
use elihu_guest::{JobInfo, job};

#[job]
fn run(_ctx: serde_json::Value, _job: &JobInfo) -> Result<(), String> {
    Ok(())
}
