//! `hostile`: a job that attacks its node, one stream from guest to host at
//! a time: floods of logs, stdout, progress and checkpoints; a huge error,
//! output, checkpoint, log line or progress message; deep recursion; one
//! huge allocation; a guest blocked in a host call. Every attack must end
//! with a precise reason and leave the node and its database within bounds.
use std::io::Write;

use elihu_guest::{JobInfo, job};
use serde::{Deserialize, Serialize};

#[derive(Deserialize)]
struct Context {
    mode: String,
    #[serde(default = "default_count")]
    count: u64,
    #[serde(default = "default_bytes")]
    bytes: usize,
}

fn default_count() -> u64 {
    2_000_000
}

fn default_bytes() -> usize {
    20_000_000
}

#[derive(Serialize)]
struct Output {
    mode: String,
    calls: u64,
}

/// Calls `f` `count` times, or for ever when `count` is 0.
fn flood(count: u64, mut f: impl FnMut(u64)) -> u64 {
    let mut i = 0;
    while count == 0 || i < count {
        f(i);
        i += 1;
    }
    i
}

#[inline(never)]
fn recurse(depth: u64, trail: &mut [u8; 64]) -> u64 {
    trail[(depth % 64) as usize] = depth as u8;
    // The addition after the call keeps it from becoming a loop.
    recurse(depth + 1, trail) + trail[0] as u64
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<Output, String> {
    let huge = || "x".repeat(ctx.bytes);
    let calls = match ctx.mode.as_str() {
        "quiet" => 0,
        "log-flood" => flood(ctx.count, |i| elihu_guest::info!("flood line {i}")),
        "stdout-flood" => {
            let mut out = std::io::stdout().lock();
            let calls = flood(ctx.count, |i| {
                let _ = writeln!(out, "stdout flood line {i}");
            });
            // And one line that never ends.
            let _ = out.write_all(huge().as_bytes());
            calls
        }
        "progress-flood" => flood(ctx.count, |i| elihu_guest::progress((i % 101) as u8, "flooding")),
        "checkpoint-flood" => {
            let state = "c".repeat(1000);
            flood(ctx.count, |i| {
                let _ = elihu_guest::checkpoint(&format!("{i}:{state}"));
            })
        }
        "huge-error" => return Err(huge()),
        "huge-output" => return Ok(Output { mode: huge(), calls: 0 }),
        "huge-checkpoint" => {
            elihu_guest::checkpoint(&"small").map_err(|e| e.to_string())?;
            elihu_guest::checkpoint(&huge()).map_err(|e| e.to_string())?;
            2
        }
        "huge-log-line" => {
            elihu_guest::info!("{}", huge());
            1
        }
        "huge-progress" => {
            elihu_guest::progress(50, huge());
            1
        }
        "deep-recursion" => recurse(0, &mut [0; 64]),
        "huge-alloc" => {
            // One allocation of `bytes`; black_box keeps it from being elided.
            let block: Vec<u8> = std::hint::black_box(Vec::with_capacity(ctx.bytes));
            block.capacity() as u64
        }
        "blocked" => {
            // A WASI sleep: the guest waits inside a host call for an hour.
            std::thread::sleep(std::time::Duration::from_secs(3600));
            1
        }
        other => return Err(format!("unknown mode `{other}`")),
    };
    Ok(Output { mode: ctx.mode, calls })
}
