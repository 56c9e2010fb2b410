//! `memory-hog`: allocates (and touches) memory until something stops it.
use elihu_guest::{JobInfo, job};
use serde::Deserialize;

#[derive(Deserialize)]
struct Context {
    #[serde(default = "one")]
    chunk_mib: usize,
}

fn one() -> usize {
    1
}

#[job]
fn run(ctx: Context, _job: &JobInfo) -> Result<(), String> {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        held.push(vec![0xA5; ctx.chunk_mib << 20]);
        if held.len() % 16 == 0 {
            elihu_guest::info!("holding {} MiB", held.len() * ctx.chunk_mib);
        }
    }
}
