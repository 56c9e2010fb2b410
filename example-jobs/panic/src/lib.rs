//! `panic`: panics with the message from its context.
use elihu_guest::{JobInfo, job};
use serde::Deserialize;

#[derive(Deserialize)]
struct Context {
    message: String,
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<(), String> {
    elihu_guest::info!("about to panic");
    panic!("{}", ctx.message);
}
