//! `spin`: loops forever. Only a timeout or a cancel ends it.
use elihu_guest::{JobInfo, job};

#[job]
fn run(_ctx: serde_json::Value, _job: &JobInfo) -> Result<(), String> {
    elihu_guest::info!("spinning forever");
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
