//! What each channel sends: the CloudEvent for webhooks; a message a person can read at a
//! glance (severity, status, impact, ETA, workaround, link) for Slack, Teams and email.

use serde_json::{Value, json};

use crate::domain::{Event, EventType};

/// The facts of an incident event, read from the event data the subscriber may see.
pub struct Summary {
    pub headline: String,
    pub reference: String,
    pub facts: Vec<(&'static str, String)>,
    /// The update's text, when the event carries one.
    pub message: Option<String>,
    pub link: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn what_happened(event: &Event, data: &Value) -> String {
    let status = data["incident"]["status"].as_str().unwrap_or("");
    match event.event_type {
        EventType::IncidentCreated => "declared".into(),
        EventType::IncidentUpdated => "details updated".into(),
        EventType::IncidentStatusChanged => format!("now {status}"),
        EventType::IncidentAcknowledged => match text(&data["incident"]["acknowledged_by"]) {
            Some(by) => format!("acknowledged by {by}"),
            None => "acknowledged".into(),
        },
        EventType::IncidentAckOverdue => match data["reminder"].as_i64() {
            Some(n) if n > 1 => format!("still not acknowledged (reminder {n})"),
            _ => "not acknowledged in time".into(),
        },
        EventType::IncidentUpdatePosted => match text(&data["previous_status"]) {
            Some(_) => format!("update, now {status}"),
            None => "update".into(),
        },
        EventType::IncidentResolved => "resolved".into(),
        EventType::IncidentReopened => "reopened".into(),
        EventType::IncidentDeleted => "deleted".into(),
        EventType::IncidentMerged => match text(&data["into"]["reference"]) {
            Some(into) => format!("merged into {into}"),
            None => "merged".into(),
        },
        EventType::IncidentLinked | EventType::IncidentUnlinked => {
            let link = &data["link"];
            let kind = text(&link["kind"]).unwrap_or_default().replace('_', " ");
            let other = text(&link["incident"]["reference"]).unwrap_or_default();
            let verb = if event.event_type == EventType::IncidentLinked { "linked" } else { "link removed" };
            format!("{verb}: {kind} {other}")
        }
        EventType::PostmortemCreated => "postmortem started".into(),
        EventType::PostmortemUpdated => "postmortem updated".into(),
        EventType::PostmortemPublished => "postmortem published".into(),
        EventType::ActionCreated => "follow-up action added".into(),
        EventType::ActionUpdated => match text(&data["action"]["status"]) {
            Some(s) if s != "open" => format!("follow-up action {}", s.replace('_', " ")),
            _ => "follow-up action updated".into(),
        },
        EventType::ActionDeleted => "follow-up action removed".into(),
        EventType::ActionOverdue => "follow-up action overdue".into(),
        EventType::ComponentStatusChanged => "component status changed".into(),
        EventType::MaintenanceScheduled => "maintenance scheduled".into(),
        EventType::MaintenanceUpdated => match text(&data["update"]["status"]) {
            Some(s) => format!("maintenance {}", s.replace('_', " ")),
            None => "maintenance updated".into(),
        },
        EventType::MaintenanceStarted => "maintenance started".into(),
        EventType::MaintenanceCompleted => "maintenance completed".into(),
        EventType::MaintenanceCancelled => "maintenance cancelled".into(),
        EventType::MaintenanceReminder => "maintenance starts soon".into(),
        EventType::SubscriptionDisabled => "subscription disabled".into(),
        EventType::SubscriptionTest => "test notification".into(),
    }
}

/// Reads the summary out of `data` (the internal or the public form of the event's data).
pub fn summarize(event: &Event, data: &Value, public_url: &str) -> Summary {
    let happened = what_happened(event, data);
    match event.event_type {
        EventType::ComponentStatusChanged => {
            let c = &data["component"];
            let name = text(&c["name"]).unwrap_or_else(|| event.subject.clone());
            let now = text(&c["effective_status"]).unwrap_or_default().replace('_', " ");
            let before = text(&data["previous_status"]).unwrap_or_default().replace('_', " ");
            Summary {
                headline: format!("{name}: {now}"),
                reference: name,
                facts: vec![("Status", now), ("Was", before)],
                message: None,
                link: Some(format!("{public_url}/v1/components/{}", event.subject)),
            }
        }
        EventType::MaintenanceScheduled
        | EventType::MaintenanceUpdated
        | EventType::MaintenanceStarted
        | EventType::MaintenanceCompleted
        | EventType::MaintenanceCancelled
        | EventType::MaintenanceReminder => {
            let m = &data["maintenance"];
            let title = text(&m["title"]).unwrap_or_default();
            Summary {
                headline: format!("Maintenance {title}: {happened}"),
                reference: title,
                facts: vec![
                    ("Status", text(&m["status"]).unwrap_or_default().replace('_', " ")),
                    ("Scheduled for", text(&m["scheduled_for"]).unwrap_or_default()),
                    ("Until", text(&m["scheduled_until"]).unwrap_or_default()),
                ],
                message: text(&data["update"]["body"]).or_else(|| text(&m["body"])),
                link: Some(format!("{public_url}/v1/maintenances/{}", event.subject)),
            }
        }
        EventType::ActionCreated | EventType::ActionUpdated | EventType::ActionDeleted | EventType::ActionOverdue => {
            let a = &data["action"];
            let title = text(&a["title"]).unwrap_or_default();
            Summary {
                headline: format!("{title}: {happened}"),
                reference: title,
                facts: vec![
                    ("Owner", text(&a["owner"]).unwrap_or_else(|| "nobody yet".into())),
                    ("Due", text(&a["due_date"]).unwrap_or_else(|| "no date".into())),
                    ("Priority", text(&a["priority"]).unwrap_or_default()),
                    ("Status", text(&a["status"]).unwrap_or_default().replace('_', " ")),
                ],
                message: text(&a["tracker"]),
                link: Some(format!("{public_url}/v1/actions/{}", event.subject)),
            }
        }
        EventType::SubscriptionDisabled | EventType::SubscriptionTest => Summary {
            headline: format!("incidentd: {happened}"),
            reference: "incidentd".into(),
            facts: text(&data["reason"]).map(|r| vec![("Reason", r)]).unwrap_or_default(),
            message: text(&data["message"]),
            link: None,
        },
        _ => {
            let i = &data["incident"];
            let reference = text(&i["reference"]).unwrap_or_else(|| event.subject.clone());
            let title = text(&i["title"]).unwrap_or_default();
            let mut facts = vec![
                ("Severity", text(&i["severity"]).unwrap_or_default()),
                ("Status", text(&i["status"]).unwrap_or_default()),
                ("Impact", text(&i["impact"]).unwrap_or_default()),
            ];
            facts.push(("ETA", text(&i["eta"]).unwrap_or_else(|| "not yet known".into())));
            let workaround = match i["workaround"]["availability"].as_str() {
                Some("available") => text(&i["workaround"]["text"]).unwrap_or_else(|| "available".into()),
                Some("none") => "none".into(),
                _ => "not yet known".into(),
            };
            facts.push(("Workaround", workaround));
            if let Some(n) = text(&i["affected_customers"]) {
                facts.push(("Affected customers", n));
            }
            if let Some(p) = text(&i["cause"]["provider"]) {
                facts.push(("Third party", p));
            }
            Summary {
                headline: format!("{reference} {title}: {happened}"),
                reference: reference.clone(),
                facts,
                message: text(&data["update"]["body"])
                    .or_else(|| text(&data["postmortem"]["public_summary"]))
                    .or_else(|| text(&data["postmortem"]["summary"]))
                    .or_else(|| text(&i["resolution_summary"])),
                link: Some(format!("{public_url}/v1/incidents/{}", event.subject)),
            }
        }
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A Slack incoming-webhook message: `text` for notifications, Block Kit blocks to read.
pub fn slack(s: &Summary) -> Value {
    let mut blocks = vec![json!({"type": "header", "text": {"type": "plain_text", "text": clip(&s.headline, 150)}})];
    let fields: Vec<Value> = s
        .facts
        .iter()
        .take(10)
        .map(|(k, v)| json!({"type": "mrkdwn", "text": clip(&format!("*{k}*\n{v}"), 2000)}))
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if let Some(m) = &s.message {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn", "text": clip(m, 3000)}}));
    }
    if let Some(link) = &s.link {
        blocks.push(
            json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("<{link}|{}>", s.reference)}]}),
        );
    }
    json!({"text": clip(&s.headline, 3000), "blocks": blocks})
}

/// A Microsoft Teams incoming-webhook message carrying an Adaptive Card.
pub fn teams(s: &Summary) -> Value {
    let mut body =
        vec![json!({"type": "TextBlock", "text": s.headline, "weight": "Bolder", "size": "Medium", "wrap": true})];
    body.push(json!({"type": "FactSet", "facts": s.facts.iter().map(|(k, v)| json!({"title": k, "value": v})).collect::<Vec<_>>()}));
    if let Some(m) = &s.message {
        body.push(json!({"type": "TextBlock", "text": m, "wrap": true}));
    }
    let actions: Vec<Value> = s
        .link
        .iter()
        .map(|l| json!({"type": "Action.OpenUrl", "title": format!("Open {}", s.reference), "url": l}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
                "actions": actions,
            }
        }]
    })
}

pub(crate) fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// An email: subject, plain text and HTML.
pub fn email(s: &Summary) -> (String, String, String) {
    let subject = clip(&s.headline, 200).replace(['\r', '\n'], " ");
    let mut text = format!("{}\n\n", s.headline);
    for (k, v) in &s.facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    if let Some(m) = &s.message {
        text.push_str(&format!("\n{m}\n"));
    }
    if let Some(l) = &s.link {
        text.push_str(&format!("\n{l}\n"));
    }
    let rows: String = s
        .facts
        .iter()
        .map(|(k, v)| format!("<tr><th align=\"left\">{}</th><td>{}</td></tr>", escape_html(k), escape_html(v)))
        .collect();
    let mut html = format!("<h2>{}</h2><table>{rows}</table>", escape_html(&s.headline));
    if let Some(m) = &s.message {
        html.push_str(&format!("<p>{}</p>", escape_html(m).replace('\n', "<br>")));
    }
    if let Some(l) = &s.link {
        html.push_str(&format!("<p><a href=\"{}\">{}</a></p>", escape_html(l), escape_html(&s.reference)));
    }
    (subject, text, format!("<!DOCTYPE html><html><body>{html}</body></html>"))
}
