//! Integrations: where alerts come from (Alertmanager, Grafana, tools speaking PagerDuty's
//! Events API v2), the secret they authenticate with (kept hashed), and the rules that turn
//! an alert's labels into an incident's severity and affected components.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::hash_secret;
use super::component::ComponentStatus;
use super::error::Result;
use super::incident::Severity;
use super::validate::Violations;
use super::wire_enum;

wire_enum! {
    /// What sends alerts to an integration, and so where it posts them.
    IntegrationKind {
        /// Prometheus Alertmanager's webhook receiver: `POST /v1/integrations/{id}/alertmanager`.
        Alertmanager = "alertmanager",
        /// Grafana alerting's webhook contact point: `POST /v1/integrations/{id}/grafana`.
        Grafana = "grafana",
        /// PagerDuty's Events API v2: `POST /v2/enqueue`, the secret as `routing_key`.
        PagerdutyEventsV2 = "pagerduty_events_v2",
    }
}

wire_enum! {
    /// Which alerts share an incident.
    Grouping {
        /// One incident per Alertmanager/Grafana group (`groupKey`): the default.
        GroupKey = "group_key",
        /// One incident per alert (`fingerprint`).
        Fingerprint = "fingerprint",
    }
}

/// Maps alerts whose labels all match `labels` to a severity and to affected components.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRule {
    /// Label values an alert must carry, all of them (exact match); empty matches every alert.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The severity of an incident opened by a matching alert (the first matching rule that
    /// names one decides).
    #[serde(default)]
    pub severity: Option<Severity>,
    /// Components a matching alert affects (every matching rule adds its own).
    #[serde(default)]
    pub components: Vec<Uuid>,
    /// The status the incident imposes on those components; by default from the severity
    /// (sev1 `major_outage`, sev2 `partial_outage`, else `degraded_performance`).
    #[serde(default)]
    pub component_status: Option<ComponentStatus>,
}

/// An integration as stored and served (never with its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Integration {
    pub id: Uuid,
    pub name: String,
    pub kind: IntegrationKind,
    /// The first characters of the secret, to recognise it.
    pub secret_prefix: String,
    /// The severity of an incident no rule or `severity` label decides.
    pub default_severity: Severity,
    pub rules: Vec<LabelRule>,
    pub grouping: Grouping,
    /// Resolve the incident once every alert of its group has cleared.
    pub auto_resolve: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// The input to create an integration, before validation.
#[derive(Debug, Clone, Default)]
pub struct NewIntegration {
    pub name: Option<String>,
    pub kind: Option<IntegrationKind>,
    pub default_severity: Option<Severity>,
    pub rules: Vec<LabelRule>,
    pub grouping: Option<Grouping>,
    pub auto_resolve: Option<bool>,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct IntegrationPatch {
    pub name: Option<String>,
    pub default_severity: Option<Severity>,
    pub rules: Option<Vec<LabelRule>>,
    pub grouping: Option<Grouping>,
    pub auto_resolve: Option<bool>,
}

/// A new secret: what is stored, and the secret shown once.
#[derive(Debug, Clone)]
pub struct IssuedSecret {
    pub hash: Vec<u8>,
    pub prefix: String,
    pub secret: String,
}

/// Secrets are 32 characters, as PagerDuty's integration keys (some tools check the length).
pub const SECRET_LEN: usize = 32;
const PREFIX_LEN: usize = 6;
pub const RULES_MAX: usize = 50;
pub const NAME_MAX: usize = 100;

impl IssuedSecret {
    pub fn generate() -> Self {
        let secret = Alphanumeric.sample_string(&mut rand::rng(), SECRET_LEN);
        IssuedSecret { hash: hash_secret(&secret), prefix: secret[..PREFIX_LEN].to_string(), secret }
    }
}

fn check_rules(v: &mut Violations, rules: &[LabelRule]) {
    if rules.len() > RULES_MAX {
        v.add("rules", format!("must have at most {RULES_MAX} entries"));
    }
    for (i, r) in rules.iter().enumerate() {
        v.labels(&format!("rules[{i}].labels"), &r.labels);
        if r.components.len() > 100 {
            v.add(format!("rules[{i}].components"), "must have at most 100 entries");
        }
        if r.component_status == Some(ComponentStatus::Operational) {
            v.add(format!("rules[{i}].component_status"), "an incident cannot impose operational");
        }
        if r.severity.is_none() && r.components.is_empty() {
            v.add(format!("rules[{i}]"), "names neither a severity nor components");
        }
    }
}

impl NewIntegration {
    pub fn validate(self, now: DateTime<Utc>) -> Result<(Integration, IssuedSecret)> {
        let mut v = Violations::new();
        let name = v.required_text("name", self.name.as_deref(), NAME_MAX);
        let kind = self.kind.unwrap_or_else(|| {
            v.add("kind", format!("is required; one of: {}", IntegrationKind::expected()));
            IntegrationKind::Alertmanager
        });
        check_rules(&mut v, &self.rules);
        v.finish()?;
        let secret = IssuedSecret::generate();
        let integration = Integration {
            id: Uuid::now_v7(),
            name,
            kind,
            secret_prefix: secret.prefix.clone(),
            default_severity: self.default_severity.unwrap_or(Severity::Sev3),
            rules: self.rules,
            grouping: self.grouping.unwrap_or(Grouping::GroupKey),
            auto_resolve: self.auto_resolve.unwrap_or(true),
            created_at: now,
            updated_at: now,
            version: 1,
        };
        Ok((integration, secret))
    }
}

impl Integration {
    pub fn etag(&self) -> String {
        super::version::etag(self.version)
    }

    /// Applies a patch; returns whether anything changed.
    pub fn apply(&mut self, patch: IntegrationPatch, now: DateTime<Utc>) -> Result<bool> {
        let mut v = Violations::new();
        let name = patch.name.map(|n| v.required_text("name", Some(&n), NAME_MAX));
        if let Some(rules) = &patch.rules {
            check_rules(&mut v, rules);
        }
        v.finish()?;
        let before = self.clone();
        if let Some(n) = name {
            self.name = n;
        }
        if let Some(s) = patch.default_severity {
            self.default_severity = s;
        }
        if let Some(r) = patch.rules {
            self.rules = r;
        }
        if let Some(g) = patch.grouping {
            self.grouping = g;
        }
        if let Some(a) = patch.auto_resolve {
            self.auto_resolve = a;
        }
        let changed = *self != before;
        if changed {
            super::version::bump(&mut self.version, &mut self.updated_at, now);
        }
        Ok(changed)
    }

    /// Takes a new secret (the old one stops working at once).
    pub fn rotate(&mut self, now: DateTime<Utc>) -> IssuedSecret {
        let secret = IssuedSecret::generate();
        self.secret_prefix = secret.prefix.clone();
        super::version::bump(&mut self.version, &mut self.updated_at, now);
        secret
    }

    /// Where this integration's alerts are posted, below the service's public URL.
    pub fn receiver_path(&self) -> String {
        match self.kind {
            IntegrationKind::Alertmanager => format!("/v1/integrations/{}/alertmanager", self.id),
            IntegrationKind::Grafana => format!("/v1/integrations/{}/grafana", self.id),
            IntegrationKind::PagerdutyEventsV2 => "/v2/enqueue".to_string(),
        }
    }

    fn matching<'a>(&'a self, labels: &'a BTreeMap<String, String>) -> impl Iterator<Item = &'a LabelRule> + 'a {
        self.rules.iter().filter(move |r| r.labels.iter().all(|(k, want)| labels.get(k) == Some(want)))
    }

    /// The severity of an alert with these labels: the first matching rule that names one,
    /// else the alert's `severity` (or `priority`) label read as below, else the default.
    pub fn severity_for(&self, labels: &BTreeMap<String, String>) -> Severity {
        self.matching(labels)
            .find_map(|r| r.severity)
            .or_else(|| ["severity", "priority"].iter().find_map(|k| labels.get(*k).and_then(|v| severity_word(v))))
            .unwrap_or(self.default_severity)
    }

    /// The components an alert with these labels affects, with the status imposed on them
    /// at `severity`, each once, in rule order.
    pub fn components_for(
        &self,
        labels: &BTreeMap<String, String>,
        severity: Severity,
    ) -> Vec<(Uuid, ComponentStatus)> {
        let mut out: Vec<(Uuid, ComponentStatus)> = Vec::new();
        for rule in self.matching(labels) {
            let status = rule.component_status.unwrap_or(match severity {
                Severity::Sev1 => ComponentStatus::MajorOutage,
                Severity::Sev2 => ComponentStatus::PartialOutage,
                _ => ComponentStatus::DegradedPerformance,
            });
            for c in &rule.components {
                if !out.iter().any(|(id, _)| id == c) {
                    out.push((*c, status));
                }
            }
        }
        out
    }
}

/// Reads the severity words monitoring tools use: PagerDuty's (`critical`, `error`,
/// `warning`, `info`), common label values (`page`, `high`, `low`, `p1`…) and our own.
pub fn severity_word(word: &str) -> Option<Severity> {
    match word.trim().to_ascii_lowercase().as_str() {
        "critical" | "crit" | "page" | "fatal" | "emergency" | "disaster" | "p1" | "sev1" | "1" => Some(Severity::Sev1),
        "error" | "err" | "high" | "major" | "p2" | "sev2" | "2" => Some(Severity::Sev2),
        "warning" | "warn" | "medium" | "average" | "p3" | "sev3" | "3" => Some(Severity::Sev3),
        "info" | "information" | "low" | "minor" | "notice" | "p4" | "p5" | "sev4" | "4" => Some(Severity::Sev4),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn integration(rules: Vec<LabelRule>) -> Integration {
        let input = NewIntegration {
            name: Some("prod".into()),
            kind: Some(IntegrationKind::Alertmanager),
            rules,
            ..Default::default()
        };
        input.validate(Utc::now()).unwrap().0
    }

    #[test]
    fn the_first_matching_rule_decides_the_severity_then_the_label_then_the_default() {
        let api = Uuid::now_v7();
        let db = Uuid::now_v7();
        let i = integration(vec![
            LabelRule {
                labels: labels(&[("team", "db")]),
                severity: Some(Severity::Sev1),
                components: vec![db],
                component_status: None,
            },
            LabelRule {
                labels: labels(&[("service", "api")]),
                severity: None,
                components: vec![api, db],
                component_status: Some(ComponentStatus::DegradedPerformance),
            },
        ]);
        let both = labels(&[("team", "db"), ("service", "api"), ("severity", "warning")]);
        assert_eq!(i.severity_for(&both), Severity::Sev1);
        assert_eq!(
            i.components_for(&both, Severity::Sev1),
            vec![(db, ComponentStatus::MajorOutage), (api, ComponentStatus::DegradedPerformance)]
        );
        assert_eq!(i.severity_for(&labels(&[("service", "api"), ("severity", "critical")])), Severity::Sev1);
        assert_eq!(i.severity_for(&labels(&[("priority", "P2")])), Severity::Sev2);
        assert_eq!(i.severity_for(&labels(&[("severity", "whatever")])), Severity::Sev3);
        assert!(i.components_for(&labels(&[]), Severity::Sev3).is_empty());
    }

    #[test]
    fn secrets_are_32_characters_and_only_their_hash_and_prefix_are_kept() {
        let (i, secret) = NewIntegration {
            name: Some("pd".into()),
            kind: Some(IntegrationKind::PagerdutyEventsV2),
            ..Default::default()
        }
        .validate(Utc::now())
        .unwrap();
        assert_eq!(secret.secret.len(), SECRET_LEN);
        assert_eq!(secret.hash, hash_secret(&secret.secret));
        assert!(secret.secret.starts_with(&i.secret_prefix));
        assert_eq!(i.receiver_path(), "/v2/enqueue");
        assert!(i.auto_resolve);
        assert_eq!(i.grouping, Grouping::GroupKey);
    }

    #[test]
    fn bad_input_names_each_field() {
        let e = NewIntegration {
            name: None,
            rules: vec![LabelRule {
                labels: labels(&[("bad key!", "x")]),
                severity: None,
                components: vec![],
                component_status: Some(ComponentStatus::Operational),
            }],
            ..Default::default()
        }
        .validate(Utc::now())
        .unwrap_err();
        let text = e.to_string();
        for field in ["name", "kind", "rules[0].labels.bad key!", "rules[0].component_status", "rules[0]"] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }
}
