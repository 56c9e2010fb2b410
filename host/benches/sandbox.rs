//! Microbenchmark of the sandbox alone: instantiate + call of a job, the
//! fixed cost every run pays (fresh Store, WASI context, instance from the
//! pool, call, teardown). By default the carried no-op job; give any other
//! component (a JavaScript or Python job, say) with `ELIHU_BENCH_JOB=FILE.wasm`
//! and its context with `ELIHU_BENCH_CONTEXT=JSON`.
//!
//! Run with `cargo bench -p elihu --bench sandbox`. Prints the median and best
//! per-run time over batches; no statistics library needed.

use std::time::{Duration, Instant};

use elihu::runtime::{JobInfo, RunRequest, Runtime, RuntimeConfig};

fn main() {
    let (name, wasm, context) = match std::env::var_os("ELIHU_BENCH_JOB") {
        Some(path) => {
            let wasm = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.to_string_lossy()));
            let context = std::env::var("ELIHU_BENCH_CONTEXT").unwrap_or_else(|_| "{}".into());
            (path.to_string_lossy().into_owned(), wasm, context)
        }
        None => ("noop".to_string(), elihu::examples::get("noop").expect("the noop example").wasm.to_vec(), "{}".into()),
    };
    // Big components run for milliseconds: fewer, smaller batches.
    let (batch, batches) = if wasm.len() > 4 << 20 { (100, 20) } else { (1_000, 30) };
    // Compiled artifacts kept between bench runs, as a node keeps them.
    let artifact_dir = Some(std::env::temp_dir().join("elihu-bench-artifacts"));
    let rt = Runtime::new(RuntimeConfig { artifact_dir, ..RuntimeConfig::default() }).expect("runtime");
    let job = rt.load(&wasm).unwrap_or_else(|e| panic!("loading {name}: {e}"));
    let request = RunRequest {
        context,
        info: JobInfo { id: 1, template: "bench".into(), attempt: 1, max_attempts: 1, checkpoint: None },
        ..RunRequest::default()
    };
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    tokio.block_on(async {
        for _ in 0..batch * 2 {
            let outcome = rt.run(&job, request.clone()).await;
            assert!(outcome.ending.result() == elihu::model::RunResult::Succeeded, "{:?}", outcome.ending);
        }
        let mut per_run: Vec<Duration> = Vec::with_capacity(batches);
        for _ in 0..batches {
            let start = Instant::now();
            for _ in 0..batch {
                std::hint::black_box(rt.run(&job, request.clone()).await);
            }
            per_run.push(start.elapsed() / batch as u32);
        }
        per_run.sort();
        let micros = |d: Duration| d.as_nanos() as f64 / 1000.0;
        println!(
            "sandbox/{name} instantiate+call: median {:.1} µs/run, best {:.1} µs/run, worst {:.1} µs/run ({} runs in batches of {})",
            micros(per_run[batches / 2]),
            micros(per_run[0]),
            micros(per_run[batches - 1]),
            batch * batches,
            batch
        );
    });
}
