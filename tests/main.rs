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

/// Emits one test per check per backend: `sqlite::CHECK` and `postgres::CHECK`.
macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            use crate::support::node::{Backend, TestDb};
            $(
                #[tokio::test]
                async fn $check() {
                    let db = TestDb::on(Backend::Sqlite).await;
                    super::$check(&db.store().await).await
                }
            )*
        }
        mod postgres {
            use crate::support::node::{Backend, TestDb};
            $(
                #[tokio::test]
                async fn $check() {
                    let db = TestDb::on(Backend::Postgres).await;
                    super::$check(&db.store().await).await
                }
            )*
        }
    };
}

mod support;

mod api;
mod authoring;
mod cli_node;
mod cli_run;
mod dashboard;
mod events;
mod flow;
mod hostile;
mod loading;
mod metrics;
mod multinode;
mod outbound;
mod outbound_node;
mod polyglot;
mod queue;
mod runtime;
mod schedules;
mod store;
mod traces;
mod store_flow;
