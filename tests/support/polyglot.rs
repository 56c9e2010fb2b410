//! The JavaScript and Python example jobs, built from source for the tests:
//! npm and pip install from the registries into a cache under the target
//! directory keyed by the sources (SDK, examples, lock files), so a test
//! process builds each set at most once and later processes reuse it. A
//! missing toolchain fails the test, naming what to install.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use elihu::model::Digest;

/// A language with guest SDK and examples besides Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// `guest-sdk/js`, `example-jobs/js`: `npm run build`.
    Js,
    /// `guest-sdk/python`, `example-jobs/python`: `python3 build.py`.
    Python,
}

impl Lang {
    /// The directory name of its SDK and examples.
    pub fn dir(self) -> &'static str {
        match self {
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    /// Its data job (besides `hello` and `behaviours`).
    pub fn data_job(self) -> &'static str {
        match self {
            Lang::Js => "markdown",
            Lang::Python => "csvstats",
        }
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ has a parent").to_path_buf()
}

/// The target directory the tests were built in (beside `elihu`).
pub fn target_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_elihu"));
    bin.parent().and_then(Path::parent).expect("the elihu binary lies in <target>/<profile>/").to_path_buf()
}

/// The path of the built example `name` (`hello`, `behaviours`, or the data job) in `lang`.
pub fn example_wasm(lang: Lang, name: &str) -> PathBuf {
    let dist = built(lang).join("example-jobs").join(lang.dir()).join("dist");
    let wasm = dist.join(format!("{name}.wasm"));
    assert!(wasm.exists(), "the {lang:?} build left no {}", wasm.display());
    wasm
}

/// The bytes of a built example.
pub fn example_bytes(lang: Lang, name: &str) -> Vec<u8> {
    std::fs::read(example_wasm(lang, name)).expect("reading a built example")
}

/// The context schema of an example, from its source directory.
pub fn example_schema(lang: Lang, name: &str) -> PathBuf {
    repo().join("example-jobs").join(lang.dir()).join(name).join("schema.json")
}

/// The build of `lang`'s examples: a directory holding copies of its SDK and
/// examples, built. Once per process; across processes, once per sources.
fn built(lang: Lang) -> &'static Path {
    static JS: OnceLock<PathBuf> = OnceLock::new();
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    let cell = match lang {
        Lang::Js => &JS,
        Lang::Python => &PYTHON,
    };
    cell.get_or_init(|| build(lang))
}

/// The files that make up a language's build: SDK and examples, without
/// what builds leave behind.
fn sources(lang: Lang) -> Vec<(PathBuf, PathBuf)> {
    let root = repo();
    let mut files = Vec::new();
    for tree in [Path::new("guest-sdk").join(lang.dir()), Path::new("example-jobs").join(lang.dir())] {
        collect(&root, &tree, &mut files);
    }
    files.sort();
    files
}

fn collect(root: &Path, relative: &Path, files: &mut Vec<(PathBuf, PathBuf)>) {
    let entries = std::fs::read_dir(root.join(relative)).unwrap_or_else(|e| panic!("reading {}: {e}", relative.display()));
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if matches!(name.as_ref(), "node_modules" | "dist" | ".venv" | "__pycache__") {
            continue;
        }
        let path = relative.join(&*name);
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect(root, &path, files);
        } else {
            files.push((root.join(&path), path));
        }
    }
}

/// A digest of paths and contents.
fn key(files: &[(PathBuf, PathBuf)]) -> String {
    let mut all = Vec::new();
    for (source, relative) in files {
        all.extend_from_slice(relative.to_string_lossy().as_bytes());
        all.push(0);
        all.extend_from_slice(&std::fs::read(source).expect("reading a source"));
        all.push(0);
    }
    Digest::of(&all).short().to_string()
}

fn build(lang: Lang) -> PathBuf {
    check_toolchain(lang);
    let files = sources(lang);
    let cache = target_dir().join("polyglot");
    std::fs::create_dir_all(&cache).unwrap();
    let dir = cache.join(format!("{}-{}", lang.dir(), key(&files)));
    let done = dir.join(".built");
    if done.exists() {
        return dir;
    }
    // Another test process may be building the same sources.
    let lock = File::create(cache.join(format!("{}.lock", lang.dir()))).unwrap();
    lock.lock().expect("locking the polyglot build");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    for (source, relative) in &files {
        let target = dir.join(relative);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(source, &target).unwrap_or_else(|e| panic!("copying {}: {e}", source.display()));
    }
    let examples = dir.join("example-jobs").join(lang.dir());
    match lang {
        Lang::Js => {
            // Its prebuild runs `npm install`, which installs exactly what the
            // committed package-lock.json pins. (`npm ci` refuses that lock:
            // with the SDK as an install-links dependency it wants other
            // platforms' optional packages listed too.)
            run_ok(Command::new("npm").args(["run", "build"]).current_dir(&examples), "npm run build");
        }
        Lang::Python => {
            let venv = python_venv(&cache);
            run_ok(
                Command::new("python3").arg("build.py").arg("--venv").arg(&venv).current_dir(&examples),
                "python3 build.py",
            );
        }
    }
    std::fs::write(&done, b"").unwrap();
    // Builds of earlier sources (each holds its own node_modules or venv) go.
    let keep: Vec<PathBuf> = match lang {
        Lang::Js => vec![dir.clone()],
        Lang::Python => vec![dir.clone(), python_venv(&cache)],
    };
    for entry in std::fs::read_dir(&cache).unwrap().flatten() {
        let stale = entry.file_name().to_string_lossy().starts_with(&format!("{}-", lang.dir()));
        if stale && entry.path().is_dir() && !keep.contains(&entry.path()) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    dir
}

/// The virtualenv the Python build installs into: one per requirements
/// file, shared by changes of the sources.
fn python_venv(cache: &Path) -> PathBuf {
    let requirements = std::fs::read(repo().join("guest-sdk/python/requirements.txt")).unwrap();
    cache.join(format!("python-venv-{}", Digest::of(&requirements).short()))
}

/// Runs a build command, failing the test with its output when it fails.
pub fn run_ok(command: &mut Command, what: &str) -> Output {
    let out = command.output().unwrap_or_else(|e| panic!("could not start `{what}`: {e}"));
    assert!(
        out.status.success(),
        "`{what}` failed ({:?}) in {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        command.get_current_dir(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Fails the test unless `lang`'s toolchain is installed, saying what to install.
pub fn check_toolchain(lang: Lang) {
    static JS: OnceLock<()> = OnceLock::new();
    static PYTHON: OnceLock<()> = OnceLock::new();
    match lang {
        Lang::Js => JS.get_or_init(|| {
            let install = "install Node.js 20 or later with npm (`apt-get install nodejs` from a NodeSource repository: \
                           Debian 12's own nodejs is 18, too old for componentize-js; .ci/run installs it when missing)";
            let major = version_of("node", &["--version"], install)
                .trim_start_matches('v')
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            assert!(major.is_some_and(|m| m >= 20), "the JavaScript tests need Node.js 20 or later, found {major:?}: {install}");
            version_of("npm", &["--version"], install);
        }),
        Lang::Python => PYTHON.get_or_init(|| {
            let install = "install Python 3.10 or later with venv (Debian: `apt-get install python3 python3-venv`; .ci/run does this)";
            let check = "import sys, venv, ensurepip; assert sys.version_info >= (3, 10), sys.version";
            version_of("python3", &["-c", check], install);
        }),
    };
}

fn version_of(program: &str, args: &[&str], install: &str) -> String {
    match Command::new(program).args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => panic!(
            "the {program} check failed ({}): {install}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no output")
        ),
        Err(e) => panic!("`{program}` is not available ({e}): {install}"),
    }
}
