//! The stored secrets the service uses again, sealed with the key ring ([`crate::secrets`]):
//! webhook signing secrets (`subscriptions.secret`, `subscriptions.previous_secret`) and the
//! keys the service keeps for itself (`service_keys.value`). Every read and write of those
//! columns, in both backends, seals and opens here, so plaintext never reaches the database.
//! Each value is bound to its place (table, column, row) through the AEAD's associated data.
//!
//! Also the pass that seals stored values again ([`KeyRing::reseal`]): at every start with a
//! key (legacy plaintext) and for `incidentd secrets rotate` (values under an older key). It
//! replaces a value only while the row still holds what was read, so replicas running it at
//! once, or a change committed meanwhile, lose nothing.

use uuid::Uuid;

use super::DbId;
use crate::domain::subscription::SigningSecrets;
use crate::domain::{Error, Result};
use crate::secrets::{KeyRing, OpenError, Reseal};

/// Where a subscription's secret lives: its associated data.
fn subscription_place(column: &str, id: Uuid) -> String {
    format!("subscriptions.{column}:{id}")
}

/// Where a service key lives: its associated data.
fn service_key_place(name: &str) -> String {
    format!("service_keys.value:{name}")
}

fn open_err(e: OpenError) -> Error {
    Error::Internal(e.to_string())
}

/// A subscription's secrets as stored: `(secret, previous_secret)`.
pub fn seal_signing_secrets(keys: &KeyRing, id: Uuid, secrets: &SigningSecrets) -> (Option<String>, Option<String>) {
    let SigningSecrets { current, previous, previous_expires_at: _ } = secrets;
    (
        current.as_deref().map(|s| keys.seal_text(s, &subscription_place("secret", id))),
        previous.as_deref().map(|s| keys.seal_text(s, &subscription_place("previous_secret", id))),
    )
}

/// A subscription's secrets as read, opened: `(secret, previous_secret)`.
pub fn open_signing_secrets(
    keys: &KeyRing,
    id: Uuid,
    secret: Option<String>,
    previous: Option<String>,
) -> Result<(Option<String>, Option<String>)> {
    let open = |column: &str, value: Option<String>| {
        value.map(|v| keys.open_text(&v, &subscription_place(column, id)).map_err(open_err)).transpose()
    };
    Ok((open("secret", secret)?, open("previous_secret", previous)?))
}

/// A service key as stored.
pub fn seal_service_key(keys: &KeyRing, name: &str, value: &[u8]) -> Vec<u8> {
    keys.seal(value, &service_key_place(name))
}

/// A service key as read, opened.
pub fn open_service_key(keys: &KeyRing, name: &str, stored: &[u8]) -> Result<Vec<u8>> {
    keys.open(stored, &service_key_place(name)).map_err(open_err)
}

/// How many stored secrets a pass read, and how many it sealed again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    pub checked: u64,
    pub resealed: u64,
}

/// Rows of subscriptions holding a secret, after `$1` in id order, at most `$2`.
pub const SUBSCRIPTION_SECRETS_PAGE: &str = "SELECT id, secret, previous_secret FROM subscriptions \
     WHERE id > $1 AND (secret IS NOT NULL OR previous_secret IS NOT NULL) ORDER BY id LIMIT $2";
/// Every service key (a handful).
pub const SERVICE_KEYS: &str = "SELECT name, value FROM service_keys ORDER BY name";
/// How many rows a pass reads (and rewrites in one transaction) at a time.
pub const RESEAL_BATCH: i64 = 100;

/// One value to replace: `sql` binds the new value, the row's key, and the value read.
pub struct Replacement<K, V> {
    pub sql: &'static str,
    pub key: K,
    pub new: V,
    pub old: V,
}

/// The replacements a page of [`SUBSCRIPTION_SECRETS_PAGE`] needs; fails on a value no key
/// opens.
pub fn reseal_subscriptions(
    keys: &KeyRing,
    rows: Vec<(DbId, Option<String>, Option<String>)>,
    scope: Reseal,
    tally: &mut Resealed,
) -> Result<Vec<Replacement<DbId, String>>> {
    const COLUMNS: [(&str, &str); 2] = [
        ("secret", "UPDATE subscriptions SET secret = $1 WHERE id = $2 AND secret = $3"),
        ("previous_secret", "UPDATE subscriptions SET previous_secret = $1 WHERE id = $2 AND previous_secret = $3"),
    ];
    let mut out = Vec::new();
    for (id, secret, previous) in rows {
        for ((column, sql), value) in COLUMNS.into_iter().zip([secret, previous]) {
            let Some(old) = value else { continue };
            tally.checked += 1;
            let place = subscription_place(column, id.0);
            if let Some(new) = keys.reseal(old.as_bytes(), &place, scope).map_err(open_err)? {
                let new = String::from_utf8(new).expect("sealed values are UTF-8");
                out.push(Replacement { sql, key: id, new, old });
            }
        }
    }
    Ok(out)
}

/// The replacements the rows of [`SERVICE_KEYS`] need; fails on a value no key opens.
pub fn reseal_service_keys(
    keys: &KeyRing,
    rows: Vec<(String, Vec<u8>)>,
    scope: Reseal,
    tally: &mut Resealed,
) -> Result<Vec<Replacement<String, Vec<u8>>>> {
    let mut out = Vec::new();
    for (name, old) in rows {
        tally.checked += 1;
        if let Some(new) = keys.reseal(&old, &service_key_place(&name), scope).map_err(open_err)? {
            let sql = "UPDATE service_keys SET value = $1 WHERE name = $2 AND value = $3";
            out.push(Replacement { sql, key: name, new, old });
        }
    }
    Ok(out)
}
