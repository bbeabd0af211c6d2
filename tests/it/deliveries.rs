//! Notification fan-out: subscriptions, signed webhooks checked by an independent Standard
//! Webhooks implementation, the public/internal rule, filters, retry timing on a moved clock,
//! dead letters and replay, disabling, slow receivers, Slack, Teams, email and the SSRF guard.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::receivers::{Received, Receiver, Reply, SmtpSink};

async fn subscribe(app: &TestApp, body: Value) -> Value {
    let res = app.post("/v1/subscriptions", body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body
}

async fn webhook(app: &TestApp, receiver: &Receiver, extra: Value) -> (String, String) {
    let mut body = json!({"channel": "webhook", "target": receiver.url});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let s = subscribe(app, body).await;
    (s["id"].as_str().unwrap().to_string(), s["secret"].as_str().unwrap().to_string())
}

fn verify(secret: &str, r: &crate::receivers::Received) {
    let wh = standardwebhooks::Webhook::new(secret).expect("a valid whsec_ secret");
    wh.verify(&r.body, &r.headers).unwrap_or_else(|e| panic!("signature does not verify: {e:?}"));
}

async fn deliveries(app: &TestApp, subscription: &str) -> Vec<Value> {
    app.get(&format!("/v1/subscriptions/{subscription}/deliveries?page_size=500")).await.body["deliveries"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until a delivery of the subscription satisfies `pred`.
async fn wait_delivery(app: &TestApp, subscription: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        app.service.sequence_all().await.unwrap();
        if let Some(d) = deliveries(app, subscription).await.into_iter().find(|d| pred(d)) {
            return d;
        }
        assert!(Instant::now() < deadline, "no matching delivery: {:?}", deliveries(app, subscription).await);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn webhooks_are_signed_cloudevents_and_public_unless_asked() {
    let app = TestApp::spawn().await;
    let public = Receiver::start().await;
    let internal = Receiver::start().await;
    let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": public.url})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let public_secret = res.body["secret"].as_str().unwrap().to_string();
    assert!(public_secret.starts_with("whsec_"));
    assert_eq!(res.body["include_internal"], false, "public only by default");
    let listed = app.get(&format!("/v1/subscriptions/{}", res.body["id"].as_str().unwrap())).await.body;
    assert!(listed.get("secret").is_none(), "the secret is shown once");
    let (_, internal_secret) = webhook(&app, &internal, json!({"include_internal": true})).await;

    let i =
        app.create_incident(json!({"title": "API down", "severity": "sev1", "root_cause": "CANARY-ROOT-CAUSE"})).await;
    let id = i["id"].as_str().unwrap();
    app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": "CANARY-INTERNAL-NOTE"})).await;
    app.post(&format!("/v1/incidents/{id}/updates"), json!({"body": "We are on it", "visibility": "public"})).await;

    let to_internal = internal.wait_for(3).await;
    let to_public = public.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(public.received().len(), 2, "the internal update never reaches a public subscription");
    for r in &to_public {
        verify(&public_secret, r);
        let text = String::from_utf8_lossy(&r.body);
        assert!(!text.contains("CANARY"), "internal details reached a public subscription: {text}");
        assert_eq!(r.header("content-type"), "application/cloudevents+json");
    }
    for r in &to_internal {
        verify(&internal_secret, r);
    }
    // Deliveries to one endpoint may be sent concurrently, so they are found by type.
    let of_type = |received: &[Received], kind: &str| -> Vec<Received> {
        received.iter().filter(|r| r.json()["type"] == kind).cloned().collect()
    };
    let created_request = of_type(&to_public, "incident.created").pop().expect("incident.created reached the public");
    let created = created_request.json();
    assert_eq!(created["specversion"], "1.0");
    assert_eq!(created_request.header("webhook-id"), created["id"].as_str().unwrap(), "webhook-id is the event id");
    assert_eq!(created["data"]["incident"]["reference"], "INC-1");
    let internal_created = of_type(&to_internal, "incident.created").pop().expect("incident.created reached internal");
    assert_eq!(internal_created.json()["data"]["incident"]["root_cause"], "CANARY-ROOT-CAUSE");
    let internal_bodies: Vec<Value> = of_type(&to_internal, "incident.update_posted")
        .iter()
        .map(|r| r.json()["data"]["update"]["body"].clone())
        .collect();
    assert!(internal_bodies.contains(&json!("CANARY-INTERNAL-NOTE")), "the internal update: {internal_bodies:?}");
    // A tampered body fails verification with the independent implementation.
    let mut tampered = created_request.clone();
    tampered.body[0] ^= 1;
    assert!(standardwebhooks::Webhook::new(&public_secret).unwrap().verify(&tampered.body, &tampered.headers).is_err());
}

#[tokio::test]
async fn filters_pick_types_severities_and_components() {
    let app = TestApp::spawn().await;
    let c = app.create_component("Payments").await;
    let cid = c["id"].as_str().unwrap();
    let (by_type, by_sev, by_comp) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    webhook(&app, &by_type, json!({"event_types": ["incident.resolved"]})).await;
    webhook(&app, &by_sev, json!({"min_severity": "sev2", "event_types": ["incident.created"]})).await;
    webhook(
        &app,
        &by_comp,
        json!({"component_ids": [cid], "event_types": ["incident.created", "component.status_changed"]}),
    )
    .await;

    let low = app.create_incident(json!({"title": "low", "severity": "sev3"})).await;
    app.create_incident(json!({"title": "high", "severity": "sev2",
        "affected_components": [{"component_id": cid, "status": "partial_outage"}]}))
        .await;
    app.transition(low["id"].as_str().unwrap(), "resolved").await;

    let got = by_type.wait_for(1).await;
    assert_eq!(got[0].json()["type"], "incident.resolved");
    let got = by_sev.wait_for(1).await;
    assert_eq!(got[0].json()["data"]["incident"]["title"], "high");
    let got = by_comp.wait_for(2).await;
    let types: Vec<String> = got.iter().map(|r| r.json()["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, ["incident.created", "component.status_changed"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((by_type.received().len(), by_sev.received().len(), by_comp.received().len()), (1, 1, 2));
}

#[tokio::test]
async fn retries_follow_the_schedule_on_a_moved_clock() {
    let clock = Arc::new(incidentd::service::ManualClock::default());
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    let (sub, secret) = webhook(&app, &receiver, json!({})).await;
    app.incident("flaky receiver").await;

    // The first attempt is immediate and fails; the next is due 5 s (±20 %) later.
    let d = wait_delivery(&app, &sub, |d| d["attempts"] == 1).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["last_status_code"], 500);
    let last = chrono::DateTime::parse_from_rfc3339(d["last_attempt_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(d["next_attempt_at"].as_str().unwrap()).unwrap();
    let wait = (next - last).num_milliseconds();
    assert!((4000..=6000).contains(&wait), "second attempt after 5 s ± 20 %: {wait} ms");
    // The failure starts a failing streak on the subscription.
    let failing = app.get(&format!("/v1/subscriptions/{sub}")).await.body;
    assert!(failing["failing_since"].is_string(), "{failing}");

    // Nothing happens until the clock reaches it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 1);
    clock.advance(Duration::from_secs(7));
    app.service.wake_dispatcher();
    let d = wait_delivery(&app, &sub, |d| d["attempts"] == 2).await;
    let last = chrono::DateTime::parse_from_rfc3339(d["last_attempt_at"].as_str().unwrap()).unwrap();
    let next = chrono::DateTime::parse_from_rfc3339(d["next_attempt_at"].as_str().unwrap()).unwrap();
    let wait = (next - last).num_seconds();
    assert!((240..=360).contains(&wait), "third attempt after 5 min ± 20 %: {wait} s");
    clock.advance(Duration::from_secs(6 * 60));
    app.service.wake_dispatcher();
    let d = wait_delivery(&app, &sub, |d| d["status"] == "delivered").await;
    assert_eq!(d["attempts"], 3);
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "webhook-id is stable across retries");
    for r in &got {
        verify(&secret, r);
    }
    // The delivery log records every attempt.
    let log = app.get(&format!("/v1/subscriptions/{sub}/attempts")).await.body;
    let codes: Vec<i64> =
        log["attempts"].as_array().unwrap().iter().map(|a| a["status_code"].as_i64().unwrap()).collect();
    assert_eq!(codes, [204, 503, 500], "newest first");
    assert!(log["attempts"][2]["latency_ms"].is_i64());
    // The success ended the streak, as a change of the subscription.
    let healthy = app.get(&format!("/v1/subscriptions/{sub}")).await.body;
    assert!(healthy["failing_since"].is_null(), "{healthy}");
    assert!(healthy["version"].as_i64() > failing["version"].as_i64(), "{failing} then {healthy}");
}

#[tokio::test]
async fn too_many_requests_retry_after_and_gone() {
    let clock = Arc::new(incidentd::service::ManualClock::default());
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let slow = Receiver::start().await;
    slow.script([Reply::Status(429), Reply::WithHeaders(503, vec![("retry-after", "120".into())])]);
    let (sub, _) = webhook(&app, &slow, json!({})).await;
    app.incident("rate limited").await;
    let d = wait_delivery(&app, &sub, |d| d["attempts"] == 1).await;
    let gap = |d: &Value| {
        let last = chrono::DateTime::parse_from_rfc3339(d["last_attempt_at"].as_str().unwrap()).unwrap();
        let next = chrono::DateTime::parse_from_rfc3339(d["next_attempt_at"].as_str().unwrap()).unwrap();
        (next - last).num_seconds()
    };
    assert!(gap(&d) >= 60, "at least 60 s after a 429: {}", gap(&d));
    clock.advance(Duration::from_secs(61));
    app.service.wake_dispatcher();
    let d = wait_delivery(&app, &sub, |d| d["attempts"] == 2).await;
    assert!(gap(&d) >= 120, "Retry-After is honoured: {}", gap(&d));

    // 410 Gone disables the subscription, cancels what waits, and says so with an event.
    let gone = Receiver::start().await;
    gone.always(Reply::Status(410));
    let (gone_sub, _) = webhook(&app, &gone, json!({})).await;
    app.incident("first").await;
    let s = loop {
        let s = app.get(&format!("/v1/subscriptions/{gone_sub}")).await.body;
        if s["disabled_at"].is_string() {
            break s;
        }
        app.service.sequence_all().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(s["disabled_reason"].as_str().unwrap().contains("410"));
    app.incident("second").await;
    app.service.sequence_all().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let list = deliveries(&app, &gone_sub).await;
    assert_eq!(list.len(), 1, "a disabled subscription gets no new deliveries: {list:?}");
    assert_eq!(list[0]["status"], "failed");
    assert_eq!(gone.received().len(), 1, "nothing more is sent once disabled");
    let events = app.get("/v1/events?type=subscription.disabled").await.body;
    let disabled = events["events"].as_array().unwrap();
    assert_eq!(disabled.len(), 1);
    assert_eq!(disabled[0]["subject"], gone_sub.as_str());
}

#[tokio::test]
async fn dead_letters_are_kept_and_can_be_replayed() {
    let clock = Arc::new(incidentd::service::ManualClock::default());
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::Status(500));
    let (sub, _) = webhook(&app, &receiver, json!({})).await;
    app.incident("always failing").await;
    for attempt in 1..=8 {
        wait_delivery(&app, &sub, |d| d["attempts"] == attempt).await;
        clock.advance(Duration::from_secs(18 * 3600));
        app.service.wake_dispatcher();
    }
    let d = wait_delivery(&app, &sub, |d| d["status"] == "failed").await;
    assert_eq!(d["attempts"], 8, "eight attempts, then the dead letter");
    assert!(d["next_attempt_at"].is_null());
    assert_eq!(receiver.received().len(), 8);
    let failed = app.get(&format!("/v1/subscriptions/{sub}/deliveries?status=failed")).await.body;
    assert_eq!(failed["deliveries"].as_array().unwrap().len(), 1);

    // The subscription failed for more than five days: disabled.
    let s = app.get(&format!("/v1/subscriptions/{sub}")).await.body;
    assert!(s["disabled_reason"].as_str().unwrap().contains("120 hours"), "{s}");

    // Replay by hand once the receiver works again (re-enable by making a new subscription).
    receiver.always(Reply::Status(200));
    let id = d["id"].as_str().unwrap();
    let res = app.post(&format!("/v1/deliveries/{id}/retry"), json!({})).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(res.body["status"], "pending");
    assert_eq!(res.body["attempts"], 0, "a fresh schedule");
    app.post(&format!("/v1/deliveries/{id}/retry"), json!({})).await.problem(409);
    let attempts = app.get(&format!("/v1/deliveries/{id}/attempts")).await.body;
    assert_eq!(attempts["attempts"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn bulk_replay_pause_resume_rotation_and_test() {
    let clock = Arc::new(incidentd::service::ManualClock::default());
    let app = TestApp::spawn_with_clock(clock.clone()).await;
    let receiver = Receiver::start().await;
    let (sub, old_secret) = webhook(&app, &receiver, json!({})).await;

    // Paused: deliveries wait; resumed: they go out.
    let paused = app.post(&format!("/v1/subscriptions/{sub}/pause"), json!({})).await;
    assert_eq!(paused.body["paused"], true);
    app.incident("while paused").await;
    wait_delivery(&app, &sub, |d| d["status"] == "pending").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty());
    app.post(&format!("/v1/subscriptions/{sub}/resume"), json!({})).await;
    receiver.wait_for(1).await;

    // Rotation: both secrets sign during the grace period, only the new one after it.
    let rotated = app.post(&format!("/v1/subscriptions/{sub}/rotate-secret"), json!({})).await;
    let new_secret = rotated.body["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, old_secret);
    app.incident("after rotation").await;
    let got = receiver.wait_for(2).await;
    verify(&old_secret, &got[1]);
    verify(&new_secret, &got[1]);
    assert_eq!(got[1].header("webhook-signature").split(' ').count(), 2);
    clock.advance(Duration::from_secs(25 * 3600));
    app.incident("after the grace period").await;
    app.service.wake_dispatcher();
    let got = receiver.wait_for(3).await;
    verify(&new_secret, &got[2]);
    assert!(standardwebhooks::Webhook::new(&old_secret).unwrap().verify(&got[2].body, &got[2].headers).is_err());

    // The test endpoint sends now and reports.
    let test = app.post(&format!("/v1/subscriptions/{sub}/test"), json!({})).await;
    assert_eq!(test.status, StatusCode::OK, "{}", test.body);
    assert_eq!(test.body["status_code"], 204);
    let got = receiver.wait_for(4).await;
    assert_eq!(got[3].json()["type"], "subscription.test");
    verify(&new_secret, &got[3]);

    // Bulk replay of dead letters.
    receiver.always(Reply::Status(500));
    app.incident("to dead-letter").await;
    for attempt in 1..=8 {
        wait_delivery(&app, &sub, |d| d["attempts"] == attempt && d["status"] != "delivered").await;
        clock.advance(Duration::from_secs(13 * 3600));
        app.service.wake_dispatcher();
    }
    wait_delivery(&app, &sub, |d| d["status"] == "failed").await;
    receiver.always(Reply::Status(200));
    // (Eight failures over ~4 days: still within the five-day window, so still enabled.)
    let res = app.post(&format!("/v1/subscriptions/{sub}/retry-failed"), json!({})).await;
    assert_eq!(res.body["requeued"], 1);
    wait_delivery(&app, &sub, |d| d["status"] == "delivered" && d["attempts"] == 1).await;
}

#[tokio::test]
async fn a_hanging_receiver_does_not_delay_the_others() {
    let app = TestApp::spawn_with(|c| c.delivery_concurrency_per_subscription = 2).await;
    let hanging = Receiver::start().await;
    hanging.always(Reply::After(Duration::from_secs(30)));
    let healthy = Receiver::start().await;
    webhook(&app, &hanging, json!({})).await;
    webhook(&app, &healthy, json!({})).await;
    for n in 0..20 {
        app.incident(&format!("burst {n}")).await;
    }
    let started = Instant::now();
    healthy.wait_for(20).await;
    assert!(started.elapsed() < Duration::from_secs(5), "healthy deliveries took {:?}", started.elapsed());
    assert!(hanging.received().len() <= 2, "at most the per-subscription limit is in flight to the hanging one");
}

#[tokio::test]
async fn slack_teams_and_email_read_at_a_glance() {
    let smtp = SmtpSink::start();
    let smtp_url = smtp.url.clone();
    let app = TestApp::spawn_with(|c| {
        c.smtp_url = Some(smtp_url.into());
        c.smtp_from = "Status <status@example.com>".into();
    })
    .await;
    let (slack, teams) = (Receiver::start().await, Receiver::start().await);
    subscribe(&app, json!({"channel": "slack", "target": slack.url})).await;
    subscribe(&app, json!({"channel": "teams", "target": teams.url})).await;
    subscribe(&app, json!({"channel": "email", "target": "oncall@example.com"})).await;
    app.create_incident(json!({
        "title": "Checkout <failing>", "severity": "sev1", "impact": "major", "eta": "2030-01-01T10:00:00Z",
        "workaround": {"availability": "available", "text": "Pay by invoice"}, "root_cause": "CANARY"
    }))
    .await;

    let msg = slack.wait_for(1).await[0].json();
    assert!(msg["text"].as_str().unwrap().contains("INC-1"));
    let blocks = msg["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    for b in blocks {
        assert!(["header", "section", "context", "divider", "actions"].contains(&b["type"].as_str().unwrap()), "{b}");
    }
    let fields: Vec<&str> =
        blocks[1]["fields"].as_array().unwrap().iter().map(|f| f["text"].as_str().unwrap()).collect();
    assert!(fields.len() <= 10);
    for want in [
        "*Severity*\nsev1",
        "*Status*\ninvestigating",
        "*Impact*\nmajor",
        "*ETA*\n2030-01-01T10:00:00Z",
        "*Workaround*\nPay by invoice",
    ] {
        assert!(fields.contains(&want), "{want} not in {fields:?}");
    }
    assert!(!msg.to_string().contains("CANARY"));

    let card = teams.wait_for(1).await[0].json();
    assert_eq!(card["type"], "message");
    let attachment = &card["attachments"][0];
    assert_eq!(attachment["contentType"], "application/vnd.microsoft.card.adaptive");
    let content = &attachment["content"];
    assert_eq!(content["type"], "AdaptiveCard");
    assert_eq!(content["$schema"], "http://adaptivecards.io/schemas/adaptive-card.json");
    assert!(content["version"].as_str().unwrap().starts_with("1."));
    assert_eq!(content["body"][0]["type"], "TextBlock");
    let facts = content["body"][1]["facts"].as_array().unwrap();
    assert!(facts.iter().any(|f| f["title"] == "Severity" && f["value"] == "sev1"));
    assert_eq!(content["actions"][0]["type"], "Action.OpenUrl");

    let mail = &smtp.wait_for(1).await[0];
    assert!(mail.contains("Subject: INC-1 Checkout <failing>: declared"), "{mail}");
    assert!(mail.contains("multipart/alternative"));
    assert!(mail.contains("text/plain") && mail.contains("text/html"));
    assert!(mail.contains("Checkout &lt;failing&gt;"), "HTML is escaped");
    assert!(mail.contains("Workaround: Pay by invoice"));
    assert!(!mail.contains("CANARY"));
}

#[tokio::test]
async fn the_ssrf_guard_refuses_internal_receivers() {
    let app = TestApp::spawn_with(|c| c.webhook_allowlist = Vec::new()).await;
    for target in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
        "http://224.0.0.1/",
        "http://0.0.0.0/",
        "ftp://example.com/",
        "http://user:pass@example.com/",
    ] {
        let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": target})).await;
        res.problem(400);
        assert_eq!(res.error_fields(), ["target"], "{target}");
    }
    let bad = app.post("/v1/subscriptions", json!({"channel": "email", "target": "not an address"})).await;
    assert_eq!(bad.error_fields(), ["target"]);

    // At connect time every resolved address is checked: a name resolving to loopback is
    // refused by the resolver, so no request leaves.
    let receiver = Receiver::start().await;
    let port = receiver.url.split(':').nth(2).unwrap().split('/').next().unwrap().to_string();
    let sender = incidentd::notify::Sender::new(incidentd::notify::SenderSettings {
        guard: incidentd::notify::Guard::default(),
        smtp_url: None,
        smtp_from: "x@example.com".into(),
        public_url: "http://localhost".into(),
        ..Default::default()
    })
    .unwrap();
    let event = incidentd::notify::send::test_event(
        &serde_json::from_value(json!({
            "id": uuid::Uuid::now_v7(), "channel": "webhook", "target": format!("http://localhost.:{port}/hook"),
            "event_types": [], "min_severity": null, "component_ids": [], "include_internal": true, "paused": false,
            "disabled_at": null, "disabled_reason": null, "failing_since": null,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "created_by": "t", "version": 1
        }))
        .unwrap(),
        chrono::Utc::now(),
    );
    let sub: incidentd::domain::Subscription = serde_json::from_value(json!({
        "id": uuid::Uuid::now_v7(), "channel": "webhook", "target": format!("http://localhost.:{port}/hook"),
        "event_types": [], "min_severity": null, "component_ids": [], "include_internal": true, "paused": false,
        "disabled_at": null, "disabled_reason": null, "failing_since": null,
        "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "created_by": "t", "version": 1
    }))
    .unwrap();
    let sent = sender.send(&event, &sub, &Default::default(), chrono::Utc::now()).await;
    assert!(sent.error.as_deref().unwrap_or_default().contains("SSRF"), "{:?}", sent.error);
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
    // A name the resolver maps to loopback (not spelled like localhost) is refused too.
    use reqwest::dns::Resolve;
    let resolver = incidentd::notify::Guard::default().resolver();
    let refused = resolver.resolve("localhost".parse().unwrap()).await;
    assert!(refused.is_err());
    for ip in ["127.0.0.1", "::1", "169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::", "fd00::1"]
    {
        assert!(incidentd::notify::ssrf::blocked(ip.parse().unwrap()).is_some(), "{ip}");
    }
    for ip in ["1.1.1.1", "2606:4700:4700::1111", "93.184.216.34"] {
        assert!(incidentd::notify::ssrf::blocked(ip.parse().unwrap()).is_none(), "{ip}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_share_the_work_without_double_claims() {
    // Three application instances on one database (on SQLite: three writers on one file).
    let a = TestApp::spawn().await;
    let b = TestApp::spawn_on(&a.database_url).await;
    let c = TestApp::spawn_on(&a.database_url).await;
    let receiver = Receiver::start().await;
    receiver.always(Reply::After(Duration::from_millis(20)));
    webhook(&a, &receiver, json!({})).await;
    for n in 0..200 {
        let app = [&a, &b, &c][n % 3];
        app.incident(&format!("shared {n}")).await;
    }
    let got = receiver.wait_for(200).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = receiver.received();
    assert_eq!(got_after.len(), 200, "no delivery was sent twice");
    let ids: std::collections::HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 200);
    drop((b, c));
}

#[tokio::test]
async fn redirects_are_failures_and_responses_are_logged() {
    let app = TestApp::spawn().await;
    let receiver = Receiver::start().await;
    receiver.script([Reply::WithHeaders(302, vec![("location", "http://169.254.169.254/".into())])]);
    let (sub, _) = webhook(&app, &receiver, json!({})).await;
    app.incident("redirected").await;
    let d = wait_delivery(&app, &sub, |d| d["attempts"] == 1).await;
    assert_eq!(d["status"], "pending", "a 3xx is a failure, retried later");
    assert_eq!(d["last_status_code"], 302);
    assert!(d["last_error"].as_str().unwrap().contains("redirects are not followed"));
    let log = app.get(&format!("/v1/subscriptions/{sub}/attempts")).await.body;
    assert_eq!(log["attempts"][0]["response_excerpt"], "slow down", "the start of the response body is kept");
    assert_eq!(receiver.received().len(), 1, "the redirect was not followed");
}
