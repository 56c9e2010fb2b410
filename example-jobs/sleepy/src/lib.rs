//! `sleepy`: sleeps through WASI clocks, blocked in a host call the whole time.
use std::time::{Duration, Instant};

use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    seconds: f64,
}

#[derive(Serialize)]
struct Output {
    slept_ms: u128,
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    elihu_guest::info!("sleeping {} s", ctx.seconds);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(ctx.seconds));
    Ok(Output { slept_ms: start.elapsed().as_millis() })
}
