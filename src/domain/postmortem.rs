//! Postmortems: one per incident, written after it to make sure it is fixed for good. The body
//! (the analysis, Markdown) and the root cause are the responders'; the public summary is what
//! customers are told changes, and reaches them only once the postmortem is published.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::{Error, Result};
use super::incident::{CauseKind, Incident};
use super::timeline::actor;
use super::validate::{self, Violations};
use super::wire_enum;

/// The longest postmortem body (characters): an analysis runs longer than an update.
pub const BODY_MAX: usize = 100_000;
/// At most this many contributing factors, each at most [`FACTOR_MAX`] characters.
pub const FACTORS_MAX: usize = 20;
pub const FACTOR_MAX: usize = 500;

wire_enum! {
    /// Where a postmortem stands: written (`draft`), reviewed (`in_review`), then published
    /// (final: its public summary is on the status page).
    PostmortemStatus { Draft = "draft", InReview = "in_review", Published = "published" }
}

wire_enum! {
    /// How likely the incident is to happen again.
    RecurrenceRisk { Low = "low", Medium = "medium", High = "high" }
}

wire_enum! {
    /// What kind of root cause it was, for the numbers over time.
    RootCauseCategory {
        Unknown = "unknown",
        /// A code change: a deploy, a release.
        CodeChange = "code_change",
        ConfigurationChange = "configuration_change",
        /// Hardware, network, the cloud underneath.
        Infrastructure = "infrastructure",
        /// Load beyond what was provisioned.
        Capacity = "capacity",
        /// A service or provider depended on.
        Dependency = "dependency",
        Security = "security",
        Data = "data",
        /// How the work was done: a runbook, a review, a handover.
        Process = "process",
        Other = "other",
    }
}

impl PostmortemStatus {
    /// A draft goes to review; a review back to draft or on to published; published is final.
    pub fn allowed_targets(self) -> &'static [PostmortemStatus] {
        use PostmortemStatus::*;
        match self {
            Draft => &[InReview],
            InReview => &[Draft, Published],
            Published => &[],
        }
    }
}

/// An incident's postmortem, as stored and as served to API callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Postmortem {
    /// The incident it is about (one postmortem per incident).
    pub incident_id: Uuid,
    pub status: PostmortemStatus,
    /// Internal: the analysis (Markdown): timeline, root cause, what went well and badly.
    pub body: String,
    /// What customers are told changes so it does not happen again. Public once published;
    /// write it without details an attacker could use.
    pub public_summary: String,
    pub root_cause_category: RootCauseCategory,
    /// What made it possible or worse.
    pub contributing_factors: Vec<String>,
    pub recurrence_risk: Option<RecurrenceRisk>,
    /// Why the risk is what it is.
    pub recurrence_reason: Option<String>,
    /// Whether a third party was the cause.
    pub third_party: bool,
    /// Who wrote it (defaults to the calling key's name).
    pub author: String,
    /// When it was published.
    pub published_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The input to start a postmortem; every field may be left out (a draft may start empty).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NewPostmortem {
    pub body: Option<String>,
    pub public_summary: Option<String>,
    pub root_cause_category: Option<RootCauseCategory>,
    pub contributing_factors: Vec<String>,
    pub recurrence_risk: Option<RecurrenceRisk>,
    pub recurrence_reason: Option<String>,
    pub third_party: Option<bool>,
    pub author: Option<String>,
}

/// A partial update; `None` leaves a field, `Some(None)` clears a clearable one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostmortemPatch {
    pub body: Option<String>,
    pub public_summary: Option<String>,
    pub root_cause_category: Option<RootCauseCategory>,
    pub contributing_factors: Option<Vec<String>>,
    pub recurrence_risk: Option<Option<RecurrenceRisk>>,
    pub recurrence_reason: Option<Option<String>>,
    pub third_party: Option<bool>,
}

impl NewPostmortem {
    /// Validates; `third_party` defaults to whether the incident names a third party as its
    /// cause, `author` to `default_author` (the caller's name).
    pub fn validate(self, incident: &Incident, default_author: &str, now: DateTime<Utc>) -> Result<Postmortem> {
        let NewPostmortem {
            body,
            public_summary,
            root_cause_category,
            contributing_factors,
            recurrence_risk,
            recurrence_reason,
            third_party,
            author,
        } = self;
        let mut v = Violations::new();
        let author = actor(&mut v, "author", author.as_deref(), default_author);
        let mut postmortem = Postmortem {
            incident_id: incident.id,
            status: PostmortemStatus::Draft,
            body: body.unwrap_or_default(),
            public_summary: public_summary.unwrap_or_default(),
            root_cause_category: root_cause_category.unwrap_or(RootCauseCategory::Unknown),
            contributing_factors,
            recurrence_risk,
            recurrence_reason,
            third_party: third_party.unwrap_or(incident.cause.kind == CauseKind::ThirdParty),
            author,
            published_at: None,
            created_at: now,
            updated_at: now,
            version: 1,
        };
        postmortem.normalize(&mut v);
        v.finish()?;
        Ok(postmortem)
    }
}

impl Postmortem {
    pub fn etag(&self) -> String {
        super::version::etag(self.version)
    }

    /// Bounds and trims the fields in place (shared by create and patch).
    fn normalize(&mut self, v: &mut Violations) {
        v.text("body", &self.body, BODY_MAX);
        v.text("public_summary", &self.public_summary, validate::LONG_TEXT_MAX);
        self.recurrence_reason =
            v.optional_text("recurrence_reason", self.recurrence_reason.as_deref(), validate::LONG_TEXT_MAX);
        if self.contributing_factors.len() > FACTORS_MAX {
            v.add("contributing_factors", format!("must have at most {FACTORS_MAX} entries"));
        }
        let factors = std::mem::take(&mut self.contributing_factors);
        self.contributing_factors = factors
            .iter()
            .enumerate()
            .map(|(i, f)| v.required_text(&format!("contributing_factors[{i}]"), Some(f), FACTOR_MAX))
            .collect();
        if self.status == PostmortemStatus::Published {
            self.publishable(v);
        }
    }

    /// What publishing needs: something to tell customers, and a judgement of recurrence.
    fn publishable(&self, v: &mut Violations) {
        if self.public_summary.trim().is_empty() {
            v.add("public_summary", "is required to publish: what customers are told changes");
        }
        if self.recurrence_risk.is_none() {
            v.add("recurrence_risk", "is required to publish: low, medium or high");
        }
        if self.recurrence_reason.is_none() {
            v.add("recurrence_reason", "is required to publish: why the risk is what it is");
        }
    }

    /// Applies a patch and returns the names of the fields it changed (none: nothing changes,
    /// not even the version). A published postmortem stays publishable.
    pub fn apply_patch(&mut self, patch: PostmortemPatch, now: DateTime<Utc>) -> Result<Vec<&'static str>> {
        let before = self.clone();
        let PostmortemPatch {
            body,
            public_summary,
            root_cause_category,
            contributing_factors,
            recurrence_risk,
            recurrence_reason,
            third_party,
        } = patch;
        if let Some(b) = body {
            self.body = b;
        }
        if let Some(s) = public_summary {
            self.public_summary = s;
        }
        if let Some(c) = root_cause_category {
            self.root_cause_category = c;
        }
        if let Some(f) = contributing_factors {
            self.contributing_factors = f;
        }
        if let Some(r) = recurrence_risk {
            self.recurrence_risk = r;
        }
        if let Some(r) = recurrence_reason {
            self.recurrence_reason = r;
        }
        if let Some(t) = third_party {
            self.third_party = t;
        }
        let mut v = Violations::new();
        self.normalize(&mut v);
        if let Err(e) = v.finish() {
            *self = before;
            return Err(e);
        }
        let changed = self.changed_fields(&before);
        if !changed.is_empty() {
            super::version::bump(&mut self.version, &mut self.updated_at, now);
        }
        Ok(changed)
    }

    /// The editable fields that differ from `before`, by name.
    fn changed_fields(&self, before: &Postmortem) -> Vec<&'static str> {
        let Postmortem {
            body,
            public_summary,
            root_cause_category,
            contributing_factors,
            recurrence_risk,
            recurrence_reason,
            third_party,
            // Not editable: the status moves through transitions, the rest is bookkeeping.
            incident_id: _,
            status: _,
            author: _,
            published_at: _,
            created_at: _,
            updated_at: _,
            version: _,
        } = self;
        [
            ("body", *body != before.body),
            ("public_summary", *public_summary != before.public_summary),
            ("root_cause_category", *root_cause_category != before.root_cause_category),
            ("contributing_factors", *contributing_factors != before.contributing_factors),
            ("recurrence_risk", *recurrence_risk != before.recurrence_risk),
            ("recurrence_reason", *recurrence_reason != before.recurrence_reason),
            ("third_party", *third_party != before.third_party),
        ]
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect()
    }

    /// Moves the postmortem to `to`, returning the status it had. Publishing needs a public
    /// summary and a judgement of recurrence (each missing one is named), and stamps
    /// `published_at`.
    pub fn transition(&mut self, to: PostmortemStatus, now: DateTime<Utc>) -> Result<PostmortemStatus> {
        let from = self.status;
        if !from.allowed_targets().contains(&to) {
            return Err(Error::InvalidTransition {
                resource: "postmortem",
                from: from.as_str(),
                to: to.as_str(),
                allowed: from.allowed_targets().iter().map(|s| s.as_str()).collect(),
            });
        }
        if to == PostmortemStatus::Published {
            let mut v = Violations::new();
            self.publishable(&mut v);
            v.finish()?;
            self.published_at = Some(now);
        }
        self.status = to;
        super::version::bump(&mut self.version, &mut self.updated_at, now);
        Ok(from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::incident::{Cause, NewIncident, Severity};

    fn incident(kind: CauseKind) -> Incident {
        let input = NewIncident {
            title: Some("Checkout down".into()),
            severity: Some(Severity::Sev1),
            cause: Some(Cause { kind, provider: None, external_reference: None }),
            ..Default::default()
        };
        input.validate(Uuid::now_v7(), crate::domain::now()).unwrap().incident
    }

    #[test]
    fn a_new_postmortem_is_a_draft_whose_third_party_flag_follows_the_incident() {
        let now = crate::domain::now();
        let p = NewPostmortem::default().validate(&incident(CauseKind::ThirdParty), "alice", now).unwrap();
        assert_eq!(
            (p.status, p.third_party, p.author.as_str(), p.version),
            (PostmortemStatus::Draft, true, "alice", 1)
        );
        let p = NewPostmortem::default().validate(&incident(CauseKind::Internal), "alice", now).unwrap();
        assert!(!p.third_party);
    }

    #[test]
    fn publishing_goes_through_review_and_names_what_is_missing() {
        let now = crate::domain::now();
        let mut p = NewPostmortem::default().validate(&incident(CauseKind::Internal), "a", now).unwrap();
        assert!(matches!(p.transition(PostmortemStatus::Published, now), Err(Error::InvalidTransition { .. })));
        p.transition(PostmortemStatus::InReview, now).unwrap();
        let err = p.transition(PostmortemStatus::Published, now).unwrap_err();
        let fields: Vec<&str> = err.violations().iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["public_summary", "recurrence_risk", "recurrence_reason"]);
        assert_eq!(p.status, PostmortemStatus::InReview, "a refused publication changes nothing");
        let patch = PostmortemPatch {
            public_summary: Some("We now fail over automatically.".into()),
            recurrence_risk: Some(Some(RecurrenceRisk::Low)),
            recurrence_reason: Some(Some("Failover is tested weekly.".into())),
            ..Default::default()
        };
        assert_eq!(p.apply_patch(patch, now).unwrap(), ["public_summary", "recurrence_risk", "recurrence_reason"]);
        assert_eq!(p.transition(PostmortemStatus::Published, now).unwrap(), PostmortemStatus::InReview);
        assert_eq!((p.published_at, p.version), (Some(now), 4));
        assert!(PostmortemStatus::Published.allowed_targets().is_empty());
        let cleared = PostmortemPatch { public_summary: Some("  ".into()), ..Default::default() };
        assert_eq!(p.apply_patch(cleared, now).unwrap_err().violations()[0].field, "public_summary");
    }

    #[test]
    fn a_patch_that_changes_nothing_keeps_the_version() {
        let now = crate::domain::now();
        let input = NewPostmortem { body: Some("# What happened".into()), ..Default::default() };
        let mut p = input.validate(&incident(CauseKind::Internal), "a", now).unwrap();
        let same = PostmortemPatch { body: Some("# What happened".into()), ..Default::default() };
        assert!(p.apply_patch(same, now).unwrap().is_empty());
        assert_eq!(p.version, 1);
        let bad = PostmortemPatch { contributing_factors: Some(vec!["ok".into(), " ".into()]), ..Default::default() };
        assert_eq!(p.apply_patch(bad, now).unwrap_err().violations()[0].field, "contributing_factors[1]");
    }
}
