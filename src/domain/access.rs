//! Who is calling and what they may do: scopes, permissions, API keys (their secret format,
//! hashing and validation) and audit events.

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::{Error, Result};
use super::validate::Violations;
use super::wire_enum;

wire_enum! {
    /// What an API key may do.
    Scope {
        /// Read incidents, their timelines and components.
        IncidentsRead = "incidents:read",
        /// Declare, edit, move, acknowledge and delete incidents; post updates.
        IncidentsWrite = "incidents:write",
        /// Create, edit and delete components.
        ComponentsWrite = "components:write",
        /// Schedule, edit, move and cancel maintenance.
        MaintenanceWrite = "maintenance:write",
        /// Manage notification subscriptions.
        SubscriptionsManage = "subscriptions:manage",
        /// Everything, including API keys and the audit trail.
        Admin = "admin",
    }
}

/// What an operation needs. Each is granted by the scopes listed in [`Permission::granted_by`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadIncidents,
    WriteIncidents,
    ReadComponents,
    WriteComponents,
    ReadMaintenance,
    WriteMaintenance,
    ManageSubscriptions,
    Admin,
}

impl Permission {
    /// The scopes that grant this permission. `admin` grants everything; writing incidents
    /// includes reading them; components
    /// and maintenance are readable with any incident, component or maintenance scope.
    pub fn granted_by(self) -> &'static [Scope] {
        use Scope::*;
        match self {
            Permission::ReadIncidents => &[IncidentsRead, IncidentsWrite, Admin],
            Permission::WriteIncidents => &[IncidentsWrite, Admin],
            Permission::ReadComponents => &[IncidentsRead, IncidentsWrite, ComponentsWrite, Admin],
            Permission::WriteComponents => &[ComponentsWrite, Admin],
            Permission::ReadMaintenance => &[IncidentsRead, IncidentsWrite, ComponentsWrite, MaintenanceWrite, Admin],
            Permission::WriteMaintenance => &[MaintenanceWrite, Admin],
            Permission::ManageSubscriptions => &[SubscriptionsManage, Admin],
            Permission::Admin => &[Admin],
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The API key, or `None` for the admin token and the system itself.
    pub key_id: Option<Uuid>,
    /// The key's name: the default author of what the caller changes.
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Caller {
    /// The holder of `INCIDENTD_ADMIN_TOKEN`.
    pub fn admin_token() -> Self {
        Caller { key_id: None, name: "admin".into(), scopes: vec![Scope::Admin] }
    }

    /// The service itself (bootstrap, command-line tools).
    pub fn system() -> Self {
        Caller { key_id: None, name: "system".into(), scopes: vec![Scope::Admin] }
    }

    pub fn may(&self, permission: Permission) -> bool {
        permission.granted_by().iter().any(|s| self.scopes.contains(s))
    }

    /// Fails with [`Error::PermissionDenied`] unless a scope of the caller grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<()> {
        if self.may(permission) {
            return Ok(());
        }
        let needed: Vec<&str> = permission.granted_by().iter().map(|s| s.as_str()).collect();
        Err(Error::PermissionDenied(format!(
            "the API key {:?} lacks the scope this needs: one of {}",
            self.name,
            needed.join(", ")
        )))
    }

    /// A stable label for per-caller state (rate limits, idempotency keys).
    pub fn label(&self) -> String {
        match self.key_id {
            Some(id) => id.to_string(),
            None => self.name.clone(),
        }
    }
}

/// An API key as stored and listed (never with its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the secret (`ind_` and the lookup id), to recognise it.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Updated at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: Option<String>,
}

impl ApiKey {
    /// Why the key cannot be used now, if it cannot.
    pub fn unusable(&self, now: DateTime<Utc>) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("the API key has been revoked")
        } else if self.expires_at.is_some_and(|e| e <= now) {
            Some("the API key has expired")
        } else {
            None
        }
    }

    pub fn caller(&self) -> Caller {
        Caller { key_id: Some(self.id), name: self.name.clone(), scopes: self.scopes.clone() }
    }
}

/// The input to create an API key, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewApiKey {
    pub name: Option<String>,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A freshly made key: what is stored, and the secret shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub lookup: String,
    pub secret_hash: Vec<u8>,
    pub secret: String,
}

impl NewApiKey {
    pub fn issue(self, created_by: &str, now: DateTime<Utc>) -> Result<IssuedKey> {
        let mut v = Violations::new();
        let name = v.required_text("name", self.name.as_deref(), 100);
        if self.scopes.is_empty() {
            v.add("scopes", format!("at least one scope is required; one of: {}", Scope::expected()));
        }
        let mut scopes = self.scopes;
        scopes.sort();
        scopes.dedup();
        if let Some(e) = self.expires_at
            && e <= now
        {
            v.add("expires_at", "must be in the future");
        }
        v.finish()?;
        let token = Token::generate();
        Ok(IssuedKey {
            key: ApiKey {
                id: Uuid::now_v7(),
                name,
                prefix: token.prefix(),
                scopes,
                created_at: now,
                expires_at: self.expires_at.map(super::truncate),
                last_used_at: None,
                revoked_at: None,
                created_by: Some(created_by.to_string()),
            },
            lookup: token.lookup().to_string(),
            secret_hash: hash_secret(&token.0),
            secret: token.0,
        })
    }
}

/// The prefix every incidentd secret starts with, for secret scanners.
pub const TOKEN_PREFIX: &str = "ind_";
const LOOKUP_LEN: usize = 12;
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// `ind_` + lookup id + random part + CRC-32 checksum, all base62.
pub const TOKEN_LEN: usize = TOKEN_PREFIX.len() + LOOKUP_LEN + RANDOM_LEN + CHECKSUM_LEN;

/// An API key secret: `ind_` + a 12-character lookup id + 32 random characters + a
/// 6-character CRC-32 of what precedes it (base62), so scanners can tell a real key from
/// noise without asking us.
#[derive(Clone)]
pub struct Token(String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token({}…)", self.prefix())
    }
}

impl Token {
    fn generate() -> Self {
        let mut rng = rand::rng();
        let body = format!(
            "{TOKEN_PREFIX}{}{}",
            Alphanumeric.sample_string(&mut rng, LOOKUP_LEN),
            Alphanumeric.sample_string(&mut rng, RANDOM_LEN)
        );
        let checksum = base62(crc32fast::hash(body.as_bytes()), CHECKSUM_LEN);
        Token(format!("{body}{checksum}"))
    }

    /// Checks the shape and checksum of a presented secret; `None` if it is not one of ours.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix(TOKEN_PREFIX)?;
        if s.len() != TOKEN_LEN || !rest.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (body, checksum) = s.split_at(TOKEN_LEN - CHECKSUM_LEN);
        (base62(crc32fast::hash(body.as_bytes()), CHECKSUM_LEN) == checksum).then(|| Token(s.to_string()))
    }

    /// The id the key is looked up by (not secret).
    pub fn lookup(&self) -> &str {
        &self.0[TOKEN_PREFIX.len()..TOKEN_PREFIX.len() + LOOKUP_LEN]
    }

    /// `ind_` and the lookup id: safe to show.
    pub fn prefix(&self) -> String {
        self.0[..TOKEN_PREFIX.len() + LOOKUP_LEN].to_string()
    }

    pub fn hash(&self) -> Vec<u8> {
        hash_secret(&self.0)
    }
}

/// SHA-256 of a secret. Keys are long and random, so a fast hash is enough: there is no
/// dictionary to guess from.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Whether two secret hashes are equal, in time independent of where they differ.
pub fn hashes_match(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn base62(mut n: u32, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).expect("ASCII digits")
}

/// One entry of the audit trail: who changed what, and when. Never holds secrets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    /// The API key that acted; absent for the admin token and the system itself.
    pub actor_key_id: Option<Uuid>,
    pub actor_name: String,
    /// e.g. `incident.create`, `incident.transition`, `component.delete`, `api_key.revoke`.
    pub action: String,
    /// `incident`, `component` or `api_key`.
    pub resource_type: String,
    pub resource_id: String,
    /// What changed: field names, statuses, scopes; never secrets or field values.
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(
        caller: &Caller,
        action: &str,
        resource_type: &str,
        resource_id: impl ToString,
        details: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Self {
        AuditEvent {
            id: Uuid::now_v7(),
            occurred_at: now,
            actor_key_id: caller.key_id,
            actor_name: caller.name.clone(),
            action: action.to_string(),
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            details,
        }
    }
}

/// Filters for listing audit events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub actor_key_id: Option<Uuid>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_token_parses_and_shows_only_its_lookup_prefix() {
        let token = Token::generate();
        assert_eq!(token.0.len(), TOKEN_LEN);
        let parsed = Token::parse(&token.0).expect("a generated token parses");
        assert_eq!(parsed.lookup(), token.lookup());
        assert_eq!(token.prefix(), format!("{TOKEN_PREFIX}{}", token.lookup()));
        assert!(!format!("{token:?}").contains(&token.0[token.prefix().len()..]), "Debug hides the secret");
    }

    #[test]
    fn a_token_with_a_wrong_checksum_prefix_length_or_alphabet_is_not_ours() {
        let token = Token::generate().0;
        let mut flipped = token.clone().into_bytes();
        let i = TOKEN_PREFIX.len() + 3;
        flipped[i] = if flipped[i] == b'a' { b'b' } else { b'a' };
        let flipped = String::from_utf8(flipped).unwrap();
        let wrong_prefix = format!("inx_{}", &token[TOKEN_PREFIX.len()..]);
        let with_symbol = format!("{}-{}", &token[..10], &token[11..]);
        for bad in [flipped.as_str(), &token[..TOKEN_LEN - 1], &format!("{token}0"), &wrong_prefix, &with_symbol, ""] {
            assert!(Token::parse(bad).is_none(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn hashes_match_only_when_equal() {
        let (a, b) = (hash_secret("one"), hash_secret("two"));
        assert!(hashes_match(&a, &hash_secret("one")));
        assert!(!hashes_match(&a, &b));
        assert!(!hashes_match(&a, &a[..31]));
    }

    #[test]
    fn each_permission_is_granted_by_admin_and_the_documented_scopes() {
        use Scope::*;
        let table = [
            (Permission::ReadIncidents, vec![IncidentsRead, IncidentsWrite, Admin]),
            (Permission::WriteIncidents, vec![IncidentsWrite, Admin]),
            (Permission::ReadComponents, vec![IncidentsRead, IncidentsWrite, ComponentsWrite, Admin]),
            (Permission::WriteComponents, vec![ComponentsWrite, Admin]),
            (Permission::ManageSubscriptions, vec![SubscriptionsManage, Admin]),
            (Permission::Admin, vec![Admin]),
        ];
        for (permission, scopes) in table {
            for scope in Scope::ALL {
                let caller = Caller { key_id: None, name: "t".into(), scopes: vec![*scope] };
                assert_eq!(caller.may(permission), scopes.contains(scope), "{scope} for {permission:?}");
            }
        }
    }
}
