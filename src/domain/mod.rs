//! Pure domain types and rules. Imports no transport or storage crate (axum, tonic, sqlx):
//! both API adapters and every store backend speak these types.

pub mod access;
pub mod action;
pub mod alert;
pub mod component;
pub mod customer_mail;
pub mod error;
pub mod event;
pub mod history;
pub mod i18n;
pub mod ids;
pub mod incident;
pub mod integration;
pub mod link;
pub mod maintenance;
pub mod page;
pub mod patch;
pub mod postmortem;
pub mod public;
pub mod query;
pub mod retention;
pub mod rfc3339;
pub mod stats;
pub mod subscriber;
pub mod subscriber_list;
pub mod subscription;
pub mod timeline;
pub mod validate;
pub mod version;

pub use access::{ApiKey, AuditEvent, Caller, Permission, Scope};
pub use component::{Component, ComponentPatch, ComponentStatus, NewComponent};
pub use error::{Error, ErrorCode, FieldViolation, Result};
pub use event::{Event, EventType};
pub use ids::{IncidentKey, IncidentRef};
pub use incident::{
    AffectedComponent, Cause, CauseKind, Impact, Incident, NewIncident, Severity, Status, Workaround,
    WorkaroundAvailability,
};
pub use page::{PageRequest, PageToken};
pub use patch::{IncidentPatch, LabelsPatch};
pub use subscription::{Channel, Delivery, DeliveryAttempt, DeliveryStatus, Subscription};
pub use timeline::{FieldChange, NewUpdate, TimelineEntry, TransitionInput, UpdateKind, Visibility};
pub use validate::IdempotencyKey;

use chrono::{DateTime, SubsecRound, Utc};

/// The current time at the precision every store keeps (microseconds), so a value read back
/// equals the value written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Truncates a caller-supplied timestamp to storage precision.
pub fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// Case-folds text for case-insensitive comparison. Stores compare the folded text bytewise,
/// so every backend matches and orders identically (SQL `lower()`/`ILIKE` differ between
/// databases and locales).
pub fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

/// Declares a string-valued enum with its wire names (lower snake case), `as_str`, `FromStr`,
/// `Display`, serde and OpenAPI schema, all from one list.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $wire:tt),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
                 serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }

            /// The accepted wire names, for error messages.
            pub fn expected() -> String {
                [$($wire),+].join(", ")
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> std::result::Result<Self, String> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(format!("unknown value {other:?}; expected one of: {}", $name::expected())),
                }
            }
        }
    };
}
pub(crate) use wire_enum;
