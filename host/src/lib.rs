//! elihu runs background jobs that are WebAssembly components.
//!
//! A job is a wasm component targeting elihu's `job` world (`wit/job.wit`),
//! usually written with the `elihu-guest` SDK. This crate is the host, and a
//! library first: an application embeds a [`Node`] in its own tokio runtime
//! and enqueues from its own code through a [`Client`].
//!
//! ```no_run
//! use elihu::{Client, ClientOptions, Enqueue, Event, Node, NodeConfig};
//! use elihu::store::TemplateDefaults;
//! use serde_json::json;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // Open (and migrate) an embedded SQLite database.
//! let client = Client::open("jobs.db", ClientOptions::default()).await?;
//! // Upload a job component with the JSON Schema of its context.
//! let wasm = std::fs::read("resize.wasm")?;
//! let schema = json!({"type": "object", "required": ["width"]});
//! client.template_push("resize", &wasm, &schema, &TemplateDefaults::default(), &Default::default()).await?;
//! // Work the default queue in this process.
//! let node = Node::start(client.clone(), NodeConfig::default()).await?;
//! let mut events = client.subscribe();
//! let job = client.enqueue(Enqueue::new("resize", json!({"width": 640}))).await?.id();
//! while let Ok(event) = events.recv().await {
//!     if event.job_id() == job && event.is_final() {
//!         println!("{event:?}");
//!         break;
//!     }
//! }
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! The layers, one module each: [`model`] (the values every layer speaks),
//! [`runtime`] (the wasm sandbox, no SQL), [`store`] (every durable fact,
//! one trait, one SQL implementation with a thin dialect per database),
//! [`queue`] (retry policy), [`engine`] (the node, one file per loop),
//! [`client`] (the library API), [`api`] (HTTP), [`events`], [`clock`],
//! [`schedule`], [`schema`], [`units`], [`examples`], [`telemetry`]
//! (traces), [`metrics`].
#![deny(missing_docs)]

pub mod api;
pub mod client;
pub mod clock;
pub mod dashboard;
pub mod engine;
pub mod events;
pub mod examples;
pub mod grants;
pub mod metrics;
pub mod model;
pub mod queue;
pub mod runtime;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod units;

pub use client::{Client, ClientError, ClientOptions, Enqueue, Schedule, ScheduleSpec};
pub use engine::{Node, NodeConfig};
pub use events::Event;
