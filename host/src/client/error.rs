//! `ClientError`: why the client refused or failed a request, each variant
//! naming the problem and, where there is one, what to do.

use crate::grants::GrantError;
use crate::model::LimitError;
use crate::runtime::{LoadError, RuntimeError};
use crate::secrets::SecretsError;
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
    /// A grant (allowed host, header, secret name) was refused.
    #[error(transparent)]
    Grant(#[from] GrantError),
    /// A template limit was refused.
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// A secret's key or value was refused.
    #[error(transparent)]
    Secret(#[from] SecretsError),
    /// A template names a secret that does not exist.
    #[error("template `{template}` uses the secret `{secret}`, which does not exist; set it first with `elihu secret set {secret}`")]
    UnknownSecret {
        /// The template.
        template: String,
        /// The secret.
        secret: String,
    },
    /// No secret of that name.
    #[error("there is no secret named `{0}`")]
    NoSuchSecret(String),
    /// A secret still used by templates.
    #[error("the secret `{secret}` is used by template(s) {templates}; remove it from their grants first (push them again without it)")]
    SecretInUse {
        /// The secret.
        secret: String,
        /// The templates, for people.
        templates: String,
    },
    /// Secrets are needed but this process has no key.
    #[error(
        "{what} needs the secrets key, and none was given: pass --secrets-key-file PATH or set ELIHU_SECRETS_KEY_FILE or ELIHU_SECRETS_KEY (every node needs the same key; `elihu secret keygen` makes one)"
    )]
    NoSecretsKey {
        /// What needed it.
        what: String,
    },
    /// The database holds secrets and this node was given no key.
    #[error(
        "the database holds {count} secret(s) but this node was given no secrets key; pass --secrets-key-file PATH or set ELIHU_SECRETS_KEY_FILE or ELIHU_SECRETS_KEY (every node needs the key the secrets were stored with, key id {stored})"
    )]
    SecretsKeyMissing {
        /// How many secrets exist.
        count: usize,
        /// The id of the key they were stored with.
        stored: String,
    },
    /// The key given is not the one the secrets were sealed with.
    #[error("the secrets key given (key id {given}) is not the key the secrets were stored with (key id {stored}); give this node the same key as the others")]
    WrongSecretsKey {
        /// The id of the key given.
        given: String,
        /// The id of the key the secrets were stored with.
        stored: String,
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
