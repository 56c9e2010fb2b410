//! `elihu new NAME --lang rust|js|python`: scaffolds a job project that
//! builds with one command, with a schema, a test of its own and a README
//! naming the next commands. The project carries a copy of the guest SDK
//! this binary was built with (its templates are in `new/`), so it builds
//! without a checkout of elihu.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};

/// Arguments of `elihu new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The job's name, also the directory created for it (`my-job`, or a
    /// path ending in it): lowercase letters, digits and hyphens.
    name: PathBuf,
    /// The language of the job.
    #[arg(long, value_enum)]
    lang: Lang,
}

/// A language `elihu new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with the elihu-guest crate: `cargo build --release --target wasm32-wasip2`.
    Rust,
    /// JavaScript with componentize-js: `npm run build`.
    Js,
    /// Python with componentize-py: `python3 build.py`.
    Python,
}

/// One file of a scaffold: where it goes and its text (placeholders unfilled).
type File = (&'static str, &'static str);

const SCHEMA: File = ("schema.json", include_str!("new/schema.json.tmpl"));
const WIT: &str = include_str!("../../../wit/job.wit");

const RUST: &[File] = &[
    ("Cargo.toml", include_str!("new/rust/Cargo.toml.tmpl")),
    ("rust-toolchain.toml", include_str!("new/rust/rust-toolchain.toml.tmpl")),
    (".gitignore", include_str!("new/rust/gitignore.tmpl")),
    ("README.md", include_str!("new/rust/README.md.tmpl")),
    ("src/lib.rs", include_str!("new/rust/src/lib.rs.tmpl")),
    SCHEMA,
    ("elihu-guest/Cargo.toml", include_str!("../../../guest-sdk/Cargo.toml")),
    ("elihu-guest/src/lib.rs", include_str!("../../../guest-sdk/src/lib.rs")),
    ("elihu-guest/macro/Cargo.toml", include_str!("../../../guest-sdk/macro/Cargo.toml")),
    ("elihu-guest/macro/src/lib.rs", include_str!("../../../guest-sdk/macro/src/lib.rs")),
    // The SDK reads the world from `../wit` next to its crate.
    ("wit/job.wit", WIT),
];

const JS: &[File] = &[
    ("package.json", include_str!("new/js/package.json.tmpl")),
    (".npmrc", include_str!("new/js/npmrc.tmpl")),
    (".gitignore", include_str!("new/js/gitignore.tmpl")),
    ("README.md", include_str!("new/js/README.md.tmpl")),
    ("src/index.js", include_str!("new/js/src/index.js.tmpl")),
    ("src/greet.js", include_str!("new/js/src/greet.js.tmpl")),
    ("test/greet.test.js", include_str!("new/js/test/greet.test.js.tmpl")),
    SCHEMA,
    ("elihu-guest/package.json", include_str!("../../../guest-sdk/js/package.json")),
    ("elihu-guest/index.js", include_str!("../../../guest-sdk/js/index.js")),
    ("elihu-guest/index.d.ts", include_str!("../../../guest-sdk/js/index.d.ts")),
    ("elihu-guest/build.js", include_str!("../../../guest-sdk/js/build.js")),
    ("elihu-guest/types/job.d.ts", include_str!("../../../guest-sdk/js/types/job.d.ts")),
    (
        "elihu-guest/types/interfaces/elihu-job-host.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/elihu-job-host.d.ts"),
    ),
    (
        "elihu-guest/types/interfaces/elihu-job-types.d.ts",
        include_str!("../../../guest-sdk/js/types/interfaces/elihu-job-types.d.ts"),
    ),
    ("elihu-guest/wit/job.wit", WIT),
];

const PYTHON: &[File] = &[
    ("app.py", include_str!("new/python/app.py.tmpl")),
    ("test_app.py", include_str!("new/python/test_app.py.tmpl")),
    ("build.py", include_str!("new/python/build.py.tmpl")),
    ("requirements.txt", include_str!("../../../guest-sdk/python/requirements.txt")),
    (".gitignore", include_str!("new/python/gitignore.tmpl")),
    ("README.md", include_str!("new/python/README.md.tmpl")),
    SCHEMA,
    ("elihu_guest/__init__.py", include_str!("../../../guest-sdk/python/elihu_guest/__init__.py")),
    ("elihu_guest/build.py", include_str!("../../../guest-sdk/python/elihu_guest/build.py")),
    ("elihu_guest/componentize-py.toml", include_str!("../../../guest-sdk/python/elihu_guest/componentize-py.toml")),
    ("elihu_guest/py.typed", include_str!("../../../guest-sdk/python/elihu_guest/py.typed")),
    ("elihu_guest/wit/job.wit", WIT),
];

impl Lang {
    fn files(self) -> &'static [File] {
        match self {
            Lang::Rust => RUST,
            Lang::Js => JS,
            Lang::Python => PYTHON,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        }
    }

    /// Where the build writes the component, relative to the project.
    fn wasm(self, name: &str) -> String {
        match self {
            Lang::Rust => format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
            Lang::Js | Lang::Python => format!("{name}.wasm"),
        }
    }

    fn build_command(self) -> &'static str {
        match self {
            Lang::Rust => "cargo build --release --target wasm32-wasip2",
            Lang::Js => "npm run build",
            Lang::Python => "python3 build.py",
        }
    }
}

/// Checks a job name: it names a crate, an npm package and a template.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "`{name}` cannot name a job: use 1 to 64 lowercase letters, digits and hyphens, starting with a letter \
             and not ending with a hyphen (it becomes the crate, package and template name), e.g. `resize-images`"
        );
    }
    Ok(())
}

/// Refuses a directory that exists and holds anything.
fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} already exists and is not empty; elihu new writes only into a new or empty directory \
                     (nothing was written)",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            bail!("{} already exists and is a file (nothing was written)", dir.display())
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

/// Writes the scaffold of `name` in `lang` into `dir` (new or empty).
pub fn scaffold(dir: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    check_name(name)?;
    check_empty(dir)?;
    let wasm = lang.wasm(name);
    for (path, text) in lang.files() {
        let text = text
            .replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{wasm}}", &wasm)
            .replace("{{elihu_version}}", env!("CARGO_PKG_VERSION"));
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    }
    Ok(())
}

pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let Some(name) = args.name.file_name().and_then(|n| n.to_str()) else {
        bail!("give the job's name (or a path ending in it), e.g. `elihu new resize-images --lang rust`");
    };
    scaffold(&args.name, name, args.lang)?;
    let dir = args.name.display();
    let wasm = args.lang.wasm(name);
    println!("created {name}, a job in {}, in {dir}/; next:", args.lang.label());
    println!("  cd {dir} && {}", args.lang.build_command());
    println!("  elihu run {wasm} --schema schema.json --context '{{\"name\": \"Ada\"}}'");
    println!("  elihu template push {name} {wasm} --schema schema.json");
    println!("  elihu enqueue {name} --context '{{\"name\": \"Ada\"}}' --wait");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_suit_every_language() {
        for good in ["a", "resize-images", "job2"] {
            check_name(good).unwrap();
        }
        for bad in ["", "Resize", "2jobs", "my_job", "trailing-", "a b", &"x".repeat(65)] {
            let e = check_name(bad).unwrap_err().to_string();
            assert!(e.contains("cannot name a job"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_non_empty_directory_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let e = scaffold(dir.path(), "job", Lang::Js).unwrap_err().to_string();
        assert!(e.contains("already exists and is not empty"), "{e}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(names, ["keep.txt"]);
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
    }

    #[test]
    fn placeholders_are_all_filled() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            let dir = tempfile::tempdir().unwrap();
            let project = dir.path().join("my-job");
            scaffold(&project, "my-job", lang).unwrap();
            for (path, _) in lang.files() {
                let text = std::fs::read_to_string(project.join(path)).unwrap();
                assert!(!text.contains("{{"), "{lang:?} {path} keeps a placeholder");
            }
        }
    }
}
