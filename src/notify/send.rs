//! Sending one delivery over its channel, and what came of it.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lettre::message::{Mailbox, MultiPart};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::render::{self, Summary};
use super::sign;
use super::smtp::Smtp;
use super::ssrf::Guard;
use crate::domain::subscription::{Outcome, SigningSecrets};
use crate::domain::{Channel, Event, Subscription};

/// Connecting may take this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole exchange may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A queued mail's whole SMTP exchange may take this long.
const MAIL_TIMEOUT: Duration = Duration::from_secs(60);
/// At most this much of a response is read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// This much of it is kept in the delivery log.
const EXCERPT_BYTES: usize = 1024;

/// How to send.
#[derive(Debug, Clone)]
pub struct SenderSettings {
    pub guard: Guard,
    /// `smtp://host:port`, `smtps://…` or `smtp://…?tls=required`, with credentials if needed.
    pub smtp_url: Option<SecretString>,
    pub smtp_from: String,
    /// SMTP connections kept open and used at once (customer mails go out over all of them).
    pub smtp_connections: u32,
    /// Where the API is reached from outside: the CloudEvents `source`, and the base of links.
    pub public_url: String,
}

impl Default for SenderSettings {
    fn default() -> Self {
        SenderSettings {
            guard: Guard::default(),
            smtp_url: None,
            smtp_from: "incidentd@localhost".into(),
            smtp_connections: 8,
            public_url: "http://localhost:8080".into(),
        }
    }
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct Sent {
    pub status_code: Option<i32>,
    pub latency: Duration,
    pub excerpt: Option<String>,
    pub error: Option<String>,
    pub outcome: Outcome,
}

pub struct Sender {
    http: reqwest::Client,
    smtp: Option<(Smtp, Mailbox)>,
    guard: Guard,
    public_url: String,
    smtp_connections: usize,
}

impl Sender {
    pub fn new(settings: SenderSettings) -> anyhow::Result<Self> {
        // The HTTP and SMTP clients use rustls with the ring provider (as sqlx does).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(settings.guard.resolver())
            .pool_max_idle_per_host(64)
            .pool_idle_timeout(Duration::from_secs(90))
            .user_agent(concat!("incidentd/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let smtp = match &settings.smtp_url {
            Some(url) => {
                // Connections are pooled: a burst of mails reuses them instead of a handshake each.
                let transport = Smtp::from_url(url.expose_secret(), settings.smtp_connections, REQUEST_TIMEOUT)?;
                let from: Mailbox = settings
                    .smtp_from
                    .parse()
                    .map_err(|e| anyhow::anyhow!("INCIDENTD_SMTP_FROM {:?}: {e}", settings.smtp_from))?;
                Some((transport, from))
            }
            None => None,
        };
        Ok(Sender {
            http,
            smtp,
            guard: settings.guard,
            public_url: settings.public_url,
            smtp_connections: settings.smtp_connections.max(1) as usize,
        })
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Sends `event` to `subscription`; `now` (the dispatcher's clock) decides which signing
    /// secrets are still active.
    pub async fn send(
        &self,
        event: &Event,
        subscription: &Subscription,
        secrets: &SigningSecrets,
        now: DateTime<Utc>,
    ) -> Sent {
        let data = if subscription.include_internal { Some(&event.data) } else { event.public_data.as_ref() };
        let Some(data) = data else {
            return failed(Duration::ZERO, "the event has no data this subscription may see".into());
        };
        match subscription.channel {
            Channel::Webhook => {
                let body = serde_json::to_vec(&event.cloud_event(&self.public_url, subscription.include_internal))
                    .unwrap_or_default();
                let id = event.id.to_string();
                // Receivers compare the timestamp with their own clock: it is wall time.
                let timestamp = Utc::now().timestamp();
                let signature = sign::signature(&secrets.active(now), &id, timestamp, &body);
                let mut headers = vec![
                    ("content-type", "application/cloudevents+json".to_string()),
                    ("webhook-id", id),
                    ("webhook-timestamp", timestamp.to_string()),
                    ("webhook-signature", signature),
                ];
                // The attempt's span (in the trace of the request behind the event): the
                // receiver's own spans join the same trace.
                if let Some(traceparent) = crate::telemetry::current_traceparent() {
                    headers.push(("traceparent", traceparent));
                }
                self.post(&subscription.target, &headers, body).await
            }
            Channel::Slack | Channel::Teams => {
                let summary = render::summarize(event, data, &self.public_url);
                let message = if subscription.channel == Channel::Slack {
                    render::slack(&summary)
                } else {
                    render::teams(&summary)
                };
                let body = serde_json::to_vec(&message).unwrap_or_default();
                self.post(&subscription.target, &[("content-type", "application/json".to_string())], body).await
            }
            Channel::Email => self.email(&subscription.target, &render::summarize(event, data, &self.public_url)).await,
        }
    }

    async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Sent {
        let started = Instant::now();
        let parsed = match url::Url::parse(url) {
            Ok(u) => u,
            Err(e) => return failed(started.elapsed(), format!("invalid URL: {e}")),
        };
        if let Some(why) = parsed.host().and_then(|h| self.guard.refuse_host(&h)) {
            return failed(started.elapsed(), format!("refused by the SSRF guard: {why}"));
        }
        let mut req = self.http.post(parsed).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let mut res = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let timed_out = e.is_timeout();
                let mut msg = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    msg.push_str(": ");
                    msg.push_str(&s.to_string());
                    source = s.source();
                }
                return Sent {
                    status_code: None,
                    latency: started.elapsed(),
                    excerpt: None,
                    error: Some(msg),
                    outcome: Outcome::Retry { retry_after: None, slow_down: timed_out },
                };
            }
        };
        let status = res.status();
        let retry_after = res.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let mut read = Vec::new();
        let mut timed_out = false;
        loop {
            match res.chunk().await {
                Ok(Some(chunk)) => {
                    read.extend_from_slice(
                        &chunk[..chunk.len().min(MAX_RESPONSE_BYTES - read.len().min(MAX_RESPONSE_BYTES))],
                    );
                    if read.len() >= MAX_RESPONSE_BYTES {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    timed_out = e.is_timeout();
                    break;
                }
            }
        }
        read.truncate(EXCERPT_BYTES);
        let excerpt = (!read.is_empty()).then(|| String::from_utf8_lossy(&read).into_owned());
        let (outcome, error) = if status.is_success() {
            (Outcome::Delivered, None)
        } else if status == StatusCode::GONE {
            (Outcome::Gone, Some("the receiver answered 410 Gone".to_string()))
        } else if status.is_redirection() {
            (Outcome::Retry { retry_after, slow_down: false }, Some(format!("{status}: redirects are not followed")))
        } else {
            let slow_down = status == StatusCode::TOO_MANY_REQUESTS || timed_out;
            (Outcome::Retry { retry_after, slow_down }, Some(format!("the receiver answered {status}")))
        };
        Sent { status_code: Some(i32::from(status.as_u16())), latency: started.elapsed(), excerpt, error, outcome }
    }

    /// How many mails may be handed to SMTP at once.
    pub fn smtp_connections(&self) -> usize {
        self.smtp_connections
    }

    /// Whether email can be sent (`INCIDENTD_SMTP_URL` is set).
    pub fn can_email(&self) -> bool {
        self.smtp.is_some()
    }

    /// Sends a queued mail (with its extra headers); the error says why it failed.
    pub async fn send_mail(&self, mail: &crate::domain::subscriber::OutboundMail) -> Result<(), String> {
        use lettre::message::header::{HeaderName, HeaderValue};
        let Some((transport, from)) = &self.smtp else {
            return Err("email is not configured (INCIDENTD_SMTP_URL)".into());
        };
        let to: Mailbox = mail.to.parse().map_err(|e| format!("invalid address: {e}"))?;
        let mut builder = lettre::Message::builder().from(from.clone()).to(to).subject(mail.subject.clone());
        for (name, value) in &mail.headers {
            let name = HeaderName::new_from_ascii(name.clone()).map_err(|e| format!("header {name}: {e}"))?;
            builder = builder.raw_header(HeaderValue::new(name, value.clone()));
        }
        let message = builder
            .multipart(MultiPart::alternative_plain_html(mail.text.clone(), mail.html.clone()))
            .map_err(|e| format!("could not build the email: {e}"))?;
        // lettre's timeout is per command; this bounds the whole exchange, so a server that
        // trickles cannot hold a batch of mails for long.
        match tokio::time::timeout(MAIL_TIMEOUT, transport.send(message)).await {
            Ok(sent) => sent.map(drop).map_err(|e| e.to_string()),
            Err(_) => Err(format!("the SMTP server took longer than {} s", MAIL_TIMEOUT.as_secs())),
        }
    }

    async fn email(&self, to: &str, summary: &Summary) -> Sent {
        let started = Instant::now();
        let Some((transport, from)) = &self.smtp else {
            return failed(started.elapsed(), "email is not configured (INCIDENTD_SMTP_URL)".into());
        };
        let (subject, text, html) = render::email(summary);
        let to: Mailbox = match to.parse() {
            Ok(m) => m,
            Err(e) => return failed(started.elapsed(), format!("invalid address: {e}")),
        };
        let message = match lettre::Message::builder()
            .from(from.clone())
            .to(to)
            .subject(subject)
            .multipart(MultiPart::alternative_plain_html(text, html))
        {
            Ok(m) => m,
            Err(e) => return failed(started.elapsed(), format!("could not build the email: {e}")),
        };
        match transport.send(message).await {
            Ok(response) => Sent {
                status_code: Some(i32::from(u16::from(response.code()))),
                latency: started.elapsed(),
                excerpt: Some(response.message().collect::<Vec<_>>().join(" ")),
                error: None,
                outcome: Outcome::Delivered,
            },
            Err(e) => Sent {
                status_code: e.code.map(i32::from),
                latency: started.elapsed(),
                excerpt: None,
                error: Some(e.message),
                outcome: Outcome::Retry { retry_after: None, slow_down: e.timed_out },
            },
        }
    }
}

fn failed(latency: Duration, error: String) -> Sent {
    Sent {
        status_code: None,
        latency,
        excerpt: None,
        error: Some(error),
        outcome: Outcome::Retry { retry_after: None, slow_down: false },
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs.min(24 * 3600)));
    }
    let when = DateTime::parse_from_rfc2822(v.trim()).ok()?;
    (when.with_timezone(&Utc) - Utc::now()).to_std().ok()
}

/// The data a test delivery carries.
pub fn test_event(subscription: &Subscription, now: DateTime<Utc>) -> Event {
    let data: Value = serde_json::json!({
        "subscription_id": subscription.id,
        "message": "This is a test notification from incidentd.",
    });
    Event {
        id: uuid::Uuid::now_v7(),
        seq: None,
        event_type: crate::domain::EventType::SubscriptionTest,
        subject: subscription.id.to_string(),
        time: now,
        severity: None,
        component_ids: Vec::new(),
        public_data: Some(data.clone()),
        data,
        traceparent: crate::telemetry::current_traceparent(),
    }
}
