//! Builds the example jobs (`../example-jobs`) for `wasm32-wasip2` so that the
//! `elihu` binary can carry them and the tests can run them.
//!
//! The nested cargo gets its own target directory (`<target>/example-jobs`):
//! sharing the outer one would deadlock on cargo's build lock.
//!
//! rustup installs the targets of `rust-toolchain.toml` only when it installs
//! the toolchain itself, so a machine that already had `stable` lacks the
//! `wasm32-wasip2` standard library: this script adds it through rustup for the
//! active toolchain (saying so), or stops with one line naming what to run.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The jobs embedded in the library, in `src/examples.rs` order.
const JOBS: &[&str] = &[
    "hello", "wordfreq", "flaky", "progress", "spin", "sleepy", "memory-hog", "panic", "escape", "noop", "hostile",
    "version", "version-2", "snoozer", "other-world", "wrong-signature", "webhook", "fetch", "smtp-send",
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

    ensure_guest_target();

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
            "building the example jobs for wasm32-wasip2 failed (see the cargo output above)"
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

/// The target the example jobs are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// Makes sure the active toolchain has the guest target's standard library,
/// installing it with rustup when it is missing.
fn ensure_guest_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let libdir = |rustc: &str| -> Option<PathBuf> {
        let out = Command::new(rustc).args(["--print", "target-libdir", "--target", GUEST_TARGET]).output().ok()?;
        out.status.success().then(|| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let has_std = |dir: &Option<PathBuf>| {
        dir.as_ref().and_then(|d| std::fs::read_dir(d).ok()).is_some_and(|entries| {
            entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
    };
    let dir = libdir(&rustc);
    if has_std(&dir) {
        return;
    }
    let toolchain = active_toolchain(&rustc);
    let rustup_ok = Command::new("rustup").arg("--version").output().is_ok_and(|o| o.status.success());
    if !rustup_ok {
        panic!(
            "the {GUEST_TARGET} standard library is missing from this Rust toolchain and rustup is not on PATH: \
             install the {GUEST_TARGET} target for `{rustc}` (with rustup: `rustup target add {GUEST_TARGET}`)"
        );
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", GUEST_TARGET]);
    if let Some(toolchain) = &toolchain {
        add.args(["--toolchain", toolchain]);
    }
    println!(
        "cargo:warning=the {GUEST_TARGET} target was missing from toolchain {}: running `rustup target add {GUEST_TARGET}{}`",
        toolchain.as_deref().unwrap_or("(default)"),
        toolchain.as_deref().map(|t| format!(" --toolchain {t}")).unwrap_or_default(),
    );
    eprintln!("elihu build: installing the {GUEST_TARGET} target with rustup (needed to build the example jobs)");
    let status = add.status().expect("running rustup");
    if !status.success() || !has_std(&libdir(&rustc)) {
        panic!(
            "`rustup target add {GUEST_TARGET}` did not install the {GUEST_TARGET} standard library; \
             run it by hand and build again"
        );
    }
}

/// The rustup toolchain the build runs under: rustup's proxy names it in
/// `RUSTUP_TOOLCHAIN`; otherwise the name of rustc's sysroot under rustup's home.
fn active_toolchain(rustc: &str) -> Option<String> {
    if let Ok(name) = std::env::var("RUSTUP_TOOLCHAIN") {
        return Some(name);
    }
    let out = Command::new(rustc).args(["--print", "sysroot"]).output().ok()?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let parent = sysroot.parent()?;
    (parent.file_name()? == "toolchains").then(|| sysroot.file_name().map(|n| n.to_string_lossy().into_owned()))?
}

fn rerun_if_changed_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        // `js/` and `python/` (in example-jobs/ and guest-sdk/) hold the
        // JavaScript and Python SDKs and examples, with their node_modules
        // and virtualenvs: nothing this script builds reads them (the tests
        // build them, and `elihu new` includes its files through rustc).
        if name == "target" || name == "js" || name == "python" {
            continue;
        }
        if path.is_dir() {
            rerun_if_changed_tree(&path);
        } else {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}
