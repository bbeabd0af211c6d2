//! Alerts as received from monitoring, in one shape whatever sent them; what they say on an
//! incident's timeline; and the acknowledgement deadlines that page the next person when
//! nobody picks an incident up.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::incident::Severity;
use super::integration::{Grouping, IntegrationKind};
use super::wire_enum;

wire_enum! {
    /// What an alert said when it arrived.
    AlertStatus {
        /// Firing (Alertmanager, Grafana) or a PagerDuty `trigger`.
        Firing = "firing",
        /// A PagerDuty `acknowledge`: still a problem, someone is on it.
        Acknowledged = "acknowledged",
        /// Cleared (Alertmanager, Grafana) or a PagerDuty `resolve`.
        Resolved = "resolved",
        /// A PagerDuty change event: information, never an incident.
        Change = "change",
    }
}

impl AlertStatus {
    /// Whether the alert is still a problem.
    pub fn is_active(self) -> bool {
        matches!(self, AlertStatus::Firing | AlertStatus::Acknowledged)
    }
}

/// The largest raw payload kept per alert; a bigger one is kept cut (`"truncated": true`).
pub const PAYLOAD_MAX: usize = 16 * 1024;
/// At most this many alerts are listed by name in one timeline entry.
const LISTED_MAX: usize = 10;
/// At most this much of an alert's description is quoted there.
const DESCRIPTION_MAX: usize = 500;

/// One alert as received, in one shape for every source.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertSignal {
    /// The sender's group (`groupKey`); `None` for a source without groups.
    pub group_key: Option<String>,
    /// Identifies the alert within its group; the PagerDuty `dedup_key`.
    pub fingerprint: String,
    pub status: AlertStatus,
    /// `summary` annotation, else `alertname`, else the PagerDuty summary.
    pub title: String,
    pub description: Option<String>,
    /// Its labels (PagerDuty's `source`, `component`, `group`, `class` and `severity` too).
    pub labels: BTreeMap<String, String>,
    pub starts_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    /// Where to look: Alertmanager's `generatorURL`, Grafana's panel, PagerDuty's first link.
    pub source_url: Option<String>,
    /// The alert as it came.
    pub payload: serde_json::Value,
}

impl AlertSignal {
    /// The key alerts sharing an incident share.
    pub fn dedup_key(&self, kind: IntegrationKind, grouping: Grouping) -> String {
        match (kind, grouping, &self.group_key) {
            (IntegrationKind::PagerdutyEventsV2, _, _) => self.fingerprint.clone(),
            (_, Grouping::GroupKey, Some(g)) => g.clone(),
            _ => self.fingerprint.clone(),
        }
    }
}

/// The fingerprint of labels, for a sender that gives none: stable for the same label set.
pub fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in labels {
        h.update(k.as_bytes());
        h.update([0xff]);
        h.update(v.as_bytes());
        h.update([0xfe]);
    }
    h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// A received alert as kept: linked to the incident it opened or joined.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alert {
    pub id: Uuid,
    pub integration_id: Uuid,
    /// The incident it opened or joined; absent when it found none (a resolve for an alert
    /// nobody opened, a change event).
    pub incident_id: Option<Uuid>,
    /// The key alerts sharing an incident share (group key, fingerprint or `dedup_key`).
    pub dedup_key: String,
    pub fingerprint: String,
    pub status: AlertStatus,
    pub title: String,
    pub received_at: DateTime<Utc>,
    /// The alert as received (at most 16 KiB; a bigger one is `{"truncated": true, ...}`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl Alert {
    pub fn received(
        signal: &AlertSignal,
        integration_id: Uuid,
        dedup_key: &str,
        incident_id: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Self {
        Alert {
            id: Uuid::now_v7(),
            integration_id,
            incident_id,
            dedup_key: dedup_key.to_string(),
            fingerprint: signal.fingerprint.clone(),
            status: signal.status,
            title: signal.title.clone(),
            received_at: now,
            payload: bounded(&signal.payload),
        }
    }
}

/// The payload, or a marker with its beginning when it is over [`PAYLOAD_MAX`].
fn bounded(payload: &serde_json::Value) -> serde_json::Value {
    let text = payload.to_string();
    if text.len() <= PAYLOAD_MAX {
        return payload.clone();
    }
    let mut cut = PAYLOAD_MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    serde_json::json!({"truncated": true, "size": text.len(), "beginning": &text[..cut]})
}

/// Whether any string (or key) in the document holds a NUL character, which the databases
/// cannot store in text.
pub fn contains_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        _ => false,
    }
}

/// What one delivery of alerts says on the incident's (internal) timeline.
pub fn timeline_text(source: &str, signals: &[&AlertSignal]) -> String {
    let count = |s: AlertStatus| signals.iter().filter(|a| a.status == s).count();
    let mut parts = Vec::new();
    for (status, word) in [
        (AlertStatus::Firing, "firing"),
        (AlertStatus::Acknowledged, "acknowledged"),
        (AlertStatus::Resolved, "resolved"),
    ] {
        let n = count(status);
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    let mut text = format!("{source}: {}.", parts.join(", "));
    for a in signals.iter().take(LISTED_MAX) {
        let title: String = a.title.chars().take(super::validate::TITLE_MAX).collect();
        text.push_str(&format!("\n- {}: {title}", a.status));
        let shown: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "alertname" | "severity"))
            .take(4)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !shown.is_empty() {
            text.push_str(&format!(" ({})", shown.join(", ")));
        }
        if let Some(since) = a.starts_at.filter(|_| a.status == AlertStatus::Firing) {
            text.push_str(&format!(", since {}", since.format("%Y-%m-%d %H:%M:%S UTC")));
        }
        if let Some(url) = &a.source_url {
            text.push_str(&format!(" {url}"));
        }
        if let Some(d) = a.description.as_deref().filter(|_| a.status == AlertStatus::Firing) {
            let d: String = d.chars().take(DESCRIPTION_MAX).collect();
            text.push_str(&format!("\n  {}", d.replace('\n', "\n  ")));
        }
    }
    if signals.len() > LISTED_MAX {
        text.push_str(&format!("\n… and {} more", signals.len() - LISTED_MAX));
    }
    text
}

/// How long an open incident may stay unacknowledged, per severity, and how often the
/// reminder repeats (`INCIDENTD_ACK_DEADLINES`, `INCIDENTD_ACK_REPEAT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckPolicy {
    pub deadlines: BTreeMap<Severity, Duration>,
    /// Zero: one reminder only.
    pub repeat: Duration,
}

impl Default for AckPolicy {
    fn default() -> Self {
        AckPolicy::parse("sev1=5m,sev2=15m", "15m").expect("the default policy parses")
    }
}

/// Parses `30s`, `5m`, `2h` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| format!("{s:?} is not a duration such as 30s, 5m or 2h"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(format!("{s:?} is not a duration such as 30s, 5m or 2h (units: s, m, h)")),
    };
    Ok(Duration::from_secs(secs))
}

impl AckPolicy {
    /// `sev1=5m,sev2=15m` (empty or `none`: no deadlines) and the repeat interval.
    pub fn parse(deadlines: &str, repeat: &str) -> Result<Self, String> {
        let mut map = BTreeMap::new();
        let deadlines = deadlines.trim();
        if !deadlines.is_empty() && deadlines != "none" {
            for part in deadlines.split(',') {
                let (sev, d) = part
                    .split_once('=')
                    .ok_or_else(|| format!("{part:?} is not severity=duration, such as sev1=5m"))?;
                let sev: Severity = sev.trim().parse()?;
                let d = parse_duration(d)?;
                if d.is_zero() {
                    return Err(format!("the deadline of {sev} must be longer than 0"));
                }
                map.insert(sev, d);
            }
        }
        Ok(AckPolicy { deadlines: map, repeat: parse_duration(repeat)? })
    }

    /// The severities that have a deadline.
    pub fn severities(&self) -> Vec<Severity> {
        self.deadlines.keys().copied().collect()
    }

    /// The shortest deadline: no incident younger than this can be overdue.
    pub fn shortest(&self) -> Option<Duration> {
        self.deadlines.values().min().copied()
    }

    /// How many reminders are due by `now` for an incident of `severity` declared at
    /// `declared` (the deadline, then one per repeat interval): `None` when it has no
    /// deadline or none has passed. A reminder is sent when this exceeds those sent, once
    /// however many were missed.
    pub fn reminders_due(&self, severity: Severity, declared: DateTime<Utc>, now: DateTime<Utc>) -> Option<i64> {
        let deadline = chrono::Duration::from_std(*self.deadlines.get(&severity)?).ok()?;
        let first = declared + deadline;
        if now < first {
            return None;
        }
        if self.repeat.is_zero() {
            return Some(1);
        }
        let repeat = self.repeat.as_micros().max(1) as i64;
        let since = (now - first).num_microseconds().unwrap_or(i64::MAX);
        Some(1 + since / repeat)
    }

    /// When reminder `n` (from 1) fell due.
    pub fn due_at(&self, severity: Severity, declared: DateTime<Utc>, n: i64) -> Option<DateTime<Utc>> {
        let deadline = chrono::Duration::from_std(*self.deadlines.get(&severity)?).ok()?;
        let repeat = chrono::Duration::from_std(self.repeat).ok()?;
        Some(declared + deadline + repeat * (n - 1).max(0) as i32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_parse_and_fall_due_once_per_repeat() {
        let p = AckPolicy::default();
        assert_eq!(p.deadlines.get(&Severity::Sev1), Some(&Duration::from_secs(300)));
        assert_eq!(p.deadlines.get(&Severity::Sev2), Some(&Duration::from_secs(900)));
        assert_eq!(p.repeat, Duration::from_secs(900));
        let t0 = Utc::now();
        let at = |secs: i64| t0 + chrono::Duration::seconds(secs);
        assert_eq!(p.reminders_due(Severity::Sev1, t0, at(299)), None);
        assert_eq!(p.reminders_due(Severity::Sev1, t0, at(300)), Some(1));
        assert_eq!(p.reminders_due(Severity::Sev1, t0, at(300 + 899)), Some(1));
        assert_eq!(p.reminders_due(Severity::Sev1, t0, at(300 + 900)), Some(2));
        assert_eq!(p.reminders_due(Severity::Sev3, t0, at(100_000)), None);
        assert_eq!(p.due_at(Severity::Sev1, t0, 2), Some(at(1200)));
        let once = AckPolicy::parse("sev4=2h", "0").unwrap();
        assert_eq!(once.reminders_due(Severity::Sev4, t0, at(100_000)), Some(1));
        assert_eq!(AckPolicy::parse("none", "1m").unwrap().shortest(), None);
        for bad in ["sev1", "sev9=5m", "sev1=5d", "sev1=0s", "sev1=m"] {
            assert!(AckPolicy::parse(bad, "15m").is_err(), "{bad} accepted");
        }
        assert!(AckPolicy::parse("sev1=5m", "1w").is_err());
    }

    #[test]
    fn fingerprints_are_stable_and_payloads_bounded() {
        let a: BTreeMap<String, String> = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let b: BTreeMap<String, String> = [("a".into(), "12".into())].into();
        assert_eq!(label_fingerprint(&a), label_fingerprint(&a.clone()));
        assert_ne!(label_fingerprint(&a), label_fingerprint(&b));
        let big = serde_json::json!({"x": "é".repeat(PAYLOAD_MAX)});
        let kept = bounded(&big);
        assert_eq!(kept["truncated"], true);
        assert!(kept.to_string().len() < PAYLOAD_MAX + 1024);
        let small = serde_json::json!({"x": 1});
        assert_eq!(bounded(&small), small);
    }
}
