//! Secrets: set (sealed under this process's key, the key's check stored
//! with the first one), list (names and times only), delete (refused while a
//! template uses the secret), the key check a node makes at start, and the
//! capabilities of a run (its grants, narrowed by its job, with the values
//! of the secrets they use opened).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Client, ClientError};
use crate::grants::{AllowedHost, Grants, check_secret_name};
use crate::runtime::Capabilities;
use crate::secrets::{SecretsKey, check_value};
use crate::store::{KeyCheck, SecretInfo};

impl Client {
    /// Gives this process the key secrets are sealed with (or takes it away).
    pub fn set_secrets_key(&self, key: Option<SecretsKey>) {
        *self.shared.secrets_key.write().unwrap() = key;
    }

    /// The id of this process's secrets key, if it has one (safe to print).
    pub fn secrets_key_id(&self) -> Option<String> {
        self.shared.secrets_key.read().unwrap().as_ref().map(SecretsKey::id)
    }

    fn secrets_key(&self, what: &str) -> Result<SecretsKey, ClientError> {
        self.shared.secrets_key.read().unwrap().clone().ok_or_else(|| ClientError::NoSecretsKey { what: what.to_string() })
    }

    /// Checks this process's key against the secrets in the database: with
    /// secrets stored, a missing key and a different key are refused, each
    /// saying what to do. A node makes this check when it starts.
    pub async fn secrets_check(&self) -> Result<(), ClientError> {
        let Some(stored) = self.store().secrets_key().await? else { return Ok(()) };
        let key = self.shared.secrets_key.read().unwrap().clone();
        match key {
            Some(key) if key.verifies(&stored.check_value) => Ok(()),
            Some(key) => Err(ClientError::WrongSecretsKey { given: key.id(), stored: stored.key_id }),
            None => {
                let count = self.store().secret_list().await?.len();
                if count == 0 {
                    return Ok(());
                }
                Err(ClientError::SecretsKeyMissing { count, stored: stored.key_id })
            }
        }
    }

    /// Sets a secret (creating or replacing it); true when created. The
    /// value is text of 4 B to 16 KiB; it is stored sealed, never in clear.
    pub async fn secret_set(&self, name: &str, value: &[u8]) -> Result<bool, ClientError> {
        check_secret_name(name)?;
        check_value(name, value)?;
        let key = self.secrets_key("setting a secret")?;
        if let Some(stored) = self.store().secrets_key().await?
            && !key.verifies(&stored.check_value)
        {
            return Err(ClientError::WrongSecretsKey { given: key.id(), stored: stored.key_id });
        }
        let text = std::str::from_utf8(value).map_err(|_| crate::secrets::SecretsError::NotText(name.to_string()))?;
        let sealed = key.seal(name, text);
        let check = KeyCheck { key_id: key.id(), check_value: key.check_value() };
        Ok(self.store().secret_put(name, &sealed, &check, self.clock().now()).await?)
    }

    /// Every secret's name and times (never a value).
    pub async fn secret_list(&self) -> Result<Vec<SecretInfo>, ClientError> {
        Ok(self.store().secret_list().await?)
    }

    /// Deletes a secret; refused while a template's grants use it.
    pub async fn secret_delete(&self, name: &str) -> Result<(), ClientError> {
        let users: Vec<String> = self
            .template_list()
            .await?
            .into_iter()
            .filter(|t| t.grants.secret_names().iter().any(|s| s == name))
            .map(|t| format!("`{}`", t.name))
            .collect();
        if !users.is_empty() {
            return Err(ClientError::SecretInUse { secret: name.to_string(), templates: users.join(", ") });
        }
        if self.store().secret_delete(name).await? { Ok(()) } else { Err(ClientError::NoSuchSecret(name.to_string())) }
    }

    /// Checks that every secret `grants` names exists.
    pub(super) async fn check_secrets_exist(&self, template: &str, grants: &Grants) -> Result<(), ClientError> {
        let names = grants.secret_names();
        if names.is_empty() {
            return Ok(());
        }
        let found = self.store().secret_sealed(&names).await?;
        match names.iter().find(|n| !found.iter().any(|(f, _)| f == *n)) {
            Some(missing) => Err(ClientError::UnknownSecret { template: template.to_string(), secret: missing.clone() }),
            None => Ok(()),
        }
    }

    /// What a run of a job of `template` may reach and read: the template's
    /// grants, narrowed by the job, with the values of the secrets they use.
    /// `None` when they grant nothing. `Err` (a message for the run's
    /// failure) when a secret cannot be opened or the narrowing no longer fits.
    pub(crate) async fn capabilities(
        &self,
        template: &str,
        grants: &Grants,
        narrowed: Option<&[AllowedHost]>,
    ) -> Result<Option<Arc<Capabilities>>, String> {
        if grants.is_empty() {
            return Ok(None);
        }
        let grants = match narrowed {
            Some(hosts) => grants.narrow(template, hosts).map_err(|e| e.to_string())?,
            None => grants.clone(),
        };
        let names = grants.secret_names();
        let mut secrets = BTreeMap::new();
        if !names.is_empty() {
            let key = self.secrets_key("running a job whose template uses secrets").map_err(|e| e.to_string())?;
            let sealed = self.store().secret_sealed(&names).await.map_err(|e| format!("could not read the template's secrets: {e}"))?;
            for (name, sealed) in sealed {
                secrets.insert(name.clone(), key.open(&name, &sealed).map_err(|e| e.to_string())?);
            }
        }
        Ok(Some(Arc::new(Capabilities { grants, secrets })))
    }
}
