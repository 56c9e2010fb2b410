//! Secrets at rest: the node's secrets key (32 bytes from a file or
//! `ELIHU_SECRETS_KEY`, as hex or base64), sealing and opening values with
//! XChaCha20-Poly1305 bound to their name, the check value that tells a wrong
//! key from the right one, and the rules for names and values. No I/O besides
//! reading the key file; the store keeps only sealed bytes.

use std::path::Path;

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

pub use crate::grants::check_secret_name;

/// The largest secret value accepted.
pub const MAX_SECRET_BYTES: usize = 16 << 10;
/// The shortest secret value accepted: shorter values would turn ordinary
/// text into `***` wherever a run's logs are redacted.
pub const MIN_SECRET_BYTES: usize = 4;

const NONCE_BYTES: usize = 24;
const TAG_BYTES: usize = 16;
const CHECK_AAD: &[u8] = b"elihu:secrets-key-check:v1";
const CHECK_TEXT: &[u8] = b"elihu secrets key check";

/// Something wrong with a key, a value or a sealed secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// The key text is not 32 bytes in hex or base64 (the text is never echoed).
    #[error(
        "the secrets key must be 32 bytes written as 64 hex digits or as base64 ({0}); `elihu secret keygen` prints a fresh one"
    )]
    BadKey(String),
    /// The key file could not be read.
    #[error("cannot read the secrets key file {path}: {error}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        error: String,
    },
    /// A value outside the accepted size.
    #[error("the value of secret `{name}` is {size} bytes; a secret must be {min} to {max} bytes")]
    ValueSize {
        /// The secret.
        name: String,
        /// Its size.
        size: usize,
        /// The smallest accepted.
        min: usize,
        /// The largest accepted.
        max: usize,
    },
    /// A value that is not UTF-8 text.
    #[error("the value of secret `{0}` is not UTF-8 text")]
    NotText(String),
    /// The sealed bytes do not open with this key (wrong key, or a row moved under another name).
    #[error("secret `{0}` does not open with this node's secrets key (the key differs from the one it was stored with)")]
    WrongKey(String),
}

/// The key every node uses to seal and open secrets. Its bytes are wiped
/// when it is dropped and never printed.
#[derive(Clone)]
pub struct SecretsKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretsKey(id {})", self.id())
    }
}

impl SecretsKey {
    /// Reads a key written as 64 hex digits or as base64 of 32 bytes
    /// (surrounding whitespace ignored).
    pub fn parse(text: &str) -> Result<SecretsKey, SecretsError> {
        let t = text.trim();
        let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            Zeroizing::new(hex::decode(t).map_err(|_| SecretsError::BadKey("bad hex".into()))?)
        } else {
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(t)
                    .map_err(|_| SecretsError::BadKey("it is neither 64 hex digits nor base64".into()))?,
            )
        };
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SecretsError::BadKey(format!("it decodes to {} bytes", bytes.len())))?;
        Ok(SecretsKey(Zeroizing::new(key)))
    }

    /// Reads the key from a file.
    pub fn from_file(path: &Path) -> Result<SecretsKey, SecretsError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| SecretsError::KeyFile {
            path: path.display().to_string(),
            error: e.to_string(),
        })?);
        SecretsKey::parse(&text)
    }

    /// A fresh random key.
    pub fn generate() -> SecretsKey {
        SecretsKey(Zeroizing::new(XChaCha20Poly1305::generate_key(&mut OsRng).into()))
    }

    /// The key as 64 hex digits (for `elihu secret keygen` only).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }

    /// A short id of the key (8 hex digits of a hash), safe to print, so
    /// operators can tell whether two nodes have the same key.
    pub fn id(&self) -> String {
        let mut hash = Sha256::new();
        hash.update(b"elihu secrets key id");
        hash.update(*self.0);
        hex::encode(&hash.finalize()[..4])
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }

    fn seal_with(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        // Encrypting into memory fails only past ~256 GiB; a secret is 16 KiB at most.
        let sealed = self.cipher().encrypt(&nonce, Payload { msg: plain, aad }).unwrap_or_default();
        out.extend(sealed);
        out
    }

    fn open_with(&self, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < NONCE_BYTES + TAG_BYTES {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_BYTES);
        self.cipher().decrypt(XNonce::from_slice(nonce), Payload { msg: body, aad }).ok().map(Zeroizing::new)
    }

    /// Seals a secret's value, bound to its name.
    pub fn seal(&self, name: &str, value: &str) -> Vec<u8> {
        self.seal_with(&aad(name), value.as_bytes())
    }

    /// Opens a sealed secret.
    pub fn open(&self, name: &str, sealed: &[u8]) -> Result<SecretValue, SecretsError> {
        let plain = self.open_with(&aad(name), sealed).ok_or_else(|| SecretsError::WrongKey(name.to_string()))?;
        let text = String::from_utf8(plain.to_vec()).map_err(|_| SecretsError::NotText(name.to_string()))?;
        Ok(SecretValue(Zeroizing::new(text)))
    }

    /// The check value stored with the first secret: it opens only with this key.
    pub fn check_value(&self) -> Vec<u8> {
        self.seal_with(CHECK_AAD, CHECK_TEXT)
    }

    /// Whether `check` (a stored [`check_value`](Self::check_value)) was made with this key.
    pub fn verifies(&self, check: &[u8]) -> bool {
        self.open_with(CHECK_AAD, check).is_some_and(|p| p.as_slice() == CHECK_TEXT)
    }
}

fn aad(name: &str) -> Vec<u8> {
    format!("elihu:secret:v1:{name}").into_bytes()
}

/// A secret's value in memory: wiped on drop, `***` when printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    /// The value (hand it only to what needs it: a header, the guest that was granted it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretValue {
    fn from(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Checks a value about to be stored under `name`: text, and within
/// [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`].
pub fn check_value(name: &str, value: &[u8]) -> Result<(), SecretsError> {
    if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&value.len()) {
        return Err(SecretsError::ValueSize {
            name: name.to_string(),
            size: value.len(),
            min: MIN_SECRET_BYTES,
            max: MAX_SECRET_BYTES,
        });
    }
    if std::str::from_utf8(value).is_err() {
        return Err(SecretsError::NotText(name.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_read_as_hex_or_base64_and_nothing_else() {
        let hex_key = SecretsKey::parse(&format!("  {}\n", "ab".repeat(32))).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        assert_eq!(SecretsKey::parse(&b64).unwrap().id(), hex_key.id());
        for bad in ["", "abcd", &"ab".repeat(31), &base64::engine::general_purpose::STANDARD.encode([1; 16])] {
            let err = SecretsKey::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("the secrets key must be 32 bytes"), "{err}");
            assert!(bad.is_empty() || !err.contains(bad), "the key text is never echoed");
        }
        assert_eq!(format!("{hex_key:?}"), format!("SecretsKey(id {})", hex_key.id()));
        let fresh = SecretsKey::generate();
        assert_eq!(SecretsKey::parse(&fresh.to_hex()).unwrap().id(), fresh.id());
        assert_ne!(fresh.id(), hex_key.id());
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_and_name() {
        let key = SecretsKey::generate();
        let sealed = key.seal("stripe", "sk_live_123");
        assert_eq!(sealed.len(), NONCE_BYTES + "sk_live_123".len() + TAG_BYTES);
        assert!(!sealed.windows(11).any(|w| w == b"sk_live_123"));
        assert_eq!(key.open("stripe", &sealed).unwrap().expose(), "sk_live_123");
        assert!(matches!(key.open("other", &sealed), Err(SecretsError::WrongKey(n)) if n == "other"));
        assert!(matches!(SecretsKey::generate().open("stripe", &sealed), Err(SecretsError::WrongKey(_))));
        assert!(key.open("stripe", &sealed[..10]).is_err());
        assert_ne!(key.seal("stripe", "sk_live_123"), sealed, "a fresh nonce each time");
    }

    #[test]
    fn the_check_value_tells_a_wrong_key() {
        let key = SecretsKey::generate();
        let check = key.check_value();
        assert!(key.verifies(&check));
        assert!(!SecretsKey::generate().verifies(&check));
        assert!(!key.verifies(b"short"));
    }

    #[test]
    fn values_are_text_of_a_sane_size() {
        assert!(check_value("a", b"hunter2").is_ok());
        assert!(matches!(check_value("a", b"abc"), Err(SecretsError::ValueSize { size: 3, .. })));
        assert!(matches!(check_value("a", &vec![b'x'; MAX_SECRET_BYTES + 1]), Err(SecretsError::ValueSize { .. })));
        assert!(matches!(check_value("a", &[0xff, 0xfe, 0xfd, 0xfc]), Err(SecretsError::NotText(_))));
        assert_eq!(format!("{:?}", SecretValue::from("hunter2".to_string())), "***");
    }
}
