//! The mails customers get: the confirmation of a subscription, the note that an address is
//! subscribed already, and the notices of incidents and maintenance. Plain text and HTML, in
//! the subscriber's language (English or German), with the strings of the status page.

use super::render::escape_html;
use crate::domain::i18n::Lang;

/// Subject, plain text and HTML.
pub type Mail = (String, String, String);

fn german(lang: &str) -> bool {
    lang == "de"
}

/// The HTML part: the paragraphs, the action as a button, the footer, and the unsubscribe link.
fn html(paragraphs: &[String], link: (&str, &str), footer: &str, unsubscribe: (&str, &str)) -> String {
    let body: String = paragraphs.iter().map(|p| format!("<p>{}</p>", escape_html(p))).collect();
    format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;line-height:1.5;max-width:36rem\">{body}\
         <p><a href=\"{}\" style=\"display:inline-block;padding:.6em 1.2em;background:#0b63ce;color:#fff;\
         text-decoration:none;border-radius:6px\">{}</a></p><p style=\"color:#555;font-size:.9em\">{}</p>\
         <p style=\"color:#555;font-size:.9em\"><a href=\"{}\">{}</a></p></body></html>",
        escape_html(link.0),
        escape_html(link.1),
        escape_html(footer),
        escape_html(unsubscribe.0),
        escape_html(unsubscribe.1),
    )
}

fn unsubscribe_label(lang: &str) -> &'static str {
    if german(lang) { "Abbestellen" } else { "Unsubscribe" }
}

/// Asks the owner of an address to confirm a subscription (the double opt-in).
pub fn confirmation(page: &str, lang: &str, confirm_url: &str, unsubscribe_url: &str) -> Mail {
    let (subject, intro, action, footer) = if german(lang) {
        (
            format!("Bitte bestätigen Sie Ihr Abonnement: {page}"),
            format!(
                "Jemand – hoffentlich Sie – möchte über Störungen und Wartungen von {page} per E-Mail informiert werden."
            ),
            "Abonnement bestätigen",
            "Der Link gilt 48 Stunden. Wenn Sie das nicht waren, ignorieren Sie diese E-Mail: Sie erhalten dann keine weiteren.",
        )
    } else {
        (
            format!("Please confirm your subscription to {page}"),
            format!("Someone – hopefully you – asked to hear about incidents and maintenance of {page} by email."),
            "Confirm the subscription",
            "The link works for 48 hours. If this was not you, ignore this email: you will get no others.",
        )
    };
    let label = unsubscribe_label(lang);
    let text = format!("{intro}\n\n{action}: {confirm_url}\n\n{footer}\n\n{label}: {unsubscribe_url}\n");
    (subject, text, html(&[intro], (confirm_url, action), footer, (unsubscribe_url, label)))
}

/// Tells the owner of a subscribed address that it is subscribed already (asked again), with
/// the link to end it.
pub fn already_subscribed(page: &str, lang: &str, unsubscribe_url: &str) -> Mail {
    let (subject, intro, action, footer) = if german(lang) {
        (
            format!("Sie haben {page} bereits abonniert"),
            format!("Diese Adresse erhält bereits E-Mails zu Störungen und Wartungen von {page}."),
            "Abbestellen",
            "Wenn Sie das nicht angefragt haben, können Sie diese E-Mail ignorieren.",
        )
    } else {
        (
            format!("You are already subscribed to {page}"),
            format!("This address already gets emails about incidents and maintenance of {page}."),
            "Unsubscribe",
            "If you did not ask, you can ignore this email.",
        )
    };
    let text = format!("{intro}\n\n{action}: {unsubscribe_url}\n\n{footer}\n");
    (subject, text, html(&[intro], (unsubscribe_url, action), footer, (unsubscribe_url, unsubscribe_label(lang))))
}

/// The RFC 8058 headers of every mail to a subscriber: one-click unsubscribe.
pub fn unsubscribe_headers(unsubscribe_url: &str) -> Vec<(String, String)> {
    vec![
        ("List-Unsubscribe".into(), format!("<{unsubscribe_url}>")),
        ("List-Unsubscribe-Post".into(), "List-Unsubscribe=One-Click".into()),
    ]
}

/// What a customer mail about an event says, the same for every subscriber of one language:
/// built once per event and language ([`notice`]), then given each subscriber's own links
/// ([`Notice::for_subscriber`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    subject: String,
    /// Plain text and HTML up to the footer.
    text: String,
    html: String,
}

/// What a notice needs besides the event: the page's name, address and time zone, and the
/// components' names.
pub struct NoticeContext<'a> {
    pub page: &'a str,
    pub public_url: &'a str,
    pub time_zone: chrono_tz::Tz,
    pub component_names: &'a std::collections::HashMap<uuid::Uuid, String>,
}

fn field<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Option<T> {
    serde_json::from_value(v.clone()).ok()
}

fn nonempty(v: &serde_json::Value) -> Option<String> {
    v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The mail about `event` in `lang`, read from the event's **public** data only (what the
/// status page shows); `None` for an event customers do not see.
pub fn notice(event: &crate::domain::Event, lang: Lang, cx: &NoticeContext) -> Option<Notice> {
    use crate::domain::EventType;
    use crate::domain::maintenance::MaintenanceStatus;
    use crate::domain::{Impact, Status, WorkaroundAvailability};

    let data = event.public_data.as_ref()?;
    let t = lang.strings();
    let names = |ids: Vec<uuid::Uuid>| -> String {
        let names: Vec<&str> = ids.iter().filter_map(|id| cx.component_names.get(id).map(String::as_str)).collect();
        names.join(", ")
    };
    let mut facts: Vec<(&str, String)> = Vec::new();
    let (headline, message, link);
    if let Some(m) = data.get("maintenance") {
        let title = nonempty(&m["title"]).unwrap_or_default();
        let status: MaintenanceStatus = field(&m["status"])?;
        let what = match event.event_type {
            EventType::MaintenanceReminder => t.maintenance_starts_soon,
            EventType::MaintenanceScheduled => t.maintenance,
            _ => t.maintenance_status(status),
        };
        headline = format!("{what}: {title}");
        facts.push((t.status, t.maintenance_status(status).to_string()));
        if let (Some(from), Some(until)) = (field(&m["scheduled_for"]), field(&m["scheduled_until"])) {
            facts.push((t.maintenance_window, t.window(from, until, cx.time_zone)));
        }
        let affected = names(field(&m["components"]).unwrap_or_default());
        if !affected.is_empty() {
            facts.push((t.affected, affected));
        }
        let update_status: Option<MaintenanceStatus> = field(&data["update"]["status"]);
        message = nonempty(&data["update"]["body"])
            .or_else(|| update_status.map(|s| t.maintenance_update_text(s).to_string()).filter(|s| !s.is_empty()))
            .or_else(|| nonempty(&m["body"]));
        link = format!("{}/status", cx.public_url);
    } else {
        let i = data.get("incident")?;
        let title = nonempty(&i["title"]).unwrap_or_default();
        let status: Status = field(&i["status"])?;
        headline = format!("{}: {title}", t.incident_status(status));
        facts.push((t.status, t.incident_status(status).to_string()));
        if let Some(impact) = field::<Impact>(&i["impact"]) {
            facts.push((t.impact, t.impact(impact).to_string()));
        }
        let components: Vec<crate::domain::AffectedComponent> = field(&i["affected_components"]).unwrap_or_default();
        let affected = names(components.into_iter().map(|c| c.component_id).collect());
        if !affected.is_empty() {
            facts.push((t.affected, affected));
        }
        if let Some(n) = i["affected_customers_estimate"].as_i64() {
            facts.push((t.customers, t.about_customers(n)));
        }
        if status.is_open() {
            let eta = field(&i["eta"]).map(|eta| t.datetime(eta, cx.time_zone));
            facts.push((t.eta, eta.unwrap_or_else(|| t.not_yet_known.to_string())));
            let workaround = match field(&i["workaround"]["availability"]) {
                Some(WorkaroundAvailability::Available) => {
                    nonempty(&i["workaround"]["text"]).unwrap_or_else(|| t.not_yet_known.to_string())
                }
                Some(WorkaroundAvailability::None) => t.no_workaround.to_string(),
                _ => t.not_yet_known.to_string(),
            };
            facts.push((t.workaround, workaround));
        }
        message = nonempty(&data["update"]["body"])
            .or_else(|| (!status.is_open()).then(|| nonempty(&i["resolution_summary"])).flatten())
            .or_else(|| (event.event_type == EventType::IncidentCreated).then(|| nonempty(&i["summary"])).flatten());
        let reference = nonempty(&i["reference"]).unwrap_or_else(|| event.subject.clone());
        link = format!("{}/status/incidents/{reference}", cx.public_url);
    }
    let subject = format!("[{}] {headline}", cx.page).replace(['\r', '\n'], " ");
    let mut text = format!("{headline}\n\n");
    for (k, v) in &facts {
        text.push_str(&format!("{k}: {v}\n"));
    }
    if let Some(m) = &message {
        text.push_str(&format!("\n{m}\n"));
    }
    text.push_str(&format!("\n{}: {link}\n", t.mail_view));
    let rows: String = facts
        .iter()
        .map(|(k, v)| {
            format!(
                "<tr><th align=\"left\" style=\"padding:.2em 1em .2em 0\">{}</th><td>{}</td></tr>",
                escape_html(k),
                escape_html(v)
            )
        })
        .collect();
    let mut html = format!(
        "<!doctype html><html lang=\"{}\"><body style=\"font-family:sans-serif;line-height:1.5;max-width:36rem\">\
         <h2>{}</h2><table>{rows}</table>",
        lang.tag(),
        escape_html(&headline)
    );
    if let Some(m) = &message {
        html.push_str(&format!("<p>{}</p>", escape_html(m).replace('\n', "<br>")));
    }
    html.push_str(&format!("<p><a href=\"{}\">{}</a></p>", escape_html(&link), escape_html(t.mail_view)));
    Some(Notice { subject, text, html })
}

impl Notice {
    /// The mail one subscriber gets: the notice with the footer saying why, and their own
    /// links to choose components and to unsubscribe.
    pub fn for_subscriber(&self, lang: Lang, page: &str, manage_url: &str, unsubscribe_url: &str) -> Mail {
        let t = lang.strings();
        let text = format!(
            "{}\n-- \n{} {page}.\n{}: {manage_url}\n{}: {unsubscribe_url}\n",
            self.text, t.mail_why, t.mail_manage, t.unsubscribe
        );
        let html = format!(
            "{}<hr><p style=\"color:#555;font-size:.9em\">{} {}.<br><a href=\"{}\">{}</a> · <a href=\"{}\">{}</a></p>\
             </body></html>",
            self.html,
            escape_html(t.mail_why),
            escape_html(page),
            escape_html(manage_url),
            escape_html(t.mail_manage),
            escape_html(unsubscribe_url),
            escape_html(t.unsubscribe),
        );
        (self.subject.clone(), text, html)
    }
}
