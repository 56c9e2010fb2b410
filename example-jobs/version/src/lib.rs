//! `version` (and `version-2`, the same source built as version 2.0.0):
//! sleeps as long as asked, then answers with the version of the component
//! that ran, so a test can tell which component a run executed.
use std::time::Duration;

use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    #[serde(default)]
    seconds: f64,
}

#[derive(Serialize)]
struct Output {
    version: &'static str,
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    std::thread::sleep(Duration::from_secs_f64(ctx.seconds));
    Ok(Output { version: env!("CARGO_PKG_VERSION") })
}
