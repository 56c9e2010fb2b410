//! Every example job through the sandboxed runtime, with its exact outcome.

use std::time::{Duration, Instant};

use elihu::runtime::{
    CancelHandle, Ending, FeedBatch, JobInfo, LogLevel, Progress, Reason, RunFeed, RunLimits, RunResult,
};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn hello_greets_and_reads_config() {
    let outcome = run("hello", json!({"name": "Ada"})).await;
    assert_eq!(output(&outcome), json!({"greeting": "Hello, Ada!"}));
    assert_eq!(outcome.ending.result(), RunResult::Succeeded);
    let line = &outcome.logs[0];
    assert_eq!((line.level, line.message.as_str()), (LogLevel::Info, "greeting Ada (job 1, attempt 1)"));

    let rt = runtime();
    let mut req = request("hello", json!({"name": "Bob"}), RunLimits::default());
    req.config = config(&[("greeting", "Howdy")]);
    let outcome = rt.run(&load(rt, "hello"), req).await;
    assert_eq!(output(&outcome), json!({"greeting": "Howdy, Bob!"}));
}

#[tokio::test]
async fn wordfreq_counts_words() {
    let text = "The cat and the hat. The CAT sat; a cat's hat!";
    let outcome = run("wordfreq", json!({"text": text, "top": 3, "stopwords": ["a", "and"]})).await;
    assert_eq!(
        output(&outcome),
        json!({
            "total_words": 9,
            "distinct_words": 5,
            "top": [
                {"word": "the", "count": 3},
                {"word": "cat", "count": 2},
                {"word": "hat", "count": 2}
            ]
        })
    );
}

#[tokio::test]
async fn a_context_that_does_not_fit_is_a_clean_error_not_a_trap() {
    let outcome = run("hello", json!({"name": 42})).await;
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, Reason::Error);
    assert!(message.starts_with("the context does not fit this job: invalid type: integer `42`"), "{message}");
}

#[tokio::test]
async fn flaky_sees_the_attempt_it_is_given() {
    let rt = runtime();
    let job = load(rt, "flaky");
    let attempt = |n: u32| {
        let mut req = request("flaky", json!({"fail_times": 2}), RunLimits::default());
        req.info = JobInfo { id: 9, template: "flaky".into(), attempt: n, max_attempts: 3, checkpoint: None };
        req
    };
    let first = rt.run(&job, attempt(1)).await;
    assert_eq!(failure(&first), (Reason::Error, "failing on purpose: attempt 1 of the 2 planned failures".into()));
    let second = rt.run(&job, attempt(2)).await;
    assert_eq!(failure(&second).1, "failing on purpose: attempt 2 of the 2 planned failures");
    let third = rt.run(&job, attempt(3)).await;
    assert_eq!(output(&third), json!({"attempt": 3, "max_attempts": 3}));
}

#[tokio::test]
async fn progress_saves_a_checkpoint_and_the_next_attempt_resumes_from_it() {
    let rt = runtime();
    let job = load(rt, "progress");
    let feed = RunFeed::new(100);
    let mut req = request("progress", json!({"steps": 5, "fail_after": 2}), RunLimits::default());
    req.info.max_attempts = 2;
    req.feed = Some(feed.clone());
    let first = rt.run(&job, req).await;
    assert_eq!(failure(&first), (Reason::Error, "stopping after step 2 on purpose".into()));
    assert_eq!(first.checkpoint.as_deref(), Some(r#"{"done":2}"#));
    assert_eq!(first.progress, Some(Progress { percent: 40, message: "step 2 of 5".into() }));
    // Nobody took from the feed while the run went: it holds the latest of each.
    assert_eq!(
        feed.take(),
        FeedBatch {
            lines: Vec::new(),
            lines_skipped: 0,
            progress: Some(Progress { percent: 40, message: "step 2 of 5".into() }),
            checkpoint: Some(r#"{"done":2}"#.into()),
        }
    );

    let mut req = request("progress", json!({"steps": 5, "fail_after": 2}), RunLimits::default());
    req.info = JobInfo { id: 1, template: "progress".into(), attempt: 2, max_attempts: 2, checkpoint: first.checkpoint };
    let second = rt.run(&job, req).await;
    assert_eq!(output(&second), json!({"attempt": 2, "resumed_from": 2, "steps": 5}));
    assert_eq!(second.checkpoint.as_deref(), Some(r#"{"done":5}"#));
    assert_eq!(second.progress.unwrap().percent, 100);
    assert_eq!(second.logs[0].message, "resuming after step 2");
}

/// Both ways a run can overstay: busy in wasm (epoch interruption) and
/// blocked in a host call (the host's own timer). Each ends as `timeout` no
/// later than the deadline plus two ticks.
#[tokio::test]
async fn spin_and_sleepy_time_out_within_two_ticks_of_the_deadline() {
    let tick = Duration::from_millis(20);
    let rt = runtime_with_tick(tick);
    let limit = Duration::from_millis(300);
    for (name, context) in [("spin", json!({})), ("sleepy", json!({"seconds": 60}))] {
        let outcome = rt.run(&load(&rt, name), request(name, context, timeout(limit))).await;
        let (reason, message) = failure(&outcome);
        assert_eq!(reason, Reason::Timeout, "{name}: {message}");
        assert_eq!(message, "the run passed its timeout of 300ms");
        assert!(outcome.duration >= limit, "{name} stopped early: {:?}", outcome.duration);
        assert!(outcome.duration <= limit + 2 * tick, "{name} overran: {:?}", outcome.duration);
    }
}

#[tokio::test]
async fn memory_hog_ends_as_memory() {
    let rt = runtime();
    let limits = RunLimits { memory: 32 << 20, ..RunLimits::default() };
    let outcome = rt.run(&load(rt, "memory-hog"), request("memory-hog", json!({}), limits)).await;
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, Reason::Memory, "{message}");
    assert!(message.starts_with("the run hit its memory limit of 32MiB (it tried to grow its memory to"), "{message}");
}

#[tokio::test]
async fn panic_ends_as_trap_with_the_panic_message_in_the_logs() {
    let outcome = run("panic", json!({"message": "the flux capacitor is empty"})).await;
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, Reason::Trap);
    assert!(message.contains("unreachable"), "{message}");
    assert!(message.ends_with("the flux capacitor is empty"), "{message}");
    let stderr: Vec<&str> =
        outcome.logs.iter().filter(|l| l.level == LogLevel::Stderr).map(|l| l.message.as_str()).collect();
    assert!(stderr.contains(&"the flux capacitor is empty"), "{stderr:?}");
    assert_eq!(outcome.logs[0].message, "about to panic");
}

#[tokio::test]
async fn escape_is_denied_everything() {
    // A real listener on loopback: the guest must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let outcome = run("escape", json!({"connect": addr})).await;
    let out = output(&outcome);
    let attempts = out["attempts"].as_array().unwrap();
    let tried: Vec<&str> = attempts.iter().map(|a| a["what"].as_str().unwrap()).collect();
    assert_eq!(
        tried,
        [
            "read /etc/passwd",
            "list /",
            "write /tmp/elihu-escape",
            "read environment variables",
            &format!("connect tcp {addr}"),
            "resolve localhost",
            "bind udp 0.0.0.0:0",
        ]
    );
    for a in attempts {
        assert_eq!(a["denied"], true, "not denied: {a}");
    }
    assert_eq!(out["all_denied"], true);
    assert!(listener.accept().is_err(), "the guest reached the host's listener");
    assert!(!std::path::Path::new("/tmp/elihu-escape").exists());
}

/// Cancel interrupts a guest busy in wasm and one blocked in a host call,
/// both within two ticks. The cancel is sent once the guest has signalled it
/// is running (its first log line), not after a sleep.
#[tokio::test]
async fn cancel_interrupts_a_running_instance_within_two_ticks() {
    let tick = Duration::from_millis(20);
    let rt = runtime_with_tick(tick);
    for (name, context) in [("spin", json!({})), ("sleepy", json!({"seconds": 60}))] {
        let job = load(&rt, name);
        let cancel = CancelHandle::new();
        let feed = RunFeed::new(10);
        let mut req = request(name, context, timeout(Duration::from_secs(60)));
        req.cancel = cancel.clone();
        req.feed = Some(feed.clone());
        let canceller = async {
            feed.changed().await;
            assert_eq!(feed.take().lines.len(), 1, "the job logs when it starts");
            let at = Instant::now();
            cancel.cancel();
            at
        };
        let (outcome, cancelled_at) = tokio::join!(rt.run(&job, req), canceller);
        let waited = cancelled_at.elapsed();
        assert_eq!(failure(&outcome), (Reason::Cancelled, "the run was cancelled".into()));
        assert_eq!(outcome.ending.result(), RunResult::Cancelled);
        assert!(waited <= 2 * tick, "{name}: cancel took {waited:?}");
    }
}

#[tokio::test]
async fn a_run_cancelled_before_it_starts_ends_at_once() {
    let rt = runtime();
    let req = request("spin", json!({}), timeout(Duration::from_secs(60)));
    req.cancel.cancel();
    let outcome = rt.run(&load(rt, "spin"), req).await;
    assert_eq!(failure(&outcome).0, Reason::Cancelled);
}

/// Traps, timeouts, memory bombs, sandbox probes and cancels, all at once on
/// one runtime; afterwards the same runtime still runs `hello` correctly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_survives_every_bad_job() {
    let rt = runtime();
    let short = timeout(Duration::from_millis(300));
    let small = RunLimits { memory: 16 << 20, ..short };
    let cancel = CancelHandle::new();
    let mut cancelled = request("spin", json!({}), timeout(Duration::from_secs(60)));
    cancelled.cancel = cancel.clone();
    let jobs = [
        ("panic", request("panic", json!({"message": "boom"}), short), Some(Reason::Trap)),
        ("spin", request("spin", json!({}), short), Some(Reason::Timeout)),
        ("sleepy", request("sleepy", json!({"seconds": 30}), short), Some(Reason::Timeout)),
        ("memory-hog", request("memory-hog", json!({"chunk_mib": 4}), small), Some(Reason::Memory)),
        ("escape", request("escape", json!({}), short), None),
        ("spin", cancelled, Some(Reason::Cancelled)),
        ("hello", request("hello", json!({"name": "during"}), short), None),
    ];
    let mut handles = Vec::new();
    for (name, req, expected) in jobs {
        let job = load(rt, name);
        handles.push((name, expected, tokio::spawn(async move { runtime().run(&job, req).await })));
    }
    // The cancelled spin must not wait for its 60 s timeout.
    cancel.cancel();
    for (name, expected, handle) in handles {
        let outcome = handle.await.expect("the run task itself never panics");
        assert_eq!(outcome.ending.reason(), expected, "{name}: {:?}", outcome.ending);
    }
    let outcome = run("hello", json!({"name": "after"})).await;
    assert_eq!(outcome.ending, Ending::Succeeded { output: r#"{"greeting":"Hello, after!"}"#.into() });
}
