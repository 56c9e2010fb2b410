//! The job author's loop: `elihu new` in each language followed by the
//! project's own build command, its own tests and `elihu run`; and the
//! compiled-artifact cache that `elihu run`, `template push` and nodes share
//! (`elihu cache ls|prune`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use elihu::model::Digest;

use crate::support::polyglot::{Lang, check_toolchain, example_wasm, run_ok, target_dir};
use crate::support::process::text;

/// `elihu ARGS` in `dir`, with `cache` as its artifact cache and a database there.
fn elihu(dir: &Path, cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_elihu"))
        .args(args)
        .current_dir(dir)
        .env("ELIHU_CACHE_DIR", cache)
        .env("ELIHU_DATABASE_URL", dir.join("elihu.db"))
        .env_remove("ELIHU_CONFIG_FILE")
        .output()
        .expect("elihu runs")
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "exit {:?}\nstdout: {stdout}\nstderr: {stderr}", out.status);
    (stdout, stderr)
}

/// `elihu new NAME --lang LANG` in a fresh directory; returns the project.
fn new_project(root: &Path, name: &str, lang: &str) -> PathBuf {
    let (stdout, _) = ok(&elihu(root, root, &["new", name, "--lang", lang]));
    assert!(stdout.starts_with(&format!("created {name}, a job in ")), "{stdout}");
    root.join(name)
}

/// The scaffold's next step, `elihu run` with its schema and a config
/// value, prints the greeting and says it compiled the component.
fn run_scaffolded(project: &Path, wasm: &Path) {
    let cache = project.join("artifact-cache");
    let wasm = wasm.to_str().unwrap();
    let context = r#"{"name": "Ada"}"#;
    let (stdout, stderr) =
        ok(&elihu(project, &cache, &["run", wasm, "--schema", "schema.json", "--context", context, "--config", "greeting=Ahoy"]));
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!({"greeting": "Ahoy, Ada!"}));
    assert!(stderr.contains("[ host] compiled ") && stderr.contains("[ info] greeting Ada (attempt 1 of 1)"), "{stderr}");
    // The schema is the scaffold's: a context without a name is refused.
    let out = elihu(project, &cache, &["run", wasm, "--schema", "schema.json", "--context", "{}"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// cargo for a project outside this workspace: the outer cargo's settings
/// are for the host crate, and its target directory keeps the scaffold's
/// dependencies compiled between test runs.
fn cargo(project: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    for (key, _) in std::env::vars() {
        if (key.starts_with("CARGO_") && key != "CARGO_HOME") || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(project).env("CARGO_TARGET_DIR", target_dir().join("polyglot").join("new-rust-target"));
    cmd
}

#[test]
fn a_new_rust_job_builds_tests_and_runs() {
    let root = tempfile::tempdir().unwrap();
    let project = new_project(root.path(), "my-job", "rust");
    run_ok(cargo(&project).args(["build", "--release", "--target", "wasm32-wasip2"]), "cargo build");
    let out = run_ok(cargo(&project).arg("test"), "cargo test");
    assert!(text(&out.stdout).contains("test result: ok. 2 passed"), "{}", text(&out.stdout));
    let wasm = target_dir().join("polyglot/new-rust-target/wasm32-wasip2/release/my_job.wasm");
    run_scaffolded(&project, &wasm);
}

#[test]
fn a_new_javascript_job_builds_tests_and_runs() {
    check_toolchain(Lang::Js);
    let root = tempfile::tempdir().unwrap();
    let project = new_project(root.path(), "js-job", "js");
    // One command: it installs what the build needs, then builds.
    run_ok(Command::new("npm").args(["run", "build"]).current_dir(&project), "npm run build");
    let out = run_ok(Command::new("npm").arg("test").current_dir(&project), "npm test");
    assert!(text(&out.stdout).contains("# pass 2\n# fail 0"), "{}", text(&out.stdout));
    run_scaffolded(&project, &project.join("js-job.wasm"));
}

#[test]
fn a_new_python_job_builds_tests_and_runs() {
    check_toolchain(Lang::Python);
    let root = tempfile::tempdir().unwrap();
    let project = new_project(root.path(), "py-job", "python");
    // One command: it makes .venv with componentize-py on first use, then builds.
    run_ok(Command::new("python3").arg("build.py").current_dir(&project), "python3 build.py");
    let out = run_ok(Command::new("python3").args(["-m", "unittest"]).current_dir(&project), "python3 -m unittest");
    assert!(text(&out.stderr).contains("Ran 2 tests") && text(&out.stderr).ends_with("OK\n"), "{}", text(&out.stderr));
    run_scaffolded(&project, &project.join("py-job.wasm"));
}

#[test]
fn new_refuses_a_bad_name_and_a_non_empty_directory() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("taken")).unwrap();
    std::fs::write(root.path().join("taken/notes.txt"), "mine").unwrap();
    let out = elihu(root.path(), root.path(), &["new", "taken", "--lang", "python"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("taken already exists and is not empty"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_dir(root.path().join("taken")).unwrap().count(), 1, "nothing was written");

    let out = elihu(root.path(), root.path(), &["new", "My_Job", "--lang", "js"]);
    assert!(text(&out.stderr).contains("`My_Job` cannot name a job"), "{}", text(&out.stderr));
    assert!(!root.path().join("My_Job").exists());

    let out = elihu(root.path(), root.path(), &["new", "fine", "--lang", "cobol"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("possible values: rust, js, python"), "{}", text(&out.stderr));
}

/// The second `elihu run` of a JavaScript job, a new process, loads the code
/// the first one compiled; a push on the same machine does not compile again.
#[test]
fn the_second_run_of_a_javascript_job_loads_it_from_the_artifact_cache() {
    let wasm = example_wasm(Lang::Js, "hello");
    let wasm = wasm.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args = ["run", wasm, "--context", r#"{"name": "Ada"}"#];
    let (stdout, first) = ok(&elihu(dir.path(), &cache, &args));
    assert!(stdout.contains("Hello, Ada!"), "{stdout}");
    assert!(first.starts_with("[ host] compiled hello in "), "{first}");

    let (stdout, second) = ok(&elihu(dir.path(), &cache, &args));
    assert!(stdout.contains("Hello, Ada!"), "{stdout}");
    assert!(second.starts_with("[ host] loaded hello from the artifact cache in "), "{second}");
    assert!(!second.contains("compiled"), "{second}");

    let schema = crate::support::polyglot::example_schema(Lang::Js, "hello");
    let (stdout, _) = ok(&elihu(dir.path(), &cache, &["template", "push", "greet", wasm, "--schema", schema.to_str().unwrap()]));
    assert!(stdout.starts_with("template greet version 1 (") && stdout.ends_with("; compiled code from the artifact cache)\n"), "{stdout}");
}

/// `elihu cache ls` lists what is cached and which build can load it;
/// `prune` removes what other builds wrote, `--all` everything.
#[test]
fn cache_ls_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (stdout, _) = ok(&elihu(dir.path(), &cache, &["cache", "ls"]));
    assert_eq!(stdout, format!("no compiled artifacts in {}\n", cache.display()));
    let run = ["run", "--example", "hello", "--context", r#"{"name": "Ada"}"#];
    ok(&elihu(dir.path(), &cache, &run));
    let digest = Digest::of(elihu::examples::get("hello").unwrap().wasm);
    // An artifact another build of elihu wrote: this one cannot load it.
    let stale = cache.join(format!("{}-0000000000000000.cwasm", Digest::of(b"older").as_str()));
    std::fs::write(&stale, b"compiled by another version").unwrap();

    let (stdout, _) = ok(&elihu(dir.path(), &cache, &["cache", "ls"]));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let current: Vec<&&str> = lines[1..3].iter().filter(|l| l.starts_with(digest.short())).collect();
    assert!(current.len() == 1 && !current[0].contains("stale"), "{stdout}");
    assert_eq!(lines[1..3].iter().filter(|l| l.contains("stale: another elihu build wrote it")).count(), 1, "{stdout}");
    assert!(lines[3].starts_with("2 artifacts, "), "{stdout}");

    let (stdout, _) = ok(&elihu(dir.path(), &cache, &["cache", "prune"]));
    assert!(stdout.ends_with(&format!("removed 1 artifact, 27B from {}\n", cache.display())), "{stdout}");
    assert!(!stale.exists());
    let (stdout, _) = ok(&elihu(dir.path(), &cache, &["cache", "ls", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed[0]["digest"], digest.as_str());
    assert_eq!((listed.as_array().unwrap().len(), &listed[0]["current"]), (1, &serde_json::json!(true)));

    let (stdout, _) = ok(&elihu(dir.path(), &cache, &["cache", "prune", "--all"]));
    assert!(stdout.starts_with(&format!("removed {} (", digest.short())), "{stdout}");
    let (_, stderr) = ok(&elihu(dir.path(), &cache, &run));
    assert!(stderr.starts_with("[ host] compiled hello in "), "pruned, so compiled again: {stderr}");
}
