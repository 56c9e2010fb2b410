//! The example jobs, built from `example-jobs/` by the build script and carried
//! inside the binary so a fresh install can run them without a wasm toolchain.

/// One example job: its component and the JSON Schema of its context.
#[derive(Debug, Clone, Copy)]
pub struct ExampleJob {
    /// The job's name (its crate name in `example-jobs/`).
    pub name: &'static str,
    /// Where the build put the component (valid on the machine that built elihu).
    pub wasm_path: &'static str,
    /// The component's bytes.
    pub wasm: &'static [u8],
    /// The schema of the job's context (`example-jobs/NAME/schema.json`); `None`
    /// for the two deliberately broken components.
    pub schema: Option<&'static str>,
}

/// Every example job, including `other-world` (a WASI command, not a job) and
/// `wrong-signature` (a `run` export of the wrong type), which elihu refuses.
pub const ALL: &[ExampleJob] = include!(concat!(env!("OUT_DIR"), "/example_jobs.rs"));

/// The example job called `name`.
pub fn get(name: &str) -> Option<&'static ExampleJob> {
    ALL.iter().find(|job| job.name == name)
}
