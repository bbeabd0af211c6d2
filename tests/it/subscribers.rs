//! Customer subscriptions from the status page: double opt-in over a real SMTP server, the
//! links followed over HTTP, the RFC 8058 headers and one-click unsubscribe, the same answer
//! whatever the address's state, and the limits that stop mail bombing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, http_client};
use crate::receivers::SmtpSink;

/// A received mail as Python's `email` package reads it (headers, decoded text and HTML).
fn parse_mail(raw: &str) -> Value {
    let script = r#"
import email, json, sys
from email import policy
m = email.message_from_string(sys.stdin.read(), policy=policy.default)
text = m.get_body(preferencelist=("plain",))
html = m.get_body(preferencelist=("html",))
print(json.dumps({"subject": m["subject"], "to": m["to"],
    "list_unsubscribe": m["List-Unsubscribe"], "list_unsubscribe_post": m["List-Unsubscribe-Post"],
    "text": text.get_content() if text else None, "html": html.get_content() if html else None}))
"#;
    let mut child = std::process::Command::new(std::env::var("INCIDENTD_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(raw.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The path and query of the first link in `text` to `/status/subscribe/<what>`.
fn link(text: &str, what: &str) -> String {
    let marker = format!("/status/subscribe/{what}?token=");
    let start = text.find(&marker).unwrap_or_else(|| panic!("no {what} link in {text}"));
    text[start..].split(|c: char| c.is_whitespace() || c == '>' || c == '"').next().unwrap().to_string()
}

async fn app_with_mail() -> (TestApp, SmtpSink) {
    let smtp = SmtpSink::start();
    let url = smtp.url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.smtp_url = Some(url.into());
        c.smtp_from = "Acme status <status@example.com>".into();
        c.status.name = "Acme status".into();
    })
    .await;
    (app, smtp)
}

/// Posts to the public subscribe endpoint without a key.
async fn subscribe(app: &TestApp, body: Value) -> (StatusCode, Value) {
    let res = http_client().post(app.url("/status/subscribe")).json(&body).send().await.unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn page(req: reqwest::RequestBuilder) -> (StatusCode, String) {
    let res = req.send().await.unwrap();
    let status = res.status();
    assert_eq!(res.headers()["cache-control"], "no-store", "a link's page is never cached");
    (status, res.text().await.unwrap())
}

#[tokio::test]
async fn double_opt_in_confirms_by_link_and_one_click_unsubscribes() {
    let (app, smtp) = app_with_mail().await;
    let client = http_client();
    let (status, answer) = subscribe(&app, json!({"email": "Jane@Example.com"})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let mails = smtp.wait_for(1).await;
    let mail = parse_mail(&mails[0]);
    assert_eq!(mail["subject"], "Please confirm your subscription to Acme status");
    assert_eq!(mail["to"], "Jane@example.com");
    let text = mail["text"].as_str().unwrap();
    let html = mail["html"].as_str().unwrap();
    let confirm = link(text, "confirm");
    assert_eq!(link(html, "confirm"), confirm, "the HTML part has the same link");
    let unsubscribe_header = mail["list_unsubscribe"].as_str().unwrap();
    assert!(unsubscribe_header.starts_with('<') && unsubscribe_header.contains("/status/subscribe/unsubscribe?token="));
    assert_eq!(mail["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
    let in_header = link(unsubscribe_header, "unsubscribe");
    assert_eq!(link(text, "unsubscribe"), in_header, "the body has the unsubscribe link too");
    assert_eq!(link(html, "unsubscribe"), in_header);

    // Asking again within minutes sends nothing more (and answers the same).
    let (again, same) = subscribe(&app, json!({"email": "jane@example.com"})).await;
    assert_eq!((again, &same), (StatusCode::ACCEPTED, &answer));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.wait_for(1).await.len(), 1, "one confirmation mail");

    // The confirmation link, followed over HTTP.
    let (status, body) = page(client.get(app.url(&confirm))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("You are subscribed"), "{body}");
    let (status, _) = page(client.get(app.url(&confirm))).await;
    assert_eq!(status, StatusCode::OK, "following it twice is fine");

    // A confirmed address asking again is told so, with nothing changed and the same answer.
    let (_, confirmed_answer) = subscribe(&app, json!({"email": "jane@example.com"})).await;
    assert_eq!(confirmed_answer, answer, "no way to tell a subscribed address from a new one");

    // Unsubscribe: the link's page asks (a scanner following links unsubscribes nobody) …
    let unsubscribe = link(unsubscribe_header, "unsubscribe");
    let (status, body) = page(client.get(app.url(&unsubscribe))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("<form method=\"post\""), "{body}");
    let (status, body) = page(client.get(app.url(&confirm))).await;
    assert_eq!(status, StatusCode::OK, "still subscribed after the GET: {body}");
    // … and one click does it, as RFC 8058 mail clients send it.
    let (status, body) = page(
        client
            .post(app.url(&unsubscribe))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("You are unsubscribed"), "{body}");
    let (status, body) = page(client.get(app.url(&confirm))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an old confirmation link does not resubscribe");
    assert!(body.contains("subscribe again"), "{body}");

    // Bad input names the field (this client's fourth and fifth request this minute).
    for (body, field) in [
        (json!({"email": "a@example.com", "lang": "fr"}), "lang"),
        (json!({"email": "a@example.com", "admin": true}), "admin"),
    ] {
        let (status, problem) = subscribe(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    // Links that were tampered with do nothing.
    let mut forged = confirm.clone();
    forged.pop();
    forged.push(if confirm.ends_with('A') { 'B' } else { 'A' });
    let (status, body) = page(client.get(app.url(&forged))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body.contains("This link does not work") && body.contains("copy the whole link"), "{body}");
    let (_, body) = page(client.get(app.url(&format!("{forged}&lang=de")))).await;
    assert!(body.contains("Dieser Link funktioniert nicht"), "in the reader's language: {body}");
    let wrong_purpose = confirm.replace("/confirm?token=c.", "/unsubscribe?token=u.");
    let (status, _) = page(client.post(app.url(&wrong_purpose))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a confirmation token does not unsubscribe");
}

#[tokio::test]
async fn the_page_form_the_language_and_bad_input() {
    let (app, smtp) = app_with_mail().await;
    let c = app.create_component("Checkout").await["id"].as_str().unwrap().to_string();
    let client = http_client();
    // The form of the page, in German.
    let (status, body) = page(
        client
            .post(app.url("/status/subscribe"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept-language", "de")
            .body(format!("email=max%40example.de&lang=de&components={c}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Sehen Sie in Ihr Postfach"), "{body}");
    let mail = parse_mail(&smtp.wait_for(1).await[0]);
    assert_eq!(mail["subject"], "Bitte bestätigen Sie Ihr Abonnement: Acme status");
    let confirm = link(mail["text"].as_str().unwrap(), "confirm");
    let (_, body) = page(client.get(app.url(&confirm))).await;
    assert!(body.contains("Ihr Abonnement ist bestätigt"), "the subscriber's language: {body}");

    // Bad input names the field, and stores nothing.
    for (body, field) in [
        (json!({}), "email"),
        (json!({"email": "not an address"}), "email"),
        (json!({"email": "a@example.com", "components": [uuid::Uuid::now_v7()]}), "components[0]"),
        (json!({"email": "a@example.com", "components": [c, c]}), "components[1]"),
    ] {
        let (status, problem) = subscribe(&app, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        let fields: Vec<&str> =
            problem["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
        assert_eq!(fields, [field], "{body}: {problem}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.wait_for(1).await.len(), 1, "no mail for a refused request");
}

#[tokio::test]
async fn without_email_configured_the_endpoint_says_so() {
    let app = TestApp::spawn().await;
    let (status, problem) = subscribe(&app, json!({"email": "jane@example.com"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
    assert_eq!(problem["code"], "not_configured");
    assert!(problem["detail"].as_str().unwrap().contains("INCIDENTD_SMTP_URL"), "{problem}");
}

#[tokio::test]
async fn one_client_address_cannot_send_many_requests() {
    let (app, _smtp) = app_with_mail().await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let res = http_client()
            .post(app.url("/status/subscribe"))
            .json(&json!({"email": format!("victim{i}@example.com")}))
            .send()
            .await
            .unwrap();
        statuses.push((res.status(), res.headers().get("retry-after").is_some()));
    }
    assert_eq!(statuses[..5], [(StatusCode::ACCEPTED, false); 5]);
    assert_eq!(statuses[5..], [(StatusCode::TOO_MANY_REQUESTS, true); 2], "five a minute per client address");
}
