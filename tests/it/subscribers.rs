//! Customer subscriptions from the status page: double opt-in over a real SMTP server, the
//! links followed over HTTP, the RFC 8058 headers and one-click unsubscribe, the same answer
//! whatever the address's state, and the limits that stop mail bombing.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, http_client};
use crate::receivers::SmtpSink;

/// A received mail as Python's `email` package reads it (headers, decoded text and HTML).
pub(crate) fn parse_mail(raw: &str) -> Value {
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
    python(script, raw)
}

/// Runs a Python script on `input` and reads the JSON it prints.
fn python<T: serde::de::DeserializeOwned>(script: &str, input: &str) -> T {
    let mut child = std::process::Command::new(std::env::var("INCIDENTD_PYTHON").unwrap_or_else(|_| "python3".into()))
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
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
    assert_eq!(link(text, "manage"), link(html, "manage"), "a link to choose components in both parts");

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
    // The page offers the form, with the components to choose from.
    let mut body = String::new();
    for _ in 0..100 {
        body = client.get(app.url("/status?lang=de")).send().await.unwrap().text().await.unwrap();
        if body.contains("Checkout") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(body.contains("<form method=\"post\" action=\"/status/subscribe\""), "{body}");
    assert!(body.contains("name=\"email\" type=\"email\" required"), "{body}");
    assert!(body.contains(&format!("name=\"components\" value=\"{c}\">")), "{body}");
    assert!(body.contains("Updates per E-Mail erhalten"), "{body}");
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
    let body = http_client().get(app.url("/status")).send().await.unwrap().text().await.unwrap();
    assert!(body.contains("<h1>") && !body.contains("/status/subscribe"), "no form where no mail goes: {body}");
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

/// Subscribes `email` on the public endpoint and follows the confirmation link of the mail
/// that came for it.
async fn confirmed_subscriber(app: &TestApp, smtp: &SmtpSink, email: &str, body: Value) {
    let before = smtp.wait_for(0).await.len();
    let mut body = body;
    body["email"] = json!(email);
    let (status, answer) = subscribe(app, body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let mail = parse_mail(&smtp.wait_for(before + 1).await[before]);
    assert_eq!(mail["to"], email);
    let (status, body) = page(http_client().get(app.url(&link(mail["text"].as_str().unwrap(), "confirm")))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The mails that came after the first `skip`, parsed.
async fn mails_after(smtp: &SmtpSink, skip: usize, count: usize) -> Vec<Value> {
    let all = smtp.wait_for(skip + count).await;
    all[skip..].iter().map(|m| parse_mail(m)).collect()
}

/// The subjects of `mails` that went to `to`, in the order they arrived.
fn subjects_to(mails: &[Value], to: &str) -> Vec<String> {
    mails.iter().filter(|m| m["to"] == to).map(|m| m["subject"].as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn confirmed_subscribers_hear_of_incidents_and_maintenance_on_their_components_and_nothing_internal() {
    let (app, smtp) = app_with_mail().await;
    let checkout = app.create_component("Checkout").await["id"].as_str().unwrap().to_string();
    let search = app.create_component("Search").await["id"].as_str().unwrap().to_string();
    confirmed_subscriber(&app, &smtp, "all@example.com", json!({})).await;
    confirmed_subscriber(&app, &smtp, "checkout@example.com", json!({"components": [checkout]})).await;
    confirmed_subscriber(&app, &smtp, "suche@example.de", json!({"components": [search], "lang": "de"})).await;
    // Asked, never confirmed: gets nothing but the confirmation.
    let (status, _) = subscribe(&app, json!({"email": "pending@example.com"})).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let before = smtp.wait_for(4).await.len();

    // An incident on Checkout, declared over gRPC, with internal details everywhere they fit.
    let mut grpc = app.incidents_grpc().await;
    let created = grpc
        .create_incident(incidentd::proto::CreateIncidentRequest {
            incident: Some(incidentd::proto::Incident {
                title: "Payments fail".into(),
                summary: "Card payments are declined.".into(),
                severity: incidentd::proto::Severity::Sev1 as i32,
                impact: incidentd::proto::Impact::Major as i32,
                root_cause: Some("CANARY-ROOT-CAUSE".into()),
                affected_components: vec![incidentd::proto::AffectedComponent {
                    component_id: checkout.clone(),
                    status: incidentd::proto::ComponentStatus::MajorOutage as i32,
                }],
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.incident.unwrap().id;
    let path = format!("/v1/incidents/{id}");
    // Internal only: acknowledged, an internal note, an internal field edited: no mail.
    assert_eq!(app.post(&format!("{path}/acknowledge"), json!({})).await.status, StatusCode::OK);
    app.post(&format!("{path}/updates"), json!({"body": "CANARY-INTERNAL-NOTE", "visibility": "internal"})).await;
    let edited = app.patch(&path, json!({"labels": {"team": "CANARY-LABEL"}})).await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    // What customers plan around: an ETA and a workaround (one mail), a public update, the
    // resolution.
    let edited = app
        .patch(
            &path,
            json!({"eta": "2030-01-01T10:00:00Z", "workaround": {"availability": "available", "text": "Pay by invoice"}}),
        )
        .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    let posted = app
        .post(
            &format!("{path}/updates"),
            json!({"body": "We found the cause.", "visibility": "public", "status": "identified"}),
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.body);
    app.transition(&id, "resolved").await;

    let mails = mails_after(&smtp, before, 8).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.wait_for(0).await.len(), before + 8, "four mails each to the two who want Checkout, no more");
    // In the order things happened, for each of them.
    let want = [
        "[Acme status] Investigating: Payments fail",
        "[Acme status] Investigating: Payments fail",
        "[Acme status] Identified: Payments fail",
        "[Acme status] Resolved: Payments fail",
    ];
    assert_eq!(subjects_to(&mails, "all@example.com"), want);
    assert_eq!(subjects_to(&mails, "checkout@example.com"), want);
    for m in &mails {
        let all = m.to_string();
        assert!(!all.contains("CANARY"), "internal details reached a customer: {all}");
        let text = m["text"].as_str().unwrap();
        let html = m["html"].as_str().unwrap();
        assert!(text.contains("Affected: Checkout"), "{text}");
        assert!(text.contains("/status/incidents/INC-1"), "{text}");
        let unsubscribe = link(m["list_unsubscribe"].as_str().unwrap(), "unsubscribe");
        assert_eq!(m["list_unsubscribe_post"], "List-Unsubscribe=One-Click");
        assert_eq!(link(text, "unsubscribe"), unsubscribe);
        assert_eq!(link(html, "unsubscribe"), unsubscribe);
        assert_eq!(link(text, "manage"), link(html, "manage"), "a link to choose components in both parts");
    }
    let first = mails.iter().find(|m| m["to"] == "all@example.com").unwrap();
    let text = first["text"].as_str().unwrap();
    for want in [
        "Status: Investigating",
        "Impact: Major",
        "Expected resolution: Not yet known",
        "Workaround: Not yet known",
        "Card payments are declined.",
    ] {
        assert!(text.contains(want), "{want} not in {text}");
    }
    let eta = mails
        .iter()
        .find(|m| m["to"] == "all@example.com" && m["text"].as_str().unwrap().contains("Pay by invoice"))
        .expect("the mail about the workaround");
    assert!(eta["text"].as_str().unwrap().contains("Expected resolution: 1 Jan 2030, 10:00 UTC"), "{eta}");
    assert!(eta["text"].as_str().unwrap().contains("Changed: Expected resolution, Workaround"), "{eta}");
    let resolved = mails.iter().find(|m| m["subject"] == "[Acme status] Resolved: Payments fail").unwrap();
    assert!(!resolved["text"].as_str().unwrap().contains("Expected resolution"), "no ETA once resolved");

    // The manage link of a mail: the page shows the choice, its form changes it.
    let checkout_mail = mails.iter().find(|m| m["to"] == "checkout@example.com").unwrap();
    let manage = link(checkout_mail["text"].as_str().unwrap(), "manage");
    let (status, body) = page(http_client().get(app.url(&manage))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&format!("value=\"{checkout}\" checked")), "Checkout is chosen: {body}");
    assert!(body.contains(&format!("value=\"{search}\">")), "Search is offered: {body}");
    let (status, body) = page(
        http_client()
            .post(app.url(&manage))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("components={search}")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("Saved") && body.contains(&format!("value=\"{search}\" checked")), "{body}");
    let (status, body) = page(
        http_client()
            .post(app.url(&manage))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("components={}", uuid::Uuid::now_v7())),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "an unknown component: {body}");
    let mut forged = manage.clone();
    forged.pop();
    forged.push(if manage.ends_with('A') { 'B' } else { 'A' });
    let (status, _) = page(http_client().get(app.url(&forged))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a forged manage link");

    // Maintenance on Search reaches the all-subscriber and the two Search subscribers.
    let before = smtp.wait_for(0).await.len();
    let soon = chrono::Utc::now() + chrono::Duration::days(2);
    let created = app
        .post(
            "/v1/maintenances",
            json!({"title": "Index rebuild", "body": "Search may be slow.", "components": [search],
                   "scheduled_for": soon, "scheduled_until": soon + chrono::Duration::hours(1)}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let mails = mails_after(&smtp, before, 3).await;
    assert_eq!(subjects_to(&mails, "all@example.com"), ["[Acme status] Scheduled maintenance: Index rebuild"]);
    assert_eq!(subjects_to(&mails, "checkout@example.com"), ["[Acme status] Scheduled maintenance: Index rebuild"]);
    assert_eq!(subjects_to(&mails, "suche@example.de"), ["[Acme status] Geplante Wartungsarbeiten: Index rebuild"]);
    let de = mails.iter().find(|m| m["to"] == "suche@example.de").unwrap()["text"].as_str().unwrap().to_string();
    for want in ["Status: Geplant", "Betroffen: Search", "Search may be slow.", "Abbestellen:"] {
        assert!(de.contains(want), "{want} not in {de}");
    }

    // One click unsubscribes: the next news does not reach that address.
    let all_mail = mails.iter().find(|m| m["to"] == "all@example.com").unwrap();
    let unsubscribe = link(all_mail["list_unsubscribe"].as_str().unwrap(), "unsubscribe");
    let res = http_client()
        .post(app.url(&unsubscribe))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let before = smtp.wait_for(0).await.len();
    let m_id = created.body["id"].as_str().unwrap();
    let cancelled = app
        .post(&format!("/v1/maintenances/{m_id}/updates"), json!({"status": "cancelled", "body": "Not needed."}))
        .await;
    assert_eq!(cancelled.status, StatusCode::CREATED, "{}", cancelled.body);
    let mails = mails_after(&smtp, before, 2).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.wait_for(0).await.len(), before + 2, "nothing to the unsubscribed address");
    assert_eq!(subjects_to(&mails, "all@example.com"), Vec::<String>::new());
    let de = mails.iter().find(|m| m["to"] == "suche@example.de").unwrap();
    assert_eq!(de["subject"], "[Acme status] Abgesagt: Index rebuild");
    assert!(de["text"].as_str().unwrap().contains("Not needed."), "{de}");
}

#[tokio::test]
async fn operators_list_count_search_remove_export_and_import_subscribers_over_rest_and_grpc() {
    let (app, smtp) = app_with_mail().await;
    let checkout = app.create_component("Checkout").await["id"].as_str().unwrap().to_string();
    let search = app.create_component("Search").await["id"].as_str().unwrap().to_string();
    // One who subscribed on the page and confirmed, one who only asked.
    confirmed_subscriber(&app, &smtp, "page@example.com", json!({"components": [search]})).await;
    assert_eq!(subscribe(&app, json!({"email": "asked@example.com"})).await.0, StatusCode::ACCEPTED);
    smtp.wait_for(2).await;

    // An import from another tool: a header, an extra column, good and bad lines.
    let csv = format!(
        "Email,Name,Components,Lang\n\
         ann@example.com,Ann,Checkout,de\n\
         bob@example.com,Bob,{search};checkout,\n\
         carl@example.com,Carl,,\n\
         not an address,X,,\n\
         dora@example.com,Dora,Billing,\n\
         ANN@example.com,Ann again,,\n\
         asked@example.com,Asked,,\n\
         page@example.com,Page,,\n"
    );
    let res =
        app.send(app.client.post(app.url("/v1/subscribers/import")).header("content-type", "text/csv").body(csv)).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    let report = &res.body;
    assert_eq!(report["imported"], 3, "{report}");
    assert_eq!(report["ignored_columns"], json!(["name"]));
    let lines = |key: &str| -> Vec<(u64, String)> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| (l["line"].as_u64().unwrap(), l["reason"].as_str().unwrap().to_string()))
            .collect()
    };
    let rejected = lines("rejected");
    assert_eq!(rejected.iter().map(|l| l.0).collect::<Vec<_>>(), [5, 6, 7], "{report}");
    assert!(rejected[0].1.starts_with("email:"), "{report}");
    assert!(rejected[1].1.contains("\"Billing\""), "{report}");
    assert_eq!(rejected[2].1, "email: the address is on line 2 already");
    let skipped = lines("skipped");
    assert_eq!(skipped.iter().map(|l| l.0).collect::<Vec<_>>(), [8, 9], "{report}");
    assert!(skipped[0].1.contains("confirmation mail"), "{report}");
    assert_eq!(skipped[1].1, "subscribed already");
    // A file that is not a list of addresses is refused whole, naming the field.
    let res = app.post("/v1/subscribers/import", json!({"csv": "name\nAnn\n"})).await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST, "{}", res.body);
    assert_eq!(res.error_fields(), ["csv"]);

    // Lists: all newest first, by status, by component (with the subscribers of
    // everything), by address, in pages.
    let emails = |body: &Value| -> Vec<String> {
        body["subscribers"].as_array().unwrap().iter().map(|s| s["email"].as_str().unwrap().to_string()).collect()
    };
    let all = app.get("/v1/subscribers").await;
    assert_eq!(emails(&all.body).len(), 5, "{}", all.body);
    assert!(all.body["subscribers"][0].get("mails_today").is_none(), "bookkeeping is not shown");
    let confirmed = app.get("/v1/subscribers?status=confirmed").await;
    let mut got = emails(&confirmed.body);
    got.sort();
    assert_eq!(got, ["ann@example.com", "bob@example.com", "carl@example.com", "page@example.com"]);
    let of_checkout = app.get(&format!("/v1/subscribers?status=confirmed&component={checkout}")).await;
    let mut got = emails(&of_checkout.body);
    got.sort();
    assert_eq!(got, ["ann@example.com", "bob@example.com", "carl@example.com"], "chose it, or everything");
    assert_eq!(emails(&app.get("/v1/subscribers?q=BOB").await.body), ["bob@example.com"]);
    assert_eq!(emails(&app.get("/v1/subscribers?q=%25").await.body), Vec::<String>::new(), "% is a character");
    let first = app.get("/v1/subscribers?page_size=3").await;
    let token = first.body["next_page_token"].as_str().unwrap().to_string();
    let second = app.get(&format!("/v1/subscribers?page_size=3&page_token={token}")).await;
    let mut paged = emails(&first.body);
    paged.extend(emails(&second.body));
    assert_eq!(paged, emails(&all.body), "pages follow each other");
    for (query, field) in [("status=bogus", "status"), ("component=nope", "component"), ("colour=red", "colour")] {
        let res = app.get(&format!("/v1/subscribers?{query}")).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(res.error_fields(), [field], "{query}: {}", res.body);
    }

    // Counts per status and component.
    let counts = app.get("/v1/subscribers/counts").await.body;
    assert_eq!((&counts["pending"], &counts["confirmed"], &counts["unsubscribed"]), (&json!(1), &json!(4), &json!(0)));
    assert_eq!(counts["all_components"], 1, "carl: {counts}");
    let by_name =
        |name: &str| counts["components"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone();
    assert_eq!((&by_name("Checkout")["chose"], &by_name("Checkout")["reached"]), (&json!(2), &json!(3)));
    assert_eq!((&by_name("Search")["chose"], &by_name("Search")["reached"]), (&json!(2), &json!(3)));

    // The export, read by Python's csv module.
    let res = app.client.get(app.url("/v1/subscribers/export?status=confirmed")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers()["content-type"].to_str().unwrap().starts_with("text/csv"));
    assert!(res.headers()["content-disposition"].to_str().unwrap().contains("subscribers.csv"));
    let exported = res.text().await.unwrap();
    let rows = read_csv(&exported);
    assert_eq!(
        rows[0],
        ["id", "email", "status", "lang", "components", "created_at", "confirmed_at", "unsubscribed_at"]
    );
    assert_eq!(rows.len(), 5, "{exported}");
    let ann = rows.iter().find(|r| r[1] == "ann@example.com").unwrap();
    assert_eq!((ann[2].as_str(), ann[3].as_str(), ann[4].as_str()), ("confirmed", "de", checkout.as_str()));

    // gRPC serves the same.
    let mut grpc = incidentd::proto::subscriber_service_client::SubscriberServiceClient::with_interceptor(
        app.channel().await,
        app.bearer(),
    );
    let listed = grpc
        .list_subscribers(incidentd::proto::ListSubscribersRequest {
            filter: Some(incidentd::proto::SubscriberFilter {
                statuses: vec![incidentd::proto::SubscriberStatus::Confirmed as i32],
                component_id: checkout.clone(),
                query: String::new(),
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut got: Vec<String> = listed.subscribers.iter().map(|s| s.email.clone()).collect();
    got.sort();
    assert_eq!(got, ["ann@example.com", "bob@example.com", "carl@example.com"]);
    let counted = grpc.count_subscribers(incidentd::proto::CountSubscribersRequest {}).await.unwrap().into_inner();
    assert_eq!((counted.pending, counted.confirmed, counted.all_components), (1, 4, 1));
    let export = grpc
        .export_subscribers(incidentd::proto::ExportSubscribersRequest {
            filter: Some(incidentd::proto::SubscriberFilter {
                statuses: vec![incidentd::proto::SubscriberStatus::Confirmed as i32],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((export.csv.as_str(), export.count), (exported.as_str(), 4), "the same CSV as REST");
    let imported = grpc
        .import_subscribers(incidentd::proto::ImportSubscribersRequest { csv: "email\neve@example.com\nbad\n".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((imported.imported, imported.rejected.len(), imported.rejected[0].line), (1, 1, 3));
    let bad = grpc
        .import_subscribers(incidentd::proto::ImportSubscribersRequest { csv: "name\nx\n".into() })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(crate::helpers::bad_request_fields(&bad), ["csv"]);

    // Imported subscribers are confirmed: they hear of the next incident on their component.
    let before = smtp.wait_for(0).await.len();
    app.create_incident(json!({"title": "Search slow", "severity": "sev3",
        "affected_components": [{"component_id": search, "status": "degraded_performance"}]}))
        .await;
    let mails = mails_after(&smtp, before, 4).await;
    let mut to: Vec<&str> = mails.iter().map(|m| m["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["bob@example.com", "carl@example.com", "eve@example.com", "page@example.com"]);

    // Removal, over REST and over gRPC, is for good.
    let id_of = |email: &str| {
        all.body["subscribers"].as_array().unwrap().iter().find(|s| s["email"] == email).unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let bob = id_of("bob@example.com");
    assert_eq!(app.get(&format!("/v1/subscribers/{bob}")).await.body["email"], "bob@example.com");
    assert_eq!(app.delete(&format!("/v1/subscribers/{bob}")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/v1/subscribers/{bob}")).await.status, StatusCode::NOT_FOUND);
    assert_eq!(app.delete(&format!("/v1/subscribers/{bob}")).await.status, StatusCode::NOT_FOUND);
    grpc.delete_subscriber(incidentd::proto::DeleteSubscriberRequest { id: id_of("ann@example.com") }).await.unwrap();
    let gone = grpc.get_subscriber(incidentd::proto::GetSubscriberRequest { id: id_of("ann@example.com") }).await;
    assert_eq!(gone.unwrap_err().code(), tonic::Code::NotFound);
    let audit = app.get("/v1/audit-events").await.body.to_string();
    for action in ["subscriber.import", "subscriber.export", "subscriber.delete"] {
        assert!(audit.contains(action), "{action} is audited: {audit}");
    }
    assert!(!audit.contains("ann@example.com"), "no address in the audit trail");
}

/// Rows of a CSV text as Python's csv module reads them.
fn read_csv(text: &str) -> Vec<Vec<String>> {
    python("import csv, json, sys\nprint(json.dumps(list(csv.reader(sys.stdin))))", text)
}

/// The `To:` header of a raw mail.
fn to_of(raw: &str) -> String {
    raw.lines().find_map(|l| l.strip_prefix("To: ")).unwrap_or_default().trim().to_string()
}

#[tokio::test]
async fn customer_mails_are_retried_after_a_refusal_and_reach_each_subscriber_once_across_two_workers() {
    let (app, smtp) = app_with_mail().await;
    let url = smtp.url.clone();
    // A second process on the same database: both run the workers.
    let second = TestApp::spawn_on_with(&app.database_url, move |c| {
        c.smtp_url = Some(url.into());
        c.status.name = "Acme status".into();
    })
    .await;
    let mut csv = String::from("email\n");
    for i in 0..40 {
        csv.push_str(&format!("c{i}@example.com\n"));
    }
    let res = app.post("/v1/subscribers/import", json!({"csv": csv})).await;
    assert_eq!(res.body["imported"], 40, "{}", res.body);

    // The SMTP server refuses five recipients for now (451, as greylisting does): their mails
    // wait for their next attempt.
    smtp.refuse_next(5);
    second.incident("Queue backlog").await;
    smtp.wait_for(35).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.wait_for(0).await.len(), 35, "the refused five are not sent again at once");
    let db = app.db().await;
    let waiting = db.scalar("SELECT count(*) FROM customer_mails WHERE status = 'pending' AND attempts = 1").await;
    assert_eq!(waiting, 5);
    let with_error = db.scalar("SELECT count(*) FROM customer_mails WHERE last_error LIKE '%451%'").await;
    assert_eq!(with_error, 5, "the refusal is recorded");
    // Their retry is due (30 s later, moved up here): both workers race for it.
    db.shift_back("customer_mails", "next_attempt_at", 3600, "status = 'pending'").await;
    smtp.wait_for(40).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let mails = smtp.wait_for(0).await;
    let mut to: Vec<String> = mails.iter().map(|m| to_of(m)).collect();
    to.sort();
    to.dedup();
    assert_eq!((mails.len(), to.len()), (40, 40), "every subscriber once: {to:?}");
    let sent = db.scalar("SELECT count(*) FROM customer_mails WHERE status = 'sent' AND sent_at IS NOT NULL").await;
    assert_eq!(sent, 40);
    db.close().await;
    second.stop().await;
}
