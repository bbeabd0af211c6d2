//! Incident identifiers: the UUIDv7 `id` and the human reference `INC-<n>`, either accepted
//! wherever an incident is named.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use super::error::Error;

/// The sequential human reference of an incident, shown as `INC-<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IncidentRef(pub i64);

impl fmt::Display for IncidentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "INC-{}", self.0)
    }
}

impl IncidentRef {
    /// Parses `INC-<n>` (case-insensitive prefix), n ≥ 1.
    pub fn parse(s: &str) -> Option<Self> {
        let (prefix, n) = s.split_at_checked(4)?;
        if !prefix.eq_ignore_ascii_case("INC-") || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        n.parse::<i64>().ok().filter(|n| *n >= 1).map(IncidentRef)
    }
}

impl Serialize for IncidentRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IncidentRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IncidentRef::parse(&s).ok_or_else(|| serde::de::Error::custom("expected INC-<n>"))
    }
}

/// A way to name an incident: its id or its reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IncidentKey {
    Id(Uuid),
    Ref(IncidentRef),
}

impl IncidentKey {
    /// Parses an incident id (UUID) or reference (`INC-42`); `field` names it in the error.
    pub fn parse(field: &str, s: &str) -> Result<Self, Error> {
        let s = s.trim();
        if let Some(r) = IncidentRef::parse(s) {
            return Ok(IncidentKey::Ref(r));
        }
        Uuid::parse_str(s).map(IncidentKey::Id).map_err(|_| {
            Error::invalid(field, format!("{s:?} is neither an incident id (UUID) nor a reference (INC-<n>)"))
        })
    }
}

impl Serialize for IncidentKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for IncidentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IncidentKey::Id(id) => id.fmt(f),
            IncidentKey::Ref(r) => r.fmt(f),
        }
    }
}

/// Parses a UUID naming `field` in the error.
pub fn parse_uuid(field: &str, s: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(s.trim()).map_err(|_| Error::invalid(field, format!("{s:?} is not a valid UUID")))
}
