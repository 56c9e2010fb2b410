//! Loading components: what is refused, with what message, and the artifact cache.

use elihu::model::Digest;
use elihu::runtime::{LoadError, LoadSource, Runtime, RuntimeConfig};
use serde_json::json;

use crate::support::*;

#[test]
fn a_file_that_is_not_wasm_is_refused() {
    let err = runtime().load(b"#!/bin/sh\necho hi\n").unwrap_err();
    assert!(matches!(err, LoadError::NotWasm));
    assert!(err.to_string().starts_with("this file is not WebAssembly"), "{err}");
}

#[test]
fn a_core_module_is_refused_with_how_to_make_a_component() {
    // The smallest valid core module: magic + version 1.
    let err = runtime().load(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(err, LoadError::CoreModule));
    assert!(err.to_string().contains("--target wasm32-wasip2"), "{err}");
}

#[test]
fn a_truncated_component_does_not_compile() {
    let bytes = example("hello");
    let err = runtime().load(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(matches!(err, LoadError::Compile(_)), "{err}");
    assert!(err.to_string().starts_with("the component does not compile: "), "{err}");
}

#[test]
fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let err = runtime().load(example("other-world")).unwrap_err();
    let LoadError::MissingExport { exports } = &err else { panic!("{err}") };
    assert!(exports.contains("`wasi:cli/run@0.2"), "{exports}");
    let message = err.to_string();
    assert!(message.contains("it has no `run` export"), "{message}");
    assert!(message.contains("run: func(context: string, info: job-info) -> result<string, string>"), "{message}");
}

#[test]
fn a_mistyped_run_export_is_refused_naming_it() {
    let err = runtime().load(example("wrong-signature")).unwrap_err();
    assert!(matches!(err, LoadError::MistypedExport { .. }), "{err}");
    let message = err.to_string();
    assert!(message.starts_with("the component's `run` export has the wrong type"), "{message}");
}

#[tokio::test]
async fn compiled_artifacts_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig { artifact_dir: Some(dir.path().to_path_buf()), ..RuntimeConfig::default() };
    let first = Runtime::new(config()).unwrap();
    let (job, source) = first.load_with_source(example("hello")).unwrap();
    assert_eq!(source, LoadSource::Compiled);
    assert_eq!(first.load_with_source(example("hello")).unwrap().1, LoadSource::Memory);
    let artifacts: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
    assert_eq!(artifacts.len(), 1);
    assert!(artifacts[0].file_name().to_string_lossy().starts_with(job.digest().as_str()));
    drop(first);

    let second = Runtime::new(config()).unwrap();
    let (job, source) = second.load_with_source(example("hello")).unwrap();
    assert_eq!(source, LoadSource::Disk);
    let outcome = second.run(&job, request("hello", json!({"name": "again"}), Default::default())).await;
    assert_eq!(output(&outcome), json!({"greeting": "Hello, again!"}));
}

#[test]
fn a_corrupt_artifact_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig { artifact_dir: Some(dir.path().to_path_buf()), ..RuntimeConfig::default() };
    let (job, _) = Runtime::new(config()).unwrap().load_with_source(example("noop")).unwrap();
    let artifact = std::fs::read_dir(dir.path()).unwrap().flatten().next().unwrap().path();
    std::fs::write(&artifact, b"garbage").unwrap();
    let (again, source) = Runtime::new(config()).unwrap().load_with_source(example("noop")).unwrap();
    assert_eq!(source, LoadSource::Compiled);
    assert_eq!(again.digest(), job.digest());
}

#[test]
fn digests_are_sha256() {
    assert_eq!(Digest::of(b"abc").as_str(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let d = Digest::of(example("hello"));
    assert_eq!(Digest::parse(d.as_str()), Some(d.clone()));
    assert_eq!(Digest::parse("not-a-digest"), None);
    assert_eq!(d.short().len(), 12);
}
