//! Microbenchmark of the sandbox alone: instantiate + call of the no-op job,
//! the fixed cost every run pays (fresh Store, WASI context, instance from the
//! pool, call, teardown).
//!
//! Run with `cargo bench -p elihu --bench sandbox`. Prints the median and best
//! per-run time over batches; no statistics library needed.

use std::time::{Duration, Instant};

use elihu::runtime::{JobInfo, RunRequest, Runtime, RuntimeConfig};

const BATCH: usize = 1_000;
const BATCHES: usize = 30;

fn main() {
    let rt = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let noop = elihu::examples::get("noop").expect("the noop example");
    let job = rt.load(noop.wasm).expect("noop loads");
    let request = RunRequest {
        context: "{}".into(),
        info: JobInfo { id: 1, template: "noop".into(), attempt: 1, max_attempts: 1, checkpoint: None },
        ..RunRequest::default()
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        for _ in 0..BATCH * 2 {
            assert!(rt.run(&job, request.clone()).await.ending.result() == elihu::model::RunResult::Succeeded);
        }
        let mut per_run: Vec<Duration> = Vec::with_capacity(BATCHES);
        for _ in 0..BATCHES {
            let start = Instant::now();
            for _ in 0..BATCH {
                std::hint::black_box(rt.run(&job, request.clone()).await);
            }
            per_run.push(start.elapsed() / BATCH as u32);
        }
        per_run.sort();
        let micros = |d: Duration| d.as_nanos() as f64 / 1000.0;
        println!(
            "sandbox/noop instantiate+call: median {:.1} µs/run, best {:.1} µs/run, worst {:.1} µs/run ({} runs in batches of {})",
            micros(per_run[BATCHES / 2]),
            micros(per_run[0]),
            micros(per_run[BATCHES - 1]),
            BATCH * BATCHES,
            BATCH
        );
    });
}
