//! The mails customers get that are no event's notification: the confirmation of a
//! subscription, and the notice that an address is subscribed already. Plain text and HTML,
//! in the subscriber's language (English or German).

use super::render::escape_html;

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
