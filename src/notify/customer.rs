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

/// The links at the foot of every mail to a subscriber: choosing components, unsubscribing.
struct Footer<'a> {
    lang: Lang,
    manage: &'a str,
    unsubscribe: &'a str,
}

impl Footer<'_> {
    fn text(&self) -> String {
        let t = self.lang.strings();
        format!("{}: {}\n{}: {}\n", t.mail_manage, self.manage, t.unsubscribe, self.unsubscribe)
    }

    fn html(&self) -> String {
        let t = self.lang.strings();
        format!(
            "<p style=\"color:#555;font-size:.9em\"><a href=\"{}\">{}</a> · <a href=\"{}\">{}</a></p>",
            escape_html(self.manage),
            escape_html(t.mail_manage),
            escape_html(self.unsubscribe),
            escape_html(t.unsubscribe),
        )
    }
}

/// The HTML part: the paragraphs, the action as a button, the note, and the footer's links.
fn html(paragraphs: &[String], link: (&str, &str), note: &str, footer: &Footer) -> String {
    let body: String = paragraphs.iter().map(|p| format!("<p>{}</p>", escape_html(p))).collect();
    format!(
        "<!doctype html><html lang=\"{}\"><body style=\"font-family:sans-serif;line-height:1.5;max-width:36rem\">{body}\
         <p><a href=\"{}\" style=\"display:inline-block;padding:.6em 1.2em;background:#0b63ce;color:#fff;\
         text-decoration:none;border-radius:6px\">{}</a></p><p style=\"color:#555;font-size:.9em\">{}</p>{}</body></html>",
        footer.lang.tag(),
        escape_html(link.0),
        escape_html(link.1),
        escape_html(note),
        footer.html(),
    )
}

fn lang_of(lang: &str) -> Lang {
    if german(lang) { Lang::De } else { Lang::En }
}

/// Asks the owner of an address to confirm a subscription (the double opt-in).
pub fn confirmation(page: &str, lang: &str, confirm_url: &str, manage_url: &str, unsubscribe_url: &str) -> Mail {
    let (subject, intro, action, note) = if german(lang) {
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
    let footer = Footer { lang: lang_of(lang), manage: manage_url, unsubscribe: unsubscribe_url };
    let text = format!("{intro}\n\n{action}: {confirm_url}\n\n{note}\n\n{}", footer.text());
    (subject, text, html(&[intro], (confirm_url, action), note, &footer))
}

/// Tells the owner of a subscribed address that it is subscribed already (asked again), with
/// the links to choose components and to end it.
pub fn already_subscribed(page: &str, lang: &str, manage_url: &str, unsubscribe_url: &str) -> Mail {
    let (subject, intro, note) = if german(lang) {
        (
            format!("Sie haben {page} bereits abonniert"),
            format!("Diese Adresse erhält bereits E-Mails zu Störungen und Wartungen von {page}."),
            "Wenn Sie das nicht angefragt haben, können Sie diese E-Mail ignorieren.",
        )
    } else {
        (
            format!("You are already subscribed to {page}"),
            format!("This address already gets emails about incidents and maintenance of {page}."),
            "If you did not ask, you can ignore this email.",
        )
    };
    let footer = Footer { lang: lang_of(lang), manage: manage_url, unsubscribe: unsubscribe_url };
    let action = footer.lang.strings().mail_manage;
    let text = format!("{intro}\n\n{note}\n\n{}", footer.text());
    (subject, text, html(&[intro], (manage_url, action), note, &footer))
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
        let postmortem = nonempty(&data["postmortem"]["summary"]);
        headline = match postmortem {
            Some(_) => format!("{}: {title}", t.postmortem),
            None => format!("{}: {title}", t.incident_status(status)),
        };
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
        // An edit says what changed.
        let changed: Vec<&str> = data["changed_fields"]
            .as_array()
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| match f.as_str()? {
                        "impact" => Some(t.impact),
                        "eta" => Some(t.eta),
                        "workaround" => Some(t.workaround),
                        "affected_components" => Some(t.affected),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        message = postmortem
            .or_else(|| nonempty(&data["update"]["body"]))
            .or_else(|| (!changed.is_empty()).then(|| format!("{}: {}", t.changed, changed.join(", "))))
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
        let why = format!("{} {page}.", lang.strings().mail_why);
        let footer = Footer { lang, manage: manage_url, unsubscribe: unsubscribe_url };
        let text = format!("{}\n-- \n{why}\n{}", self.text, footer.text());
        let html = format!(
            "{}<hr><p style=\"color:#555;font-size:.9em\">{}</p>{}</body></html>",
            self.html,
            escape_html(&why),
            footer.html()
        );
        (self.subject.clone(), text, html)
    }
}
