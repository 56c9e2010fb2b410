//! Builds the example jobs (`../example-jobs`) for `wasm32-wasip2` so that the
//! `elihu` binary can carry them and the tests can run them.
//!
//! The nested cargo gets its own target directory (`<target>/example-jobs`):
//! sharing the outer one would deadlock on cargo's build lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The jobs embedded in the library, in `src/examples.rs` order.
const JOBS: &[&str] = &[
    "hello", "wordfreq", "flaky", "progress", "spin", "sleepy", "memory-hog", "panic", "escape", "noop",
    "other-world", "wrong-signature",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_path_buf();
    let jobs_dir = root.join("example-jobs");
    for watched in ["example-jobs", "guest-sdk", "wit"] {
        rerun_if_changed_tree(&root.join(watched));
    }

    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir.ancestors().nth(4).expect("OUT_DIR has the usual shape").join("example-jobs");

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&jobs_dir)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir);
    // The outer cargo's settings are for the host target, not for the guests.
    for (key, _) in std::env::vars() {
        let inherited = key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE";
        if inherited || key == "RUSTFLAGS" || key == "RUSTC_WRAPPER" || key == "RUSTC_WORKSPACE_WRAPPER" {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().expect("running cargo to build the example jobs");
    if !status.success() {
        panic!(
            "building the example jobs for wasm32-wasip2 failed (see above). If the target is missing, \
             run `rustup target add wasm32-wasip2` (rust-toolchain.toml lists it, so rustup normally \
             installs it by itself)."
        );
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("release");
    let mut table = String::from("&[\n");
    for job in JOBS {
        let wasm = wasm_dir.join(format!("{}.wasm", job.replace('-', "_")));
        let wasm = if wasm.exists() { wasm } else { wasm_dir.join(format!("{job}.wasm")) };
        assert!(wasm.exists(), "the build of example job {job} left no {}", wasm.display());
        let schema = jobs_dir.join(job).join("schema.json");
        let schema_expr = if schema.exists() {
            format!("Some(include_str!({:?}))", schema.display().to_string())
        } else {
            "None".to_string()
        };
        table.push_str(&format!(
            "    ExampleJob {{ name: {job:?}, wasm_path: {:?}, wasm: include_bytes!({:?}), schema: {schema_expr} }},\n",
            wasm.display().to_string(),
            wasm.display().to_string(),
        ));
    }
    table.push_str("]\n");
    std::fs::write(out_dir.join("example_jobs.rs"), table).unwrap();
}

fn rerun_if_changed_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
