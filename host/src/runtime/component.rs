//! Loading components: recognising wasm, checking that a component targets
//! elihu's `job` world, compiling it, and keeping compiled artifacts on local
//! disk (keyed by digest and engine compatibility) so a restart does not
//! recompile.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::artifacts::{self, Artifact};
use super::bindings::JobPre;
use crate::model::Digest;
use super::sandbox::RunState;

/// Why a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not WebAssembly at all.
    #[error("this file is not WebAssembly (it does not start with the `\\0asm` magic bytes); give the .wasm file your job's build produced")]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "this is a core WebAssembly module, not a component; build the job with `cargo build --target wasm32-wasip2` (which produces a component), or wrap the module with `wasm-tools component new`"
    )]
    CoreModule,
    /// wasmtime could not compile it.
    #[error("the component does not compile: {0}")]
    Compile(String),
    /// It does not export the `run` function of the `job` world.
    #[error(
        "the component does not target elihu's job world (elihu:job/job@0.1.0): it has no `run` export. It exports: {exports}. A job exports `run: func(context: string, info: job-info) -> result<string, string>`; build it with the elihu-guest SDK or against wit/job.wit"
    )]
    MissingExport {
        /// What it exports instead.
        exports: String,
    },
    /// It exports `run`, but with the wrong type.
    #[error(
        "the component's `run` export has the wrong type for elihu's job world: {detail}. Expected `run: func(context: string, info: job-info) -> result<string, string>` from wit/job.wit"
    )]
    MistypedExport {
        /// wasmtime's description of the mismatch.
        detail: String,
    },
    /// It imports something elihu does not provide.
    #[error(
        "the component imports something elihu does not provide (elihu provides elihu:job/host@0.1.0 and WASI 0.2): {detail}"
    )]
    UnknownImport {
        /// wasmtime's description of the missing or mistyped import.
        detail: String,
    },
}

/// Where a loaded component came from, for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadSource {
    /// Already loaded in this process.
    Memory,
    /// Deserialised from the local artifact cache.
    Disk,
    /// Compiled from the wasm bytes.
    Compiled,
}

/// A component that passed the world check, ready to instantiate cheaply.
pub struct LoadedJob {
    pub(crate) digest: Digest,
    pub(crate) pre: JobPre<RunState>,
}

impl LoadedJob {
    /// The digest of the component's bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl std::fmt::Debug for LoadedJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedJob").field("digest", &self.digest).finish()
    }
}

/// Distinguishes a component from a core module or something else.
pub(crate) fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(LoadError::NotWasm);
    }
    // The layer field (bytes 6..8) is 0 for core modules and 1 for components.
    if bytes[6..8] == [0, 0] {
        return Err(LoadError::CoreModule);
    }
    Ok(())
}

/// The digest-keyed cache of loaded components, in memory and on disk.
pub(crate) struct ComponentCache {
    loaded: Mutex<HashMap<Digest, Arc<LoadedJob>>>,
    artifact_dir: Option<PathBuf>,
    compat: String,
}

impl ComponentCache {
    pub(crate) fn new(engine: &Engine, artifact_dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache { loaded: Mutex::new(HashMap::new()), artifact_dir, compat: format!("{:016x}", hasher.finish()) }
    }

    pub(crate) fn get(&self, digest: &Digest) -> Option<Arc<LoadedJob>> {
        self.loaded.lock().unwrap().get(digest).cloned()
    }

    fn artifact_path(&self, digest: &Digest) -> Option<PathBuf> {
        self.artifact_dir.as_ref().map(|d| d.join(artifacts::file_name(digest, &self.compat)))
    }

    /// Whether `digest` is compiled already: loaded, or an artifact on disk.
    pub(crate) fn is_compiled(&self, digest: &Digest) -> bool {
        self.get(digest).is_some() || self.artifact_path(digest).is_some_and(|p| p.exists())
    }

    /// The artifacts on disk, newest use first (none without a directory).
    pub(crate) fn artifacts(&self) -> std::io::Result<Vec<Artifact>> {
        match &self.artifact_dir {
            Some(dir) => artifacts::list(dir, &self.compat),
            None => Ok(Vec::new()),
        }
    }

    /// Removes the artifacts other builds wrote, those last used before
    /// `unused_since` (all of them with `SystemTime::now()`), and temp files
    /// of writers that died. Returns what it removed.
    pub(crate) fn prune(&self, unused_since: Option<SystemTime>) -> std::io::Result<Vec<Artifact>> {
        let Some(dir) = &self.artifact_dir else { return Ok(Vec::new()) };
        let mut removed = Vec::new();
        for artifact in artifacts::list(dir, &self.compat)? {
            if !artifact.current || unused_since.is_some_and(|t| artifact.last_used < t) {
                std::fs::remove_file(&artifact.path)?;
                removed.push(artifact);
            }
        }
        for tmp in artifacts::stale_temp_files(dir) {
            std::fs::remove_file(tmp)?;
        }
        Ok(removed)
    }

    pub(crate) fn load(
        &self,
        engine: &Engine,
        linker: &Linker<RunState>,
        bytes: &[u8],
    ) -> Result<(Arc<LoadedJob>, LoadSource), LoadError> {
        check_header(bytes)?;
        let digest = Digest::of(bytes);
        if let Some(job) = self.get(&digest) {
            return Ok((job, LoadSource::Memory));
        }
        let started = Instant::now();
        let (component, source) = match self.from_disk(engine, &digest) {
            Some(component) => (component, LoadSource::Disk),
            None => {
                let component = Component::new(engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
                self.to_disk(&digest, &component);
                (component, LoadSource::Compiled)
            }
        };
        tracing::info!(
            digest = digest.short(),
            source = if source == LoadSource::Disk { "artifact cache" } else { "compiled" },
            took_ms = started.elapsed().as_millis() as u64,
            "component loaded"
        );
        let pre = check_world(engine, linker, &component)?;
        let job = Arc::new(LoadedJob { digest: digest.clone(), pre });
        self.loaded.lock().unwrap().insert(digest, job.clone());
        Ok((job, source))
    }

    fn from_disk(&self, engine: &Engine, digest: &Digest) -> Option<Component> {
        let path = self.artifact_path(digest)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this cache wrote with `Component::serialize`
        // for the same engine configuration (the compatibility hash is in its
        // name); wasmtime checks the header again and we recompile on error.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => {
                artifacts::touch(&path);
                Some(component)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable compiled artifact");
                None
            }
        }
    }

    fn to_disk(&self, digest: &Digest, component: &Component) {
        let Some(path) = self.artifact_path(digest) else { return };
        let written = component.serialize().map_err(|e| e.to_string()).and_then(|bytes| {
            artifacts::write(&path, &bytes).map_err(|e| e.to_string())
        });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not keep the compiled artifact; it will be recompiled next time");
        }
    }
}

/// Checks the component against the `job` world: the `run` export first (the
/// usual mistake is a component built for another world), then the imports,
/// then the export's type.
fn check_world(engine: &Engine, linker: &Linker<RunState>, component: &Component) -> Result<JobPre<RunState>, LoadError> {
    if component.get_export_index(None, "run").is_none() {
        let ty = component.component_type();
        let names: Vec<String> = ty.exports(engine).map(|(name, _)| format!("`{name}`")).collect();
        let exports = if names.is_empty() { "nothing".to_string() } else { names.join(", ") };
        return Err(LoadError::MissingExport { exports });
    }
    let pre = linker.instantiate_pre(component).map_err(|e| LoadError::UnknownImport { detail: format!("{e:#}") })?;
    JobPre::new(pre).map_err(|e| LoadError::MistypedExport { detail: format!("{e:#}") })
}
