//! elihu runs background jobs that are WebAssembly components.
//!
//! A job is a wasm component targeting elihu's `job` world (`wit/job.wit`),
//! usually written with the `elihu-guest` SDK. This crate is the host: the
//! sandboxed [`runtime`] that runs one attempt of a job in a fresh instance,
//! the context [`schema`] checks, and the `elihu` command-line tool.
//!
//! Running a component once, the way `elihu run` does:
//!
//! ```no_run
//! use elihu::runtime::{Ending, RunRequest, Runtime, RuntimeConfig};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let runtime = Runtime::new(RuntimeConfig::default())?;
//! let job = runtime.load(&std::fs::read("hello.wasm")?)?;
//! let request = RunRequest { context: r#"{"name":"Ada"}"#.into(), ..Default::default() };
//! match runtime.run(&job, request).await.ending {
//!     Ending::Succeeded { output } => println!("{output}"),
//!     Ending::Failed { reason, message } => eprintln!("{reason}: {message}"),
//! }
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod api;
pub mod client;
pub mod clock;
pub mod engine;
pub mod events;
pub mod examples;
pub mod queue;
pub mod runtime;
pub mod schema;
pub mod store;
pub mod units;

pub use client::{Client, ClientError, ClientOptions, Enqueue};
pub use engine::{Node, NodeConfig};
pub use events::Event;
