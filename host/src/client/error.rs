//! `ClientError`: why the client refused or failed a request, each variant
//! naming the problem and, where there is one, what to do.

use crate::runtime::{LoadError, RuntimeError};
use crate::schedule::ScheduleError;
use crate::schema::SchemaError;
use crate::store::StoreError;

/// Why the client refused or failed a request. Every variant names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A schema or a context was refused.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A component was refused.
    #[error(transparent)]
    Component(#[from] LoadError),
    /// The runtime could not start.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A schedule was refused.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// No schedule of that name.
    #[error("there is no schedule named `{0}`")]
    UnknownSchedule(String),
    /// No template of that name.
    #[error("there is no template named `{0}`; push it first (`elihu template push {0} FILE.wasm --schema FILE`)")]
    UnknownTemplate(String),
    /// No component with that digest.
    #[error("there is no component with digest {0}; upload the .wasm first")]
    UnknownComponent(String),
    /// A field has a value elihu cannot accept.
    #[error("invalid {field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong and what would be right.
        message: String,
    },
    /// One job of a batch was refused; nothing of the batch was stored.
    #[error("job {index} of the batch was refused (nothing was enqueued): {source}")]
    Batch {
        /// Its position in the batch, from 0.
        index: usize,
        /// Why.
        source: Box<ClientError>,
    },
}
