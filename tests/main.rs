//! elihu's end-to-end suite: one test binary made of modules.
//!
//! The example jobs are built by `host/build.rs` and reached through
//! `elihu::examples`; `support` holds the shared helpers.

mod support;

mod api;
mod cli_node;
mod cli_run;
mod loading;
mod multinode;
mod queue;
mod runtime;
mod schedules;
mod store;
