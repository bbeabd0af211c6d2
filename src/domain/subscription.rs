//! Subscriptions (who hears about which events, over which channel) and deliveries (one event
//! to one subscription, with its attempts and retry schedule).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use rand::RngExt;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::error::Result;
use super::event::{Event, EventType};
use super::incident::Severity;
use super::validate::Violations;
use super::wire_enum;

wire_enum! {
    /// How a subscription is notified.
    Channel {
        /// A signed HTTP POST of the CloudEvent (Standard Webhooks).
        Webhook = "webhook",
        /// A Slack incoming-webhook message.
        Slack = "slack",
        /// A Microsoft Teams incoming-webhook message (Adaptive Card).
        Teams = "teams",
        /// An email, plain text and HTML.
        Email = "email",
    }
}

wire_enum! {
    /// Where a delivery stands.
    DeliveryStatus {
        /// Waiting for its next attempt (or for a paused subscription to resume).
        Pending = "pending",
        /// Being attempted right now, under a lease.
        Sending = "sending",
        Delivered = "delivered",
        /// Dead-lettered: every attempt failed. Can be retried by hand.
        Failed = "failed",
        /// Dropped because its subscription was disabled or deleted.
        Cancelled = "cancelled",
    }
}

/// A subscription as stored and listed (its signing secret is shown only at creation and
/// rotation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: Uuid,
    pub channel: Channel,
    /// The URL (webhook, Slack, Teams) or email address notified.
    pub target: String,
    /// Only these event types; every type when empty.
    pub event_types: Vec<EventType>,
    /// Only incident events at least this severe (`sev2`: sev1 and sev2). Other events pass.
    pub min_severity: Option<Severity>,
    /// Only events about these components (an incident's affected components); every
    /// component when empty.
    pub component_ids: Vec<Uuid>,
    /// Whether internal events and details are sent. Default false: public only.
    pub include_internal: bool,
    /// Paused: deliveries wait until it resumes.
    pub paused: bool,
    /// Set when the system switched it off (410 Gone, or failing for too long).
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed; cleared by a success.
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub created_by: String,
    pub version: i64,
}

/// A webhook subscription's signing secrets: the current one and, during a rotation's grace
/// period, the previous one (both sign).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SigningSecrets {
    pub current: Option<String>,
    pub previous: Option<String>,
    pub previous_expires_at: Option<DateTime<Utc>>,
}

impl SigningSecrets {
    /// The secrets to sign with at `now`.
    pub fn active(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut out: Vec<&str> = self.current.iter().map(String::as_str).collect();
        if let (Some(p), Some(until)) = (&self.previous, self.previous_expires_at)
            && until > now
        {
            out.push(p);
        }
        out
    }
}

/// A new Standard Webhooks secret: `whsec_` + base64 of 24 random bytes.
pub fn new_signing_secret() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

impl Subscription {
    /// Whether the subscription wants this event (ignoring pause and disablement).
    pub fn wants(&self, event: &Event) -> bool {
        if !self.include_internal && !event.is_public() {
            return false;
        }
        if !self.event_types.is_empty() && !self.event_types.contains(&event.event_type) {
            return false;
        }
        if let (Some(min), Some(sev)) = (self.min_severity, event.severity)
            && sev > min
        {
            return false;
        }
        if !self.component_ids.is_empty() && !event.component_ids.iter().any(|c| self.component_ids.contains(c)) {
            return false;
        }
        true
    }

    pub fn is_active(&self) -> bool {
        self.disabled_at.is_none()
    }

    pub fn etag(&self) -> String {
        super::version::etag(self.version)
    }

    /// Marks a change: bumps the version and updated_at.
    pub fn touch(&mut self, now: DateTime<Utc>) {
        super::version::bump(&mut self.version, &mut self.updated_at, now);
    }
}

/// The input to create a subscription, before validation. The target's reachability is
/// checked by the caller (it depends on network settings).
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
    pub channel: Option<Channel>,
    pub target: Option<String>,
    pub event_types: Vec<EventType>,
    pub min_severity: Option<Severity>,
    pub component_ids: Vec<Uuid>,
    pub include_internal: bool,
}

/// A partial update of a subscription.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionPatch {
    pub target: Option<String>,
    pub event_types: Option<Vec<EventType>>,
    pub min_severity: Option<Option<Severity>>,
    pub component_ids: Option<Vec<Uuid>>,
    pub include_internal: Option<bool>,
    pub paused: Option<bool>,
}

/// Validates a target for its channel: an http(s) URL without credentials, or an email
/// address.
pub fn validate_target(v: &mut Violations, channel: Channel, target: &str) -> String {
    let target = target.trim();
    if target.is_empty() {
        v.add("target", "is required");
        return String::new();
    }
    if target.len() > 2048 {
        v.add("target", "must be at most 2048 characters");
    }
    match channel {
        Channel::Email => {
            if target.parse::<lettre::Address>().is_err() {
                v.add("target", "must be an email address");
            }
        }
        Channel::Webhook | Channel::Slack | Channel::Teams => match url::Url::parse(target) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                if !u.username().is_empty() || u.password().is_some() {
                    v.add("target", "must not carry credentials in the URL");
                }
            }
            _ => v.add("target", "must be an http:// or https:// URL"),
        },
    }
    target.to_string()
}

impl NewSubscription {
    pub fn validate(self, created_by: &str, now: DateTime<Utc>) -> Result<(Subscription, SigningSecrets)> {
        let mut v = Violations::new();
        let channel = self.channel.unwrap_or_else(|| {
            v.add("channel", format!("is required; one of: {}", Channel::expected()));
            Channel::Webhook
        });
        let target = validate_target(&mut v, channel, self.target.as_deref().unwrap_or(""));
        check_lists(&mut v, &self.event_types, &self.component_ids);
        v.finish()?;
        let secrets =
            SigningSecrets { current: (channel == Channel::Webhook).then(new_signing_secret), ..Default::default() };
        let mut event_types = self.event_types;
        event_types.sort();
        event_types.dedup();
        Ok((
            Subscription {
                id: Uuid::now_v7(),
                channel,
                target,
                event_types,
                min_severity: self.min_severity,
                component_ids: self.component_ids,
                include_internal: self.include_internal,
                paused: false,
                disabled_at: None,
                disabled_reason: None,
                failing_since: None,
                created_at: now,
                updated_at: now,
                created_by: created_by.to_string(),
                version: 1,
            },
            secrets,
        ))
    }
}

fn check_lists(v: &mut Violations, types: &[EventType], components: &[Uuid]) {
    if types.contains(&EventType::SubscriptionTest) {
        v.add("event_types", "subscription.test is always delivered by the test endpoint; do not list it");
    }
    if components.len() > 100 {
        v.add("component_ids", "must have at most 100 entries");
    }
}

impl Subscription {
    /// Applies a patch; returns whether anything changed. Re-enabling is not a patch: a
    /// disabled subscription is made anew (or resumed with `paused: false` when paused).
    pub fn apply_patch(&mut self, patch: SubscriptionPatch, now: DateTime<Utc>) -> Result<bool> {
        let before = self.clone();
        let mut v = Violations::new();
        if let Some(t) = patch.target {
            self.target = validate_target(&mut v, self.channel, &t);
        }
        if let Some(mut types) = patch.event_types {
            types.sort();
            types.dedup();
            self.event_types = types;
        }
        if let Some(m) = patch.min_severity {
            self.min_severity = m;
        }
        if let Some(c) = patch.component_ids {
            self.component_ids = c;
        }
        if let Some(i) = patch.include_internal {
            self.include_internal = i;
        }
        if let Some(p) = patch.paused {
            self.paused = p;
        }
        check_lists(&mut v, &self.event_types, &self.component_ids);
        v.finish()?;
        let changed = *self != before;
        if changed {
            self.touch(now);
        }
        Ok(changed)
    }
}

/// One event to one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub subscription_id: Uuid,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_attempt_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeliveryAttempt {
    pub id: Uuid,
    pub delivery_id: Uuid,
    pub subscription_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    /// The HTTP status (webhook, Slack, Teams) or SMTP reply code (email), if one came back.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// The start of the response body.
    pub response_excerpt: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

/// The delays between attempts: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h
/// (eight attempts over about 28 hours), as svix does.
pub const RETRY_SCHEDULE: [Duration; 8] = [
    Duration::ZERO,
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The least wait after a 429 (too many requests) or a timeout.
pub const SLOW_DOWN: Duration = Duration::from_secs(60);

/// How an attempt ended, as far as scheduling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Failed; retry. `retry_after` as the receiver asked; `slow_down` after a 429 or timeout.
    Retry {
        retry_after: Option<Duration>,
        slow_down: bool,
    },
    /// The receiver is gone (HTTP 410): disable the subscription.
    Gone,
}

/// When to try again after `attempts_made` attempts failed, with `jitter` in [-0.2, 0.2]
/// (±20 %); `None` when the schedule is exhausted (dead-letter it).
pub fn next_attempt_at(
    attempts_made: u32,
    now: DateTime<Utc>,
    retry_after: Option<Duration>,
    slow_down: bool,
    jitter: f64,
) -> Option<DateTime<Utc>> {
    let base = *RETRY_SCHEDULE.get(attempts_made as usize)?;
    let mut delay = base.mul_f64(1.0 + jitter.clamp(-0.2, 0.2));
    if slow_down {
        delay = delay.max(SLOW_DOWN);
    }
    if let Some(r) = retry_after {
        delay = delay.max(r);
    }
    Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::hours(24)))
}

/// A random jitter for [`next_attempt_at`].
pub fn jitter() -> f64 {
    rand::rng().random_range(-0.2..=0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
        (at.expect("scheduled") - now).num_milliseconds() as f64 / 1000.0
    }

    #[test]
    fn retries_follow_the_schedule_and_stop_after_the_last_step() {
        let now = crate::domain::now();
        let expected = [0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0];
        for (made, want) in expected.iter().enumerate() {
            assert_eq!(secs(next_attempt_at(made as u32, now, None, false, 0.0), now), *want, "after {made}");
        }
        assert_eq!(next_attempt_at(8, now, None, false, 0.0), None, "dead-lettered after nine attempts");
    }

    #[test]
    fn jitter_is_at_most_a_fifth_either_way() {
        let now = crate::domain::now();
        assert_eq!(secs(next_attempt_at(2, now, None, false, 0.2), now), 360.0);
        assert_eq!(secs(next_attempt_at(2, now, None, false, -0.2), now), 240.0);
        assert_eq!(secs(next_attempt_at(2, now, None, false, 5.0), now), 360.0, "clamped");
        for _ in 0..1000 {
            assert!((-0.2..=0.2).contains(&jitter()));
        }
    }

    #[test]
    fn a_slow_down_or_retry_after_lengthens_the_wait_but_never_shortens_it() {
        let now = crate::domain::now();
        assert_eq!(secs(next_attempt_at(1, now, None, true, 0.0), now), 60.0, "429 or timeout: at least a minute");
        assert_eq!(secs(next_attempt_at(3, now, None, true, 0.0), now), 1800.0);
        assert_eq!(secs(next_attempt_at(1, now, Some(Duration::from_secs(120)), false, 0.0), now), 120.0);
        assert_eq!(secs(next_attempt_at(2, now, Some(Duration::from_secs(1)), false, 0.0), now), 300.0);
    }
}
