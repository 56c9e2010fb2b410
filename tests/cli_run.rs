//! `elihu run`: the job author's local loop, driven as a user would drive it.

use std::process::{Command, Output};

use crate::support::process::{text, wasm};
use crate::support::*;

fn elihu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elihu")).args(args).output().expect("elihu runs")
}

#[test]
fn runs_a_job_printing_logs_and_output() {
    let schema = schema_path("progress");
    let out = elihu(&[
        "run",
        &wasm("progress"),
        "--context",
        r#"{"steps": 2}"#,
        "--schema",
        schema.to_str().unwrap(),
    ]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let output: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(output, serde_json::json!({"attempt": 1, "resumed_from": 0, "steps": 2}));
    // Reports are shown coalesced to the latest; the last ones always.
    assert!(stderr.contains("[checkpoint] {\"done\":2}\n"), "{stderr}");
    assert!(stderr.contains("[100%] step 2 of 2\n"), "{stderr}");
    assert!(stderr.contains("succeeded in"), "{stderr}");
}

#[test]
fn passes_config_and_checkpoint() {
    let out = elihu(&["run", &wasm("hello"), "--context", r#"{"name":"Ada"}"#, "--config", "greeting=Ahoy"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("\"greeting\": \"Ahoy, Ada!\""));
    let out = elihu(&["run", &wasm("progress"), "--context", r#"{"steps":3}"#, "--checkpoint", r#"{"done":2}"#]);
    assert!(text(&out.stdout).contains("\"resumed_from\": 2"), "{}", text(&out.stderr));
}

#[test]
fn a_context_that_breaks_the_schema_lists_every_violation() {
    let schema = schema_path("wordfreq");
    let out = elihu(&[
        "run",
        &wasm("wordfreq"),
        "--context",
        r#"{"text": "", "top": 0, "stopwords": ["ok", "two words"]}"#,
        "--schema",
        schema.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    for pointer in ["at /text:", "at /top:", "at /stopwords/1:"] {
        assert!(stderr.contains(pointer), "missing {pointer} in {stderr}");
    }
    assert!(out.stdout.is_empty());
}

#[test]
fn a_failed_run_exits_non_zero_with_the_reason() {
    let out = elihu(&["run", &wasm("spin"), "--timeout", "200ms"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("failed (timeout) after"), "{stderr}");
    assert!(stderr.contains("the run passed its timeout of 200ms"), "{stderr}");

    let out = elihu(&["run", &wasm("memory-hog"), "--memory", "16MiB"]);
    assert!(text(&out.stderr).contains("failed (memory)"), "{}", text(&out.stderr));

    let out = elihu(&["run", &wasm("flaky"), "--context", r#"{"fail_times": 1}"#]);
    assert!(text(&out.stderr).contains("failed (error)"), "{}", text(&out.stderr));
}

#[test]
fn bad_inputs_are_named() {
    let out = elihu(&["run", env!("CARGO_BIN_EXE_elihu")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("this file is not WebAssembly"), "{}", text(&out.stderr));

    let out = elihu(&["run", &wasm("other-world")]);
    assert!(text(&out.stderr).contains("it has no `run` export"), "{}", text(&out.stderr));

    let out = elihu(&["run", &wasm("hello"), "--memory", "lots"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("`lots` is not a size"), "{}", text(&out.stderr));

    let out = elihu(&["run", &wasm("hello"), "--context", "{name"]);
    assert!(text(&out.stderr).contains("the context is not valid JSON"), "{}", text(&out.stderr));
}

#[test]
fn runs_a_carried_example_checking_its_schema() {
    let out = elihu(&["run", "--example", "wordfreq", "--context", r#"{"text": "b a b", "top": 1}"#]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let output: serde_json::Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(output["top"], serde_json::json!([{"word": "b", "count": 2}]));

    let out = elihu(&["run", "--example", "wordfreq", "--context", r#"{"txt": "typo"}"#]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("the wordfreq example's schema"), "{}", text(&out.stderr));

    let out = elihu(&["run", "--example", "nope"]);
    assert!(text(&out.stderr).contains("there is no example job `nope`; the examples are: hello, wordfreq"));
}
