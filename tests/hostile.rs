//! The attack suite: the `hostile` example job floods or oversizes every
//! stream a guest has to its host, each on a node of its own (an `elihu
//! serve` process, so its memory can be measured alone). Every attack must
//! end with its exact reason, keep the node's peak RSS within 100 MiB of its
//! baseline and the database within what the caps allow, and leave the node
//! able to run the next `hello` job.

use std::time::Duration;

use elihu::runtime::{GuestLimits, LogLevel, Reason, RunResult};
use elihu::store::{Run, RunFilter, TemplateDefaults};
use elihu::{Client, Enqueue, Event};
use serde_json::{Value, json};

use crate::support::node::*;
use crate::support::process::*;

/// The most a node's peak RSS may grow over its baseline during one attack.
const RSS_CEILING_KIB: u64 = 100 << 10;

/// A node of its own on a fresh SQLite database, with `hostile` and `hello`
/// pushed and both run once, so that compiling them is not counted.
struct Arena {
    db: TestDb,
    client: Client,
    server: Server,
    baseline_kib: u64,
}

impl Arena {
    async fn start() -> Arena {
        let db = TestDb::new();
        let client = db.client().await;
        push(&client, "hostile", TemplateDefaults { max_attempts: 1, timeout_ms: 20_000, ..TemplateDefaults::default() }).await;
        push(&client, "hello", TemplateDefaults { max_attempts: 1, ..TemplateDefaults::default() }).await;
        let server = Server::start(&db, &["--queue", "default=2"]);
        let mut arena = Arena { db, client, server, baseline_kib: 0 };
        arena.hello_succeeds().await;
        let quiet = arena.run_to_end(Enqueue::new("hostile", json!({"mode": "quiet"}))).await;
        assert_eq!(quiet.result, Some(RunResult::Succeeded), "{quiet:?}");
        arena.baseline_kib = arena.status("VmRSS");
        arena
    }

    /// A field of the node's `/proc/PID/status`, in KiB.
    fn status(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server.child.id())).expect("the node is alive");
        let line = status.lines().find(|l| l.starts_with(&format!("{field}:"))).unwrap_or_else(|| panic!("no {field}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// Bytes of the database on disk (with its write-ahead log).
    fn db_bytes(&self) -> u64 {
        let path = self.db.path();
        let wal = path.with_extension("db-wal");
        [path, wal].iter().map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).sum()
    }

    async fn run_to_end(&self, request: Enqueue) -> Run {
        let id = self.client.enqueue(request).await.expect("enqueued").id();
        until(&format!("job {id} ends"), || async { self.client.job_get(id).await.unwrap().is_none() }).await;
        let runs = self.client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
        runs.into_iter().next().expect("the job ran")
    }

    /// Runs one attack and checks the node's memory and the database's
    /// growth against the bounds; returns the run.
    async fn attack(&self, context: Value, timeout: Option<Duration>) -> Run {
        // Resets the node's peak RSS (VmHWM) to its current RSS.
        std::fs::write(format!("/proc/{}/clear_refs", self.server.child.id()), "5").expect("peak RSS resets");
        let db_before = self.db_bytes();
        let run = self.run_to_end(Enqueue { timeout, ..Enqueue::new("hostile", context.clone()) }).await;
        let peak = self.status("VmHWM");
        assert!(
            peak <= self.baseline_kib + RSS_CEILING_KIB,
            "{context}: the node's peak RSS was {peak} KiB against a baseline of {} KiB",
            self.baseline_kib
        );
        let stored = stored_bytes(&run);
        assert!(stored <= cap_bytes(), "{context}: the run stores {stored} bytes; the caps allow {}", cap_bytes());
        let grown = self.db_bytes().saturating_sub(db_before);
        assert!(grown <= 2 * cap_bytes() as u64, "{context}: the database grew by {grown} bytes");
        run
    }

    async fn hello_succeeds(&self) {
        let run = self.run_to_end(Enqueue::new("hello", json!({"name": "after"}))).await;
        assert_eq!(run.result, Some(RunResult::Succeeded), "{run:?}");
        assert_eq!(serde_json::from_str::<Value>(run.output.as_deref().unwrap()).unwrap(), json!({"greeting": "Hello, after!"}));
    }
}

/// What a run keeps in its row, in bytes.
fn stored_bytes(run: &Run) -> usize {
    let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
    text(&run.message)
        + text(&run.output)
        + text(&run.checkpoint)
        + serde_json::to_string(&run.logs).unwrap().len()
        + run.progress.as_ref().map_or(0, |p| p.message.len())
}

/// The most a run may store under the default caps: output, message, the
/// checkpoint (twice: on the run and on its job), a full log with its JSON
/// framing, a progress message, and room for the notes of what was cut.
fn cap_bytes() -> usize {
    let l = GuestLimits::default();
    l.max_output_bytes + l.max_message_bytes + 2 * l.max_checkpoint_bytes + l.max_log_bytes + l.max_log_lines * 80
        + l.max_progress_message_bytes
        + (16 << 10)
}

fn host_lines(run: &Run) -> Vec<&str> {
    run.logs.iter().filter(|l| l.level == LogLevel::Host).map(|l| l.message.as_str()).collect()
}

fn output(run: &Run) -> Value {
    assert_eq!(run.result, Some(RunResult::Succeeded), "{run:?}");
    serde_json::from_str(run.output.as_deref().unwrap()).unwrap()
}

#[tokio::test]
async fn a_huge_error_message_is_truncated_and_the_cut_recorded() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "huge-error"}), None).await;
    assert_eq!((run.result, run.reason), (Some(RunResult::Failed), Some(Reason::Error)));
    let message = run.message.as_deref().unwrap();
    assert!(message.starts_with("xxxx") && message.ends_with(" … [truncated at 64KiB of 19.1MiB]"), "{}", &message[message.len() - 60..]);
    assert!(message.len() < (64 << 10) + 64);
    assert_eq!(host_lines(&run), ["the failure message was truncated at 64KiB of 19.1MiB"]);
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_huge_output_fails_the_run() {
    let arena = Arena::start().await;
    // 10 MB: serialising it doubles it in the guest, and the guest has 64 MiB.
    let run = arena.attack(json!({"mode": "huge-output", "bytes": 10_000_000}), None).await;
    assert_eq!(run.reason, Some(Reason::Error), "{run:?}");
    assert_eq!(run.message.as_deref(), Some("the output is 9.5MiB; the limit is 1MiB"));
    assert_eq!(run.output, None);
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_huge_checkpoint_is_refused_and_the_previous_one_stands() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "huge-checkpoint", "bytes": 10_000_000}), None).await;
    assert_eq!(output(&run)["calls"], 2);
    assert_eq!(run.checkpoint.as_deref(), Some(r#""small""#));
    assert_eq!(
        host_lines(&run),
        ["1 checkpoints refused: the largest was 9.5MiB and the limit is 1MiB; the previous checkpoint stands"]
    );
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_huge_log_line_and_a_huge_progress_message_are_cut() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "huge-log-line"}), None).await;
    assert_eq!(output(&run)["calls"], 1);
    let line = &run.logs[0];
    assert_eq!(line.level, LogLevel::Info);
    assert!(line.message.ends_with(" … [line cut at 16KiB of 19.1MiB]"), "{}", &line.message[line.message.len() - 50..]);
    assert_eq!(host_lines(&run), ["1 log lines cut at 16KiB (the longest was 19.1MiB)"]);

    let run = arena.attack(json!({"mode": "huge-progress"}), None).await;
    assert_eq!(output(&run)["calls"], 1);
    let progress = run.progress.as_ref().unwrap();
    assert_eq!((progress.percent, progress.message.len()), (50, 1 << 10));
    assert_eq!(host_lines(&run), ["1 progress messages cut at 1KiB (the longest was 19.1MiB)"]);
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_log_flood_is_kept_to_the_caps_and_the_rest_counted() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "log-flood"}), None).await;
    assert_eq!(output(&run)["calls"], 2_000_000);
    let limits = GuestLimits::default();
    assert_eq!(run.logs.len(), limits.max_log_lines + 1);
    assert_eq!(run.logs[9_999].message, "flood line 9999");
    assert_eq!(host_lines(&run), ["1990000 log lines dropped: a run keeps at most 10000 lines and 256KiB of log"]);
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_stdout_flood_and_an_endless_line_are_kept_to_the_caps() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "stdout-flood", "count": 1_000_000}), None).await;
    assert_eq!(output(&run)["calls"], 1_000_000);
    assert_eq!(run.logs[0].level, LogLevel::Stdout);
    assert_eq!(run.logs[0].message, "stdout flood line 0");
    // The log filled up with the flood: the endless line's cut is counted, not kept.
    let notes = host_lines(&run);
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(notes[0].ends_with(" log lines dropped: a run keeps at most 10000 lines and 256KiB of log"), "{notes:?}");
    assert_eq!(notes[1], "1 log lines cut at 16KiB (the longest was 19.1MiB)");
    arena.hello_succeeds().await;
}

/// The defect of issue 10: two million progress reports grew the node by
/// 158 MB and kept the run `running` for minutes after the guest finished.
#[tokio::test]
async fn a_progress_flood_is_coalesced_and_the_outcome_recorded_at_once() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "progress-flood"}), None).await;
    assert_eq!(output(&run)["calls"], 2_000_000);
    let progress = run.progress.as_ref().unwrap();
    assert_eq!((progress.percent, progress.message.as_str()), ((1_999_999 % 101) as u8, "flooding"));
    assert!(host_lines(&run).is_empty());
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_checkpoint_flood_keeps_the_latest_checkpoint() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "checkpoint-flood", "count": 200_000}), None).await;
    assert_eq!(output(&run)["calls"], 200_000);
    let checkpoint: String = serde_json::from_str(run.checkpoint.as_deref().unwrap()).unwrap();
    assert_eq!(checkpoint, format!("199999:{}", "c".repeat(1000)));
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn deep_recursion_traps() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "deep-recursion"}), None).await;
    assert_eq!(run.reason, Some(Reason::Trap), "{run:?}");
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn one_huge_allocation_hits_the_memory_limit() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "huge-alloc", "bytes": 1u64 << 30}), None).await;
    assert_eq!(run.reason, Some(Reason::Memory), "{run:?}");
    assert!(run.message.as_deref().unwrap().starts_with("the run hit its memory limit of 64MiB"), "{run:?}");
    arena.hello_succeeds().await;
}

#[tokio::test]
async fn a_guest_blocked_in_a_host_call_times_out() {
    let arena = Arena::start().await;
    let run = arena.attack(json!({"mode": "blocked"}), Some(Duration::from_millis(500))).await;
    assert_eq!(run.reason, Some(Reason::Timeout), "{run:?}");
    assert_eq!(run.message.as_deref(), Some("the run passed its timeout of 500ms"));
    arena.hello_succeeds().await;
}

/// A graceful shutdown while a run floods progress: the run is cut short,
/// recorded as `shutdown`, and its job queued again with the attempt given back.
#[tokio::test]
async fn a_shutdown_during_a_progress_flood_records_the_run_and_requeues_the_job() {
    let db = TestDb::new();
    let client = db.client().await;
    push(&client, "hostile", TemplateDefaults { max_attempts: 1, ..TemplateDefaults::default() }).await;
    let mut events = client.subscribe();
    let node = elihu::Node::start(
        client.clone(),
        elihu::NodeConfig { shutdown_grace: Duration::from_millis(50), ..node_config(&[("default", 1)]) },
    )
    .await
    .unwrap();
    let id = client.enqueue(Enqueue::new("hostile", json!({"mode": "progress-flood", "count": 0}))).await.unwrap().id();
    next_event(&mut events, |e| matches!(e, Event::Progress { job_id, .. } if *job_id == id)).await;
    let report = node.shutdown().await;
    assert_eq!((report.finished, report.interrupted), (0, 1));
    let runs = client.run_list(&RunFilter { job_id: Some(id), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].result, runs[0].reason), (Some(RunResult::Failed), Some(Reason::Shutdown)));
    assert_eq!(runs[0].progress.as_ref().map(|p| p.message.as_str()), Some("flooding"));
    let job = client.job_get(id).await.unwrap().expect("queued again");
    assert_eq!((job.state, job.attempt), (elihu::store::JobState::Available, 0));
}
