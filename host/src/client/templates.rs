//! Components and templates: upload and check a component, create, update,
//! read and delete templates, and the cache of compiled context schemas
//! (by template version) that enqueues and schedules validate against.

use std::sync::Arc;

use serde_json::Value;

use super::requests::{check_limits, check_name};
use super::{Client, ClientError};
use crate::model::Digest;
use crate::schema::ContextSchema;
use crate::store::{Template, TemplateDefaults, TemplateSettings};

impl Client {
    /// Checks that `wasm` is a component of elihu's job world and stores it.
    pub async fn component_put(&self, wasm: &[u8]) -> Result<Digest, ClientError> {
        let job = self.runtime().load(wasm)?;
        self.store().component_put(job.digest(), wasm, self.clock().now()).await?;
        Ok(job.digest().clone())
    }

    /// Checks everything about a template: its name, schema, defaults,
    /// grants (whose secrets must exist) and limits (at most this node's).
    /// Returns the settings as they are stored (grants validated).
    async fn check_template(
        &self,
        name: &str,
        schema: &Value,
        defaults: &TemplateDefaults,
        settings: &TemplateSettings,
    ) -> Result<TemplateSettings, ClientError> {
        let grants = settings.grants.clone().validate()?;
        settings.limits.check(&self.runtime().config().limits)?;
        self.check_template_fields(name, schema, defaults)?;
        self.check_secrets_exist(name, &grants).await?;
        Ok(TemplateSettings { grants, ..settings.clone() })
    }

    /// Checks a template's name, schema and defaults.
    fn check_template_fields(&self, name: &str, schema: &Value, defaults: &TemplateDefaults) -> Result<(), ClientError> {
        check_name("template name", name)?;
        check_name("queue", &defaults.queue)?;
        ContextSchema::compile(schema)?;
        self.check_limits(defaults.max_attempts, defaults.timeout_ms, defaults.memory_bytes)?;
        if defaults.backoff_base_ms > defaults.backoff_max_ms {
            return Err(ClientError::Invalid {
                field: "backoff",
                message: format!(
                    "the base delay ({} ms) is longer than the maximum ({} ms)",
                    defaults.backoff_base_ms, defaults.backoff_max_ms
                ),
            });
        }
        Ok(())
    }

    /// Checks a job's limits against this process's runtime.
    pub(super) fn check_limits(&self, max_attempts: u32, timeout_ms: u64, memory: u64) -> Result<(), ClientError> {
        check_limits(max_attempts, timeout_ms, memory, self.runtime().config().max_memory)
    }

    /// Creates or updates a template from a stored component. The schema must
    /// be a valid JSON Schema, the grants well formed with every secret they
    /// name set, the limits within this node's; nothing is stored otherwise.
    pub async fn template_put(
        &self,
        name: &str,
        digest: &Digest,
        schema: &Value,
        defaults: &TemplateDefaults,
        settings: &TemplateSettings,
    ) -> Result<Template, ClientError> {
        let settings = self.check_template(name, schema, defaults, settings).await?;
        if self.store().component_get(digest).await?.is_none() {
            return Err(ClientError::UnknownComponent(digest.to_string()));
        }
        Ok(self.store().template_put(name, digest, schema, defaults, &settings, self.clock().now()).await?)
    }

    /// Uploads a component and creates or updates a template for it in one go.
    /// Nothing is stored unless the component, the schema, the defaults, the
    /// grants and the limits are all valid.
    pub async fn template_push(
        &self,
        name: &str,
        wasm: &[u8],
        schema: &Value,
        defaults: &TemplateDefaults,
        settings: &TemplateSettings,
    ) -> Result<Template, ClientError> {
        let settings = self.check_template(name, schema, defaults, settings).await?;
        let digest = self.component_put(wasm).await?;
        // Checked above, and the component was just stored: no second check.
        Ok(self.store().template_put(name, &digest, schema, defaults, &settings, self.clock().now()).await?)
    }

    /// A template by name.
    pub async fn template_get(&self, name: &str) -> Result<Template, ClientError> {
        self.store().template_get(name).await?.ok_or_else(|| ClientError::UnknownTemplate(name.to_string()))
    }

    /// Every template.
    pub async fn template_list(&self) -> Result<Vec<Template>, ClientError> {
        Ok(self.store().template_list().await?)
    }

    /// Deletes a template: refused while it has queued or running jobs,
    /// unless `force` (which removes its queued jobs and cancels its running ones).
    pub async fn template_delete(&self, name: &str, force: bool) -> Result<(), ClientError> {
        if self.store().template_delete(name, force).await? {
            self.trigger();
            Ok(())
        } else {
            Err(ClientError::UnknownTemplate(name.to_string()))
        }
    }

    /// The compiled context schema of `template`, compiled once per version.
    pub(super) fn schema_of(&self, template: &Template) -> Result<Arc<ContextSchema>, ClientError> {
        if let Some((version, schema)) = self.shared.schemas.lock().unwrap().get(&template.name)
            && *version == template.version
        {
            return Ok(schema.clone());
        }
        let schema = Arc::new(ContextSchema::compile(&template.schema)?);
        self.shared.schemas.lock().unwrap().insert(template.name.clone(), (template.version, schema.clone()));
        Ok(schema)
    }
}
