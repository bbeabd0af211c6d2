//! Timeline entries ("updates"): messages people post, and the entries transitions, field
//! changes and acknowledgements add by themselves.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::Result;
use super::incident::{Incident, Status, Transition};
use super::validate::{self, Violations};
use super::wire_enum;

wire_enum! {
    /// Who may see a timeline entry. Public entries are for customers.
    Visibility { Public = "public", Internal = "internal" }
}

wire_enum! {
    /// What produced a timeline entry.
    UpdateKind {
        Created = "created",
        Update = "update",
        StatusChange = "status_change",
        FieldChange = "field_change",
        Acknowledgement = "acknowledgement",
        /// Alerts received from an integration: what fired and what cleared (internal).
        Alert = "alert",
        /// A merge: on the duplicate, where it went; on the incident it went into, what came.
        Merge = "merge",
        /// A link to another incident made or removed.
        Link = "link",
    }
}

/// One changed field, with its values before and after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldChange {
    pub field: String,
    pub old_value: serde_json::Value,
    pub new_value: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub incident_id: Uuid,
    pub kind: UpdateKind,
    pub body: String,
    pub visibility: Visibility,
    /// The status before, when this entry changed it.
    pub status_from: Option<Status>,
    /// The status after, when this entry changed it.
    pub status_to: Option<Status>,
    pub changes: Vec<FieldChange>,
    pub author: String,
    pub created_at: DateTime<Utc>,
}

impl TimelineEntry {
    fn new(incident: &Incident, kind: UpdateKind, body: String, author: &str, now: DateTime<Utc>) -> Self {
        TimelineEntry {
            id: Uuid::now_v7(),
            incident_id: incident.id,
            kind,
            body,
            visibility: Visibility::Internal,
            status_from: None,
            status_to: None,
            changes: Vec::new(),
            author: author.to_string(),
            created_at: now,
        }
    }

    pub fn created(incident: &Incident, author: &str, now: DateTime<Utc>) -> Self {
        let body = format!(
            "Incident declared: {} ({}, {}, impact {}).",
            incident.title, incident.severity, incident.status, incident.impact
        );
        let mut e = Self::new(incident, UpdateKind::Created, body, author, now);
        e.status_to = Some(incident.status);
        e
    }

    pub fn status_change(
        incident: &Incident,
        t: Transition,
        message: Option<String>,
        visibility: Visibility,
        author: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let verb = if t.reopened { "Reopened" } else { "Status changed" };
        let body = message.unwrap_or_else(|| format!("{verb}: {} → {}.", t.from, t.to));
        let mut e = Self::new(incident, UpdateKind::StatusChange, body, author, now);
        e.visibility = visibility;
        e.status_from = Some(t.from);
        e.status_to = Some(t.to);
        e
    }

    pub fn field_change(incident: &Incident, changes: Vec<FieldChange>, author: &str, now: DateTime<Utc>) -> Self {
        let names: Vec<&str> = changes.iter().map(|c| c.field.as_str()).collect();
        let body = format!("Updated {}.", names.join(", "));
        let mut e = Self::new(incident, UpdateKind::FieldChange, body, author, now);
        e.changes = changes;
        e
    }

    pub fn acknowledgement(incident: &Incident, by: &str, now: DateTime<Utc>) -> Self {
        Self::new(incident, UpdateKind::Acknowledgement, format!("Acknowledged by {by}."), by, now)
    }

    /// On a merged incident: where it went.
    pub fn merged_into(source: &Incident, from: Status, target: &Incident, author: &str, now: DateTime<Utc>) -> Self {
        let body = format!("Merged into {} ({}); its timeline continues there.", target.reference, target.title);
        let mut e = Self::new(source, UpdateKind::Merge, body, author, now);
        e.status_from = Some(from);
        e.status_to = Some(Status::Merged);
        e
    }

    /// On the incident another was merged into: what came with it.
    pub fn merged_from(target: &Incident, source: &Incident, moved: &str, author: &str, now: DateTime<Utc>) -> Self {
        let body = format!("Merged {} ({}) into this incident: {moved}.", source.reference, source.title);
        Self::new(target, UpdateKind::Merge, body, author, now)
    }

    /// A link to `other` made (or removed) from `incident`'s side, in `incident`'s words.
    pub fn link(
        incident: &Incident,
        phrase: &str,
        other: &Incident,
        removed: bool,
        author: &str,
        now: DateTime<Utc>,
    ) -> Self {
        let verb = if removed { "Link removed" } else { "Linked" };
        let body = format!("{verb}: {phrase} {} ({}).", other.reference, other.title);
        Self::new(incident, UpdateKind::Link, body, author, now)
    }

    /// What a delivery of alerts said (internal).
    pub fn alerts(incident: &Incident, body: String, author: &str, now: DateTime<Utc>) -> Self {
        Self::new(incident, UpdateKind::Alert, body, author, now)
    }

    /// A posted update, with the transition it carried if any.
    pub fn update(
        incident: &Incident,
        update: ValidUpdate,
        transition: Option<Transition>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut e = Self::new(incident, UpdateKind::Update, update.body, &update.author, now);
        e.visibility = update.visibility;
        if let Some(t) = transition {
            e.status_from = Some(t.from);
            e.status_to = Some(t.to);
        }
        e
    }
}

/// The input to post an update, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewUpdate {
    pub body: Option<String>,
    pub visibility: Option<Visibility>,
    pub status: Option<Status>,
    pub author: Option<String>,
}

/// A validated [`NewUpdate`].
#[derive(Debug, Clone)]
pub struct ValidUpdate {
    pub body: String,
    pub visibility: Visibility,
    pub status: Option<Status>,
    pub author: String,
}

impl NewUpdate {
    /// Validates; `default_author` (the caller's name) stands in for a missing author.
    pub fn validate(self, default_author: &str) -> Result<ValidUpdate> {
        let mut v = Violations::new();
        let body = v.required_text("body", self.body.as_deref(), validate::BODY_MAX);
        let author = actor(&mut v, "author", self.author.as_deref(), default_author);
        v.finish()?;
        Ok(ValidUpdate {
            body,
            visibility: self.visibility.unwrap_or(Visibility::Internal),
            status: self.status,
            author,
        })
    }
}

/// Validates an actor name (who did something): trimmed, at most 200 characters, `default`
/// (the caller's name) when absent.
pub fn actor(v: &mut Violations, field: &str, name: Option<&str>, default: &str) -> String {
    v.optional_text(field, name, validate::SHORT_TEXT_MAX).unwrap_or_else(|| default.to_string())
}

/// The input to move an incident through its lifecycle, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransitionInput {
    pub to: Option<Status>,
    pub message: Option<String>,
    pub visibility: Option<Visibility>,
    pub actor: Option<String>,
}

/// A validated [`TransitionInput`].
#[derive(Debug, Clone)]
pub struct ValidTransition {
    pub to: Status,
    pub message: Option<String>,
    pub visibility: Visibility,
    pub actor: String,
}

impl TransitionInput {
    /// Validates; `default_actor` (the caller's name) stands in for a missing actor.
    pub fn validate(self, default_actor: &str) -> Result<ValidTransition> {
        let mut v = Violations::new();
        let to = self.to.unwrap_or_else(|| {
            v.add("to", format!("is required; one of: {}", Status::expected()));
            Status::Investigating
        });
        let message = v.optional_text("message", self.message.as_deref(), validate::BODY_MAX);
        let actor = actor(&mut v, "actor", self.actor.as_deref(), default_actor);
        v.finish()?;
        Ok(ValidTransition { to, message, visibility: self.visibility.unwrap_or(Visibility::Internal), actor })
    }
}
