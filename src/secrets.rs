//! Secrets at rest: the key ring `INCIDENTD_SECRET_KEY` holds, and the sealing of the
//! secrets the service stores and must use again (webhook signing secrets, the key
//! subscriber links are signed with). Verify-only secrets (API keys, integration secrets)
//! are stored as hashes and never come here.
//!
//! A sealed value is text: `enc:v1:<key id>:<base64(nonce ‖ ciphertext ‖ tag)>`, sealed with
//! XChaCha20-Poly1305 under a random 24-byte nonce. The key id is the first 8 hex digits of
//! the key's SHA-256, so any key of the ring can open a value and rotation knows which values
//! to seal again. The associated data is the value's place (table, column, row), so a sealed
//! value copied to another row or column does not open. A stored value without the `enc:`
//! prefix is legacy plaintext.
//!
//! Pure: no I/O, no database; the store seals and opens through this module only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use rand::RngExt as _;
use sha2::{Digest, Sha256};

/// The environment variable that holds the keys.
pub const ENV: &str = "INCIDENTD_SECRET_KEY";

/// The prefix of every sealed value (format version 1).
const PREFIX: &str = "enc:v1:";
const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// The keys secrets are sealed with: the first seals, every one opens. Empty when no key is
/// configured (Postgres without `INCIDENTD_SECRET_KEY`): values are then stored as given.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

struct RingKey {
    id: String,
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").field("key_ids", &self.key_ids()).finish()
    }
}

/// A key setting that cannot be used; the message names where it came from.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{source_name} is empty: set it to base64 of 32 random bytes (`openssl rand -base64 32`)")]
    Empty { source_name: String },
    #[error(
        "{source_name}: key {position} is not valid base64; a key is base64 of 32 random bytes (`openssl rand -base64 32`), several are separated by commas"
    )]
    NotBase64 { source_name: String, position: usize },
    #[error(
        "{source_name}: key {position} is {len} bytes long; a key is 32 random bytes, base64-encoded (`openssl rand -base64 32`)"
    )]
    WrongLength { source_name: String, position: usize, len: usize },
}

/// A stored value that cannot be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error(
        "{place} is encrypted under key {key_id}, which {ENV} does not hold (it holds: {held}); add that key to {ENV}"
    )]
    UnknownKey { place: String, key_id: String, held: String },
    #[error("{place} does not decrypt under key {key_id}: it was altered or copied from another row")]
    Corrupt { place: String, key_id: String },
    #[error("{place} is encrypted but malformed")]
    Malformed { place: String },
}

/// How a stored value is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Legacy plaintext (or stored without a key).
    Plain,
    /// Sealed under the key with this id.
    Sealed(String),
}

/// Which stored values [`KeyRing::reseal`] seals again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reseal {
    /// Only plaintext ones (every start with a key); sealed ones are checked to open.
    Plaintext,
    /// Every one not sealed under the first key (`incidentd secrets rotate`).
    NotUnderFirstKey,
}

impl KeyRing {
    /// Parses comma-separated keys, each base64 of 32 bytes; `source_name` names the setting
    /// or file in errors. The same key given twice counts once.
    pub fn parse(value: &str, source_name: &str) -> Result<KeyRing, KeyError> {
        let source_name = source_name.to_string();
        if value.trim().is_empty() {
            return Err(KeyError::Empty { source_name });
        }
        let mut keys: Vec<RingKey> = Vec::new();
        for (i, part) in value.split(',').enumerate() {
            let position = i + 1;
            let bytes = STANDARD
                .decode(part.trim())
                .map_err(|_| KeyError::NotBase64 { source_name: source_name.clone(), position })?;
            if bytes.len() != KEY_LEN {
                return Err(KeyError::WrongLength { source_name, position, len: bytes.len() });
            }
            let key = RingKey::new(&bytes);
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        Ok(KeyRing { keys })
    }

    /// A ring without keys: values are stored as given.
    pub fn unencrypted() -> KeyRing {
        KeyRing { keys: Vec::new() }
    }

    /// A new key: base64 of 32 random bytes (what `openssl rand -base64 32` prints).
    pub fn generate_key() -> String {
        let bytes: [u8; KEY_LEN] = rand::rng().random();
        STANDARD.encode(bytes)
    }

    /// Whether new values are sealed (the ring holds a key).
    pub fn is_encrypting(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The ids of the keys, the sealing one first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// How `stored` is kept.
    pub fn kept(stored: &[u8]) -> Kept {
        match stored
            .strip_prefix(PREFIX.as_bytes())
            .and_then(|rest| rest.iter().position(|&b| b == b':').map(|n| &rest[..n]))
        {
            Some(id) => Kept::Sealed(String::from_utf8_lossy(id).into_owned()),
            None => Kept::Plain,
        }
    }

    /// Seals `plaintext` for the place `place` (e.g. `subscriptions.secret:<id>`) under the
    /// first key; without a key, returns it unchanged.
    pub fn seal(&self, plaintext: &[u8], place: &str) -> Vec<u8> {
        let Some(key) = self.keys.first() else { return plaintext.to_vec() };
        let nonce_bytes: [u8; NONCE_LEN] = rand::rng().random();
        let nonce = XNonce::from(nonce_bytes);
        let sealed = key
            .cipher
            .encrypt(&nonce, Payload { msg: plaintext, aad: place.as_bytes() })
            .expect("XChaCha20-Poly1305 encrypts any message shorter than 256 GiB");
        let mut body = Vec::with_capacity(NONCE_LEN + sealed.len());
        body.extend_from_slice(&nonce_bytes);
        body.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", key.id, STANDARD.encode(body)).into_bytes()
    }

    /// [`seal`](Self::seal) for a text.
    pub fn seal_text(&self, plaintext: &str, place: &str) -> String {
        String::from_utf8(self.seal(plaintext.as_bytes(), place)).expect("sealed values and texts are UTF-8")
    }

    /// Opens a stored value of the place `place`: a sealed one with the key it names, legacy
    /// plaintext as it is.
    pub fn open(&self, stored: &[u8], place: &str) -> Result<Vec<u8>, OpenError> {
        let Kept::Sealed(key_id) = Self::kept(stored) else { return Ok(stored.to_vec()) };
        let Some(key) = self.keys.iter().find(|k| k.id == key_id) else {
            let held = match self.keys.is_empty() {
                true => "no key: it is not set".to_string(),
                false => self.key_ids().join(", "),
            };
            return Err(OpenError::UnknownKey { place: place.to_string(), key_id, held });
        };
        let encoded = &stored[PREFIX.len() + key_id.len() + 1..];
        let body = STANDARD.decode(encoded).map_err(|_| OpenError::Malformed { place: place.to_string() })?;
        if body.len() < NONCE_LEN + TAG_LEN {
            return Err(OpenError::Malformed { place: place.to_string() });
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed { place: place.to_string() })?;
        key.cipher
            .decrypt(&nonce, Payload { msg: sealed, aad: place.as_bytes() })
            .map_err(|_| OpenError::Corrupt { place: place.to_string(), key_id })
    }

    /// [`open`](Self::open) for a text.
    pub fn open_text(&self, stored: &str, place: &str) -> Result<String, OpenError> {
        let plain = self.open(stored.as_bytes(), place)?;
        String::from_utf8(plain).map_err(|_| OpenError::Malformed { place: place.to_string() })
    }

    /// The value to store instead of `stored`, when `scope` wants it sealed again under the
    /// first key; `None` when it stays. Fails when a sealed value does not open (every
    /// sealed value is opened, so a missing key is found at once). Without a key nothing is
    /// sealed, but sealed values are still checked.
    pub fn reseal(&self, stored: &[u8], place: &str, scope: Reseal) -> Result<Option<Vec<u8>>, OpenError> {
        let plain = self.open(stored, place)?;
        let first = self.keys.first().map(|k| k.id.as_str());
        let again = match (Self::kept(stored), first) {
            (_, None) => false,
            (Kept::Plain, Some(_)) => true,
            (Kept::Sealed(id), Some(first)) => scope == Reseal::NotUnderFirstKey && id != first,
        };
        Ok(again.then(|| self.seal(&plain, place)))
    }
}

impl RingKey {
    fn new(bytes: &[u8]) -> RingKey {
        let digest = Sha256::digest(bytes);
        let id = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        RingKey { id, cipher: XChaCha20Poly1305::new_from_slice(bytes).expect("a 32-byte key") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        STANDARD.encode([n; 32])
    }

    fn ring(value: &str) -> KeyRing {
        KeyRing::parse(value, ENV).expect("valid keys")
    }

    #[test]
    fn a_sealed_value_opens_to_what_was_sealed_and_shows_none_of_it() {
        let keys = ring(&key(1));
        let sealed = keys.seal_text("whsec_abc", "subscriptions.secret:1");
        assert!(sealed.starts_with(&format!("enc:v1:{}:", keys.key_ids()[0])), "{sealed}");
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(keys.open_text(&sealed, "subscriptions.secret:1").unwrap(), "whsec_abc");
        // A fresh nonce each time: sealing twice gives two different values.
        assert_ne!(sealed, keys.seal_text("whsec_abc", "subscriptions.secret:1"));
        assert_eq!(keys.key_ids()[0].len(), 8);
    }

    #[test]
    fn legacy_plaintext_opens_as_it_is_and_a_ring_without_keys_stores_as_given() {
        assert_eq!(ring(&key(1)).open_text("whsec_plain", "p").unwrap(), "whsec_plain");
        let none = KeyRing::unencrypted();
        assert!(!none.is_encrypting());
        assert_eq!(none.seal_text("whsec_plain", "p"), "whsec_plain");
        assert_eq!(none.open_text("whsec_plain", "p").unwrap(), "whsec_plain");
    }

    #[test]
    fn the_wrong_key_does_not_open() {
        let sealed = ring(&key(1)).seal_text("s", "p");
        let err = ring(&key(2)).open_text(&sealed, "p").unwrap_err();
        assert!(matches!(err, OpenError::UnknownKey { .. }), "{err}");
        assert!(err.to_string().contains(ENV), "{err}");
        let err = KeyRing::unencrypted().open_text(&sealed, "p").unwrap_err();
        assert!(err.to_string().contains("not set"), "{err}");
    }

    #[test]
    fn a_tampered_or_moved_value_does_not_open() {
        let keys = ring(&key(1));
        let sealed = keys.seal_text("secret", "subscriptions.secret:1");
        // Another row or column (the associated data differs).
        assert!(matches!(keys.open_text(&sealed, "subscriptions.secret:2"), Err(OpenError::Corrupt { .. })));
        assert!(matches!(keys.open_text(&sealed, "subscriptions.previous_secret:1"), Err(OpenError::Corrupt { .. })));
        // A flipped bit in the ciphertext.
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut bytes = STANDARD.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}:{}", STANDARD.encode(bytes));
        assert!(matches!(keys.open_text(&tampered, "subscriptions.secret:1"), Err(OpenError::Corrupt { .. })));
        // Cut short, or not base64.
        assert!(matches!(keys.open_text(&format!("{head}:AAAA"), "p"), Err(OpenError::Malformed { .. })));
        assert!(matches!(keys.open_text(&format!("{head}:!!"), "p"), Err(OpenError::Malformed { .. })));
    }

    #[test]
    fn rotation_seals_with_the_first_key_and_opens_with_any() {
        let old = ring(&key(1));
        let sealed_old = old.seal("s".as_bytes(), "p");
        let both = ring(&format!("{}, {}", key(2), key(1)));
        assert_eq!(both.key_ids().len(), 2);
        assert_eq!(both.open(&sealed_old, "p").unwrap(), b"s");
        let sealed_new = both.seal(b"s", "p");
        assert_eq!(KeyRing::kept(&sealed_new), Kept::Sealed(both.key_ids()[0].to_string()));

        // A start seals plaintext only; rotation also what is under another key.
        assert_eq!(both.reseal(&sealed_old, "p", Reseal::Plaintext).unwrap(), None);
        let again = both.reseal(&sealed_old, "p", Reseal::NotUnderFirstKey).unwrap().expect("sealed again");
        assert_eq!(KeyRing::kept(&again), Kept::Sealed(both.key_ids()[0].to_string()));
        assert_eq!(ring(&key(2)).open(&again, "p").unwrap(), b"s", "the old key can be dropped");
        assert_eq!(both.reseal(&again, "p", Reseal::NotUnderFirstKey).unwrap(), None);
        let plain = both.reseal(b"whsec_x", "p", Reseal::Plaintext).unwrap().expect("plaintext is sealed");
        assert_eq!(both.open(&plain, "p").unwrap(), b"whsec_x");
        // Without a key nothing is sealed, and a value under an unknown key fails.
        assert_eq!(KeyRing::unencrypted().reseal(b"whsec_x", "p", Reseal::NotUnderFirstKey).unwrap(), None);
        assert!(ring(&key(3)).reseal(&sealed_old, "p", Reseal::Plaintext).is_err());
    }

    #[test]
    fn bad_keys_are_refused_naming_the_setting() {
        let err = KeyRing::parse("not base64!", ENV).unwrap_err();
        assert!(matches!(err, KeyError::NotBase64 { position: 1, .. }));
        assert!(err.to_string().starts_with("INCIDENTD_SECRET_KEY: key 1 is not valid base64"), "{err}");
        let short = STANDARD.encode([7u8; 16]);
        let err = KeyRing::parse(&format!("{},{short}", key(1)), ENV).unwrap_err();
        assert_eq!(err, KeyError::WrongLength { source_name: ENV.into(), position: 2, len: 16 });
        assert!(err.to_string().contains("INCIDENTD_SECRET_KEY: key 2 is 16 bytes long"), "{err}");
        let err = KeyRing::parse("  ", ENV).unwrap_err();
        assert!(err.to_string().starts_with("INCIDENTD_SECRET_KEY is empty"), "{err}");
        assert!(KeyRing::parse(&format!("{},", key(1)), ENV).is_err(), "an empty entry is refused");
        // A generated key parses; the same key twice counts once.
        let generated = KeyRing::generate_key();
        assert_eq!(ring(&format!("{generated},{generated}")).key_ids().len(), 1);
    }

    #[test]
    fn debug_shows_key_ids_only() {
        let keys = ring(&key(1));
        let shown = format!("{keys:?}");
        assert!(shown.contains(keys.key_ids()[0]) && !shown.contains(&key(1)), "{shown}");
    }
}
