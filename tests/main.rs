//! elihu's end-to-end suite: one test binary made of modules.
//!
//! The example jobs are built by `host/build.rs` and reached through
//! `elihu::examples`; `support` holds the shared helpers.

/// Runs each test body (an `async fn NAME(Backend)`) on SQLite and on
/// PostgreSQL, as the tests `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::support::node::Backend;

            #[tokio::test]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}

mod support;

mod api;
mod authoring;
mod cli_node;
mod cli_run;
mod dashboard;
mod hostile;
mod loading;
mod multinode;
mod polyglot;
mod queue;
mod runtime;
mod schedules;
mod store;
