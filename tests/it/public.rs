//! What customers read without a key: the status page, the Statuspage-compatible JSON
//! (compared with real Statuspage documents), the feeds (read by a real feed parser), the
//! badges; caching, compression, CORS and rate limits; served from memory; a change showing
//! within seconds, on every replica; nothing internal on any of it; and the page in a real
//! browser.

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::{TestApp, backend, http_client, skip_unless};

/// A public response: status, headers, body bytes (as sent: possibly compressed).
struct Public {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Public {
    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("a UTF-8 body")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// GETs a public path without a key, with these extra headers, taking the body as sent
/// (no automatic decompression or redirects).
async fn get(app: &TestApp, path: &str, headers: &[(&str, &str)]) -> Public {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_gzip()
        .no_brotli()
        .build()
        .expect("client");
    let _ = http_client(); // installs the TLS provider reqwest needs
    let mut req = client.get(app.url(path));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.expect("request is sent");
    Public { status: res.status(), headers: res.headers().clone(), body: res.bytes().await.expect("body").to_vec() }
}

/// Polls a public path until `ready` holds of its response, for at most `within`; returns
/// that response and when it held.
async fn until(app: &TestApp, path: &str, within: Duration, ready: impl Fn(&Public) -> bool) -> (Public, Duration) {
    let start = Instant::now();
    loop {
        let res = get(app, path, &[]).await;
        if ready(&res) {
            return (res, start.elapsed());
        }
        assert!(start.elapsed() < within, "{path} did not change within {within:?}: {}", res.text());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the snapshot stops changing: the same page twice, 400 ms apart (rebuilds
/// follow changes within about 100 ms; a page with an outage changes at each rebuild, as
/// today's uptime falls).
async fn settle(app: &TestApp) {
    let start = Instant::now();
    let mut last = get(app, "/status", &[]).await.header("etag").to_string();
    loop {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = get(app, "/status", &[]).await.header("etag").to_string();
        if now == last {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the status page keeps changing");
        last = now;
    }
}

/// A status page's worth of data: two components alone and two in a group; a resolved
/// incident and an active one with everything customers are told.
struct Seeded {
    api: String,
    checkout: String,
    invoices: String,
    active: Value,
    resolved: Value,
}

async fn component(app: &TestApp, name: &str, group: Option<&str>) -> String {
    let res = app.post("/v1/components", json!({"name": name, "group": group})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_string()
}

async fn update(app: &TestApp, id: &str, body: &str, visibility: &str, status: Option<&str>) {
    let res = app
        .post(&format!("/v1/incidents/{id}/updates"), json!({"body": body, "visibility": visibility, "status": status}))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
}

async fn seed(app: &TestApp) -> Seeded {
    let api = component(app, "API", None).await;
    let dashboard = component(app, "Dashboard", None).await;
    let checkout = component(app, "Checkout", Some("Payments")).await;
    let invoices = component(app, "Invoices", Some("Payments")).await;
    let resolved = app
        .create_incident(json!({"title": "Search results are slow", "severity": "sev3", "impact": "minor",
            "affected_components": [{"component_id": dashboard, "status": "degraded_performance"}]}))
        .await;
    let rid = resolved["id"].as_str().unwrap();
    update(app, rid, "Searches take up to ten seconds. We are looking into it.", "public", None).await;
    update(app, rid, "A fix is out; we are watching the results.", "public", Some("monitoring")).await;
    update(app, rid, "An index was rebuilt; search is fast again.", "public", Some("resolved")).await;
    let eta = (chrono::Utc::now() + chrono::Duration::hours(3)).to_rfc3339();
    let active = app
        .create_incident(json!({
            "title": "Card payments failing for some customers", "severity": "sev1", "impact": "major",
            "summary": "Card payments through our payment provider fail with a timeout.",
            "affected_components": [{"component_id": checkout, "status": "major_outage"},
                {"component_id": invoices, "status": "degraded_performance"}],
            "affected_customers": 4321, "eta": eta,
            "workaround": {"availability": "available", "text": "Pay by bank transfer until card payments work again."},
            "cause": {"kind": "third_party", "provider": "Stripe"}}))
        .await;
    let aid = active["id"].as_str().unwrap();
    update(app, aid, "Card payments time out for about a third of attempts. We are investigating.", "public", None)
        .await;
    update(app, aid, "Our payment provider confirmed an outage on their side.", "public", Some("identified")).await;
    until(app, "/api/v2/summary.json", Duration::from_secs(5), |r| r.text().contains("confirmed an outage")).await;
    settle(app).await;
    let active = app.get(&format!("/v1/incidents/{aid}")).await.body;
    let resolved = app.get(&format!("/v1/incidents/{rid}")).await.body;
    Seeded { api, checkout, invoices, active, resolved }
}

// ---------------------------------------------------------------------------------------
// Statuspage compatibility

/// A JSON document with its objects' keys in document order (serde_json's `Value` sorts
/// them).
#[derive(Debug, Clone)]
enum Json {
    Null,
    Bool,
    Number,
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn kind(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool => "boolean",
            Json::Number => "number",
            Json::String(_) => "string",
            Json::Array(_) => "array",
            Json::Object(_) => "object",
        }
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
                Ok(Json::Bool)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Json, E> {
                Ok(Json::Number)
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::String(s.to_string()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    fields.push((k, v));
                }
                Ok(Json::Object(fields))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Keys Statuspage documents show as `null` or as a value, depending on the object.
const NULLABLE: &[&str] = &[
    "description",
    "start_date",
    "group_id",
    "monitoring_at",
    "resolved_at",
    "affected_components",
    "custom_tweet",
    "tweet_id",
];
/// Keys we add to Statuspage's objects (clients ignore keys they do not know): ours, and the
/// postmortem keys of Statuspage's own incident object (its manage API), which its public
/// documents leave out.
const OURS: &[&str] = &["incidentd", "postmortem_body", "postmortem_published_at"];

/// Compares a document of ours with a real Statuspage one: every key of theirs is there, in
/// their order, with their JSON type (nullable keys may be null on either side), and no key
/// they do not have but [`OURS`]; lists are compared element by element with their element of
/// the same kind (a group with a group). Timestamps have their format.
fn conforms(path: &str, ours: &Json, theirs: &Json, problems: &mut Vec<String>) {
    match (ours, theirs) {
        (Json::Object(mine), Json::Object(real)) => {
            for (key, _) in real {
                if mine.iter().all(|(k, _)| k != key) {
                    problems.push(format!("{path}: no `{key}`"));
                }
            }
            for (key, _) in mine {
                if real.iter().all(|(k, _)| k != key) && !OURS.contains(&key.as_str()) {
                    problems.push(format!("{path}: `{key}` is not Statuspage's"));
                }
            }
            let order: Vec<&str> =
                mine.iter().map(|(k, _)| k.as_str()).filter(|k| real.iter().any(|(r, _)| r == k)).collect();
            let expected: Vec<&str> =
                real.iter().map(|(k, _)| k.as_str()).filter(|k| mine.iter().any(|(m, _)| m == k)).collect();
            if order != expected {
                problems.push(format!("{path}: keys in the order {order:?}, Statuspage's is {expected:?}"));
            }
            for (key, value) in mine {
                let Some(real) = theirs.get(key) else { continue };
                let here = format!("{path}.{key}");
                if (matches!(value, Json::Null) || matches!(real, Json::Null)) && NULLABLE.contains(&key.as_str()) {
                    if key.ends_with("_at") {
                        timestamp(&here, value, problems);
                    }
                    continue;
                }
                if key.ends_with("_at") {
                    timestamp(&here, value, problems);
                }
                conforms(&here, value, real, problems);
            }
        }
        (Json::Array(mine), Json::Array(real)) => {
            let Some(first) = real.first() else { return };
            for (i, item) in mine.iter().enumerate() {
                let like = real
                    .iter()
                    .find(|r| r.get("group").map(Json::kind).is_some() && same_group(r, item))
                    .unwrap_or(first);
                conforms(&format!("{path}[{i}]"), item, like, problems);
            }
        }
        (a, b) if a.kind() == b.kind() => {}
        (a, b) => problems.push(format!("{path}: a {}, Statuspage's is a {}", a.kind(), b.kind())),
    }
}

fn same_group(a: &Json, b: &Json) -> bool {
    let group = |j: &Json| matches!(j.get("group"), Some(Json::Bool)).then(|| j.get("components").is_some());
    group(a) == group(b)
}

/// Statuspage's timestamps: RFC 3339 with milliseconds.
fn timestamp(path: &str, value: &Json, problems: &mut Vec<String>) {
    if let Json::String(s) = value {
        let millis = s.len() >= 24 && s.as_bytes()[19] == b'.' && s[20..23].bytes().all(|b| b.is_ascii_digit());
        if chrono::DateTime::parse_from_rfc3339(s).is_err() || !millis {
            problems.push(format!("{path}: {s:?} is not a timestamp with milliseconds"));
        }
    }
}

fn fixture(name: &str) -> Json {
    let path = format!("{}/tests/fixtures/statuspage/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("fixture")).expect("fixture JSON")
}

fn values<'a>(v: &'a Value, pointer: &str) -> Vec<&'a Value> {
    v.pointer(pointer).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
}

const COMPONENT_STATUSES: &[&str] =
    &["operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"];
const INCIDENT_STATUSES: &[&str] = &["investigating", "identified", "monitoring", "resolved", "postmortem"];
const IMPACTS: &[&str] = &["none", "minor", "major", "critical"];
const MAINTENANCE_STATUSES: &[&str] = &["scheduled", "in_progress", "verifying", "completed"];

/// Every value of a Statuspage enumeration in a document is one of theirs.
fn value_sets(doc: &Value) {
    let mut components: Vec<&Value> = values(doc, "/components");
    for m in values(doc, "/scheduled_maintenances") {
        components.extend(values(m, "/components"));
        assert!(MAINTENANCE_STATUSES.contains(&m["status"].as_str().unwrap()), "{}", m["status"]);
        assert_eq!(m["impact"], "maintenance");
        for u in values(m, "/incident_updates") {
            assert!(MAINTENANCE_STATUSES.contains(&u["status"].as_str().unwrap()), "{}", u["status"]);
        }
    }
    let incidents: Vec<&Value> = values(doc, "/incidents");
    for i in &incidents {
        components.extend(values(i, "/components"));
        assert!(INCIDENT_STATUSES.contains(&i["status"].as_str().unwrap()), "{}", i["status"]);
        assert!(IMPACTS.contains(&i["impact"].as_str().unwrap()), "{}", i["impact"]);
        for u in values(i, "/incident_updates") {
            assert!(INCIDENT_STATUSES.contains(&u["status"].as_str().unwrap()), "{}", u["status"]);
            for a in values(u, "/affected_components") {
                for key in ["old_status", "new_status"] {
                    assert!(COMPONENT_STATUSES.contains(&a[key].as_str().unwrap()), "{}", a[key]);
                }
            }
        }
    }
    for c in components {
        assert!(COMPONENT_STATUSES.contains(&c["status"].as_str().unwrap()), "{}", c["status"]);
    }
    if let Some(status) = doc.get("status") {
        assert!(["none", "minor", "major", "critical"].contains(&status["indicator"].as_str().unwrap()));
        let descriptions = [
            "All Systems Operational",
            "Partially Degraded Service",
            "Minor Service Outage",
            "Partial System Outage",
            "Major System Outage",
            "Service Under Maintenance",
        ];
        assert!(descriptions.contains(&status["description"].as_str().unwrap()), "{status}");
    }
}

#[tokio::test]
async fn the_public_json_has_statuspage_paths_fields_types_and_values() {
    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    let documents = [
        ("/api/v2/summary.json", "summary.json"),
        ("/api/v2/status.json", "status.json"),
        ("/api/v2/components.json", "components.json"),
        ("/api/v2/incidents.json", "incidents.json"),
        ("/api/v2/incidents/unresolved.json", "incidents.json"),
        ("/api/v2/scheduled-maintenances.json", "scheduled-maintenances.json"),
        ("/api/v2/scheduled-maintenances/upcoming.json", "scheduled-maintenances.json"),
        ("/api/v2/scheduled-maintenances/active.json", "scheduled-maintenances.json"),
    ];
    let mut problems = Vec::new();
    for (path, real) in documents {
        let res = get(&app, path, &[("origin", "https://widgets.example")]).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert_eq!(res.header("content-type"), "application/json", "{path}");
        assert_eq!(res.header("access-control-allow-origin"), "*", "{path}: any origin may read it");
        let ours: Json = serde_json::from_slice(&res.body).expect("JSON");
        conforms(path, &ours, &fixture(real), &mut problems);
        value_sets(&res.json());
    }
    assert!(problems.is_empty(), "unlike Statuspage's documents:\n{}", problems.join("\n"));

    // The content is ours, Statuspage's way.
    let summary = get(&app, "/api/v2/summary.json", &[]).await.json();
    assert_eq!(summary["page"]["name"], "Acme status");
    assert!(summary["page"]["url"].as_str().unwrap().ends_with("/status"));
    assert_eq!(
        summary["status"],
        json!({"indicator": "critical", "description": "Major System Outage"}),
        "a major outage"
    );
    let components = summary["components"].as_array().unwrap();
    let group = components.iter().find(|c| c["group"] == true).expect("the Payments group");
    assert_eq!(group["name"], "Payments");
    assert_eq!(group["status"], "major_outage", "a group shows its worst member");
    let members: BTreeSet<&str> = group["components"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(members, BTreeSet::from([seeded.checkout.as_str(), seeded.invoices.as_str()]));
    let checkout = components.iter().find(|c| c["id"] == seeded.checkout.as_str()).unwrap();
    assert_eq!(
        (checkout["group_id"].clone(), checkout["status"].clone()),
        (group["id"].clone(), json!("major_outage"))
    );
    let api = components.iter().find(|c| c["id"] == seeded.api.as_str()).unwrap();
    assert_eq!((api["group_id"].clone(), api["status"].clone()), (Value::Null, json!("operational")));
    let positions: Vec<i64> =
        components.iter().filter(|c| c["group_id"].is_null()).map(|c| c["position"].as_i64().unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] <= w[1]), "listed in position order: {positions:?}");

    let incidents = summary["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "the summary lists the unresolved incidents");
    let active = &incidents[0];
    assert_eq!(active["id"], seeded.active["id"]);
    assert_eq!(active["name"], "Card payments failing for some customers");
    assert_eq!((active["status"].as_str(), active["impact"].as_str()), (Some("identified"), Some("major")));
    let reference = seeded.active["reference"].as_str().unwrap();
    assert!(active["shortlink"].as_str().unwrap().ends_with(&format!("/status/incidents/{reference}")));
    let updates = active["incident_updates"].as_array().unwrap();
    let bodies: Vec<&str> = updates.iter().map(|u| u["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        [
            "Our payment provider confirmed an outage on their side.",
            "Card payments time out for about a third of attempts. We are investigating."
        ],
        "public updates, newest first"
    );
    assert_eq!(updates[0]["status"], "identified");
    assert_eq!(updates[0]["affected_components"], Value::Null, "no component changed with it");
    let affected = updates[1]["affected_components"].as_array().expect("the first update reports the components");
    let moves: BTreeSet<(String, String, String)> = affected
        .iter()
        .map(|a| {
            (
                a["name"].as_str().unwrap().into(),
                a["old_status"].as_str().unwrap().into(),
                a["new_status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        BTreeSet::from([
            ("Payments - Checkout".into(), "operational".into(), "major_outage".into()),
            ("Payments - Invoices".into(), "operational".into(), "degraded_performance".into()),
        ])
    );
    let affected_ids: BTreeSet<&str> =
        active["components"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(affected_ids, BTreeSet::from([seeded.checkout.as_str(), seeded.invoices.as_str()]));
    assert_eq!(active["incidentd"]["affected_customers_estimate"], 4300);
    assert_eq!(active["incidentd"]["workaround"]["availability"], "available");
    assert_eq!(active["incidentd"]["reference"], reference);

    let all = get(&app, "/api/v2/incidents.json", &[]).await.json();
    let listed: Vec<&Value> = all["incidents"].as_array().unwrap().iter().map(|i| &i["id"]).collect();
    assert_eq!(listed, [&seeded.active["id"], &seeded.resolved["id"]], "every incident, newest first");
    let resolved = &all["incidents"][1];
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["monitoring_at"].is_string() && resolved["resolved_at"].is_string());
    let unresolved = get(&app, "/api/v2/incidents/unresolved.json", &[]).await.json();
    assert_eq!(unresolved["incidents"].as_array().unwrap().len(), 1);
    for path in ["/api/v2/scheduled-maintenances.json", "/api/v2/scheduled-maintenances/upcoming.json"] {
        assert_eq!(get(&app, path, &[]).await.json()["scheduled_maintenances"], json!([]));
    }

    // Resolved, the page is operational again.
    app.transition(seeded.active["id"].as_str().unwrap(), "resolved").await;
    let (status, _) =
        until(&app, "/api/v2/status.json", Duration::from_secs(5), |r| r.text().contains("\"none\"")).await;
    assert_eq!(status.json()["status"], json!({"indicator": "none", "description": "All Systems Operational"}));
}

// ---------------------------------------------------------------------------------------
// The page

/// The text of an HTML page, tags dropped (enough to read what a person would).
fn visible_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    let mut in_style = false;
    let mut rest = html;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("<style") {
            in_style = true;
        }
        if in_style && rest.starts_with("</style>") {
            in_style = false;
        }
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag && !in_style => out.push(c),
            _ => {}
        }
        rest = &rest[c.len_utf8()..];
    }
    let out = out.replace("&nbsp;", " ").replace("&amp;", "&").replace("&#39;", "'").replace("&quot;", "\"");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn the_status_page_tells_customers_what_is_affected_and_what_to_do() {
    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    let page = get(&app, "/status", &[("accept-language", "en-GB,en;q=0.8")]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let html = page.text();
    assert!(html.to_ascii_lowercase().starts_with("<!doctype html>"), "{}", &html[..100]);
    for landmark in ["<header", "<main", "<footer", "<html lang=\"en\""] {
        assert!(html.contains(landmark), "no {landmark}");
    }
    assert!(!html.contains("<script"), "works without JavaScript: there is none");
    for external in ["src=\"http", "href=\"//", "src=\"//", "@import", "url(http"] {
        assert!(!html.contains(external), "nothing is loaded from elsewhere ({external})");
    }
    assert!(page.body.len() < 50 * 1024, "{} bytes", page.body.len());
    let text = visible_text(&html);
    for shown in [
        "Acme status",
        "Major outage",
        "Card payments failing for some customers",
        "Card payments through our payment provider fail with a timeout.",
        "Expected resolution",
        "about 4,300 customers",
        "Pay by bank transfer until card payments work again.",
        "A third party (Stripe)",
        "Payments",
        "Checkout (Major outage)",
        "Invoices (Degraded performance)",
        "Resolved in the last 7 days",
        "Search results are slow",
    ] {
        assert!(text.contains(shown), "the page does not say {shown:?}:\n{text}");
    }
    assert!(!text.contains("4321") && !text.contains("4,321"), "the exact figure stays internal");
    let newer = text.find("Our payment provider confirmed").unwrap();
    let older = text.find("Card payments time out for about a third").unwrap();
    assert!(newer < older, "updates newest first");
    // The ETA in the page's time zone (UTC here).
    let eta: chrono::DateTime<chrono::Utc> = seeded.active["eta"].as_str().unwrap().parse().unwrap();
    assert!(text.contains(&eta.format("%-d %b %Y, %H:%M UTC").to_string()), "ETA {eta}: {text}");

    // A 90-day bar per component, what it shows readable as text.
    let bars = html.matches("<ol class=\"bar\"").count();
    assert_eq!(bars, 4, "one bar per component");
    let component = |name: &str| {
        let at = html.find(&format!("<span class=\"name\">{name}</span>")).unwrap_or_else(|| panic!("no {name}"));
        let block = &html[at..];
        block[..block.find("</p>").unwrap()].to_string()
    };
    let api = component("API");
    assert_eq!(api.matches("<li").count(), 90, "90 days: {api}");
    assert!(api.contains("100% on every day."), "{api}");
    let checkout = component("Checkout");
    let bar = &checkout[..checkout.find("</ol>").unwrap()];
    let today = &bar[bar.rfind("<li").unwrap()..];
    let reference = seeded.active["reference"].as_str().unwrap();
    assert!(today.contains("class=s4"), "today is coloured by the worst status (a major outage): {today}");
    assert!(today.contains(reference), "the day's tooltip names its incident: {today}");
    let day = chrono::Utc::now().format("%-d %b").to_string();
    assert!(
        visible_text(&checkout).contains(&format!("{day}: "))
            && checkout.contains(&format!("Major outage ({reference})")),
        "the day's uptime, status and incident as text: {checkout}"
    );

    // German, from Accept-Language or ?lang=, with German figures and dates.
    let german = get(&app, "/status", &[("accept-language", "de-DE,de;q=0.9,en;q=0.5")]).await;
    assert_eq!(german.header("content-language"), "de");
    assert!(german.header("vary").contains("Accept-Language"));
    let text = visible_text(&german.text());
    for shown in ["Aktuelle Störungen", "etwa 4.300 Kunden", "Voraussichtlich behoben", "Umgehung"] {
        assert!(text.contains(shown), "the German page does not say {shown:?}:\n{text}");
    }
    assert!(german.text().contains("<html lang=\"de\""));
    let asked = get(&app, "/status?lang=de", &[("accept-language", "en")]).await;
    assert!(visible_text(&asked.text()).contains("Aktuelle Störungen"), "?lang= wins");
    let fallback = get(&app, "/status", &[("accept-language", "fr-FR")]).await;
    assert_eq!(fallback.header("content-language"), "en", "languages we do not speak read English");

    // The incident's page, and the history.
    let reference = seeded.active["reference"].as_str().unwrap();
    let incident = get(&app, &format!("/status/incidents/{reference}"), &[]).await;
    assert_eq!(incident.status, StatusCode::OK);
    assert!(incident.body.len() < 50 * 1024);
    let text = visible_text(&incident.text());
    assert!(text.contains("Card payments failing") && text.contains("Our payment provider confirmed"), "{text}");
    let history = get(&app, "/status/history", &[]).await;
    assert_eq!(history.status, StatusCode::OK);
    let text = visible_text(&history.text());
    assert!(text.contains("Search results are slow") && text.contains("Card payments failing"), "{text}");
    assert!(text.contains(&chrono::Utc::now().format("%B %Y").to_string()), "months as headings: {text}");
    let month = (chrono::Utc::now() - chrono::Duration::days(400)).format("%Y-%m").to_string();
    let older = get(&app, &format!("/status/history?month={month}"), &[]).await;
    assert_eq!(older.status, StatusCode::OK);
    assert!(visible_text(&older.text()).contains("No incidents this month."));
    assert_eq!(get(&app, "/status/incidents/INC-999999", &[]).await.status, StatusCode::NOT_FOUND);
    let bad = get(&app, "/status/history?month=2026-13", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.header("content-type"), "application/problem+json");
    assert_eq!(bad.json()["errors"][0]["field"], "month");

    // Resolved more than 7 days ago: in the history, no longer on the front page.
    let db = app.db().await;
    let rid = seeded.resolved["id"].as_str().unwrap();
    for column in ["created_at", "started_at", "resolved_at", "updated_at"] {
        db.shift_back("incidents", column, 8 * 86_400, &format!("id = '{rid}'")).await;
    }
    db.close().await;
    app.patch(&format!("/v1/components/{}", seeded.api), json!({"description": "The public API"})).await;
    until(&app, "/api/v2/components.json", Duration::from_secs(5), |r| r.text().contains("The public API")).await;
    let text = visible_text(&get(&app, "/status", &[]).await.text());
    assert!(!text.contains("Search results are slow"), "{text}");
    let history = visible_text(&get(&app, "/status/history", &[]).await.text());
    assert!(history.contains("Search results are slow"), "{history}");
}

#[tokio::test]
async fn a_page_with_a_busy_outage_stays_under_50_kb() {
    let app = TestApp::spawn().await;
    // Like `incidentd seed`: 20 components in groups, and a month of incidents.
    let mut ids = Vec::new();
    for i in 0..20 {
        let group = ["Core", "Payments", "Regions", "Integrations"][i % 4];
        ids.push(component(&app, &format!("Component number {i:02} with a realistic name"), Some(group)).await);
    }
    for i in 0..12 {
        let inc = app
            .create_incident(json!({"title": format!("Incident {i}: elevated error rates on several services"),
                "severity": "sev2", "impact": "major",
                "summary": "Requests fail intermittently for a share of customers in one region.",
                "affected_components": [{"component_id": ids[i], "status": "partial_outage"},
                    {"component_id": ids[i + 1], "status": "degraded_performance"}],
                "affected_customers": 12_345, "workaround": {"availability": "none"}}))
            .await;
        let id = inc["id"].as_str().unwrap().to_string();
        for n in 0..3 {
            update(
                &app,
                &id,
                &format!("Update {n}: we have found the cause and are rolling out a fix across regions."),
                "public",
                None,
            )
            .await;
        }
        if i >= 3 {
            app.transition(&id, "resolved").await;
        }
    }
    // The components have been there all 90 days: every day has its figure.
    let db = app.db().await;
    db.shift_back("components", "created_at", 100 * 86_400, "1 = 1").await;
    db.close().await;
    app.patch(&format!("/v1/components/{}", ids[0]), json!({"description": "Where it all starts"})).await;
    // Documents are rebuilt together: once the JSON shows the change, the page does too.
    until(&app, "/api/v2/components.json", Duration::from_secs(5), |r| r.text().contains("Where it all starts")).await;
    for path in ["/status", "/status?lang=de", "/status/history", "/status/incidents/INC-1"] {
        let res = get(&app, path, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert!(res.body.len() < 50 * 1024, "{path}: {} bytes", res.body.len());
    }
}

#[tokio::test]
async fn an_alert_storm_of_open_incidents_keeps_the_page_short_and_every_incident_reachable() {
    let app = TestApp::spawn().await;
    let checkout = component(&app, "Checkout", None).await;
    let mut references = Vec::new();
    for i in 0..26 {
        let inc = app
            .create_incident(json!({"title": format!("Storm incident {i:02}"), "severity": "sev3", "impact": "minor",
                "affected_components": [{"component_id": checkout, "status": "degraded_performance"}]}))
            .await;
        references.push(inc["reference"].as_str().unwrap().to_string());
    }
    until(&app, "/api/v2/incidents/unresolved.json", Duration::from_secs(5), |r| {
        r.json()["incidents"].as_array().is_some_and(|a| a.len() == 26)
    })
    .await;
    let page = get(&app, "/status", &[]).await;
    let html = page.text();
    assert_eq!(html.matches("<article class=\"incident\"").count(), 20, "{html}");
    assert!(visible_text(&html).contains("6 more current incidents in the history"), "{html}");
    assert!(html.contains("href=\"/status/history?lang=en\""), "{html}");
    // The day's text of the bar names five of them.
    assert!(visible_text(&html).contains(", 21 more)."), "{html}");
    let de = get(&app, "/status?lang=de", &[]).await.text();
    assert!(visible_text(&de).contains("6 weitere aktuelle Störungen im Verlauf"), "{de}");
    // The history lists every one of them, and each has its page (rendered on first request).
    let history = get(&app, "/status/history", &[]).await.text();
    for (i, reference) in references.iter().enumerate() {
        assert!(history.contains(&format!("Storm incident {i:02}")), "{reference} is not in the history");
        let res = get(&app, &format!("/status/incidents/{reference}"), &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{reference}");
        assert!(res.text().contains(&format!("Storm incident {i:02}")), "{reference}: {}", res.text());
        // The second read is the cached document: the same bytes and tag.
        let again = get(&app, &format!("/status/incidents/{reference}"), &[]).await;
        assert_eq!((again.header("etag"), &again.body), (res.header("etag"), &res.body), "{reference}");
    }
}

// ---------------------------------------------------------------------------------------
// HTTP behaviour

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("gzip");
    out
}

fn unbrotli(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(bytes, 4096).read_to_end(&mut out).expect("brotli");
    out
}

#[tokio::test]
async fn public_responses_are_cacheable_compressed_and_open_to_any_origin() {
    let app = TestApp::spawn_with(|c| c.status.max_age_secs = 7).await;
    seed(&app).await;
    let paths = ["/status", "/api/v2/summary.json", "/history.atom", "/badge.svg"];
    for path in paths {
        let plain = get(&app, path, &[]).await;
        assert_eq!(plain.status, StatusCode::OK, "{path}");
        assert_eq!(plain.header("cache-control"), "public, max-age=7", "{path}");
        let tag = plain.header("etag").to_string();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{path}: a strong ETag, got {tag:?}");
        assert!(plain.header("vary").contains("Accept-Encoding"), "{path}");
        assert_eq!(plain.header("content-encoding"), "", "{path}: identity when not asked");

        let revalidated = get(&app, path, &[("if-none-match", &tag)]).await;
        assert_eq!(revalidated.status, StatusCode::NOT_MODIFIED, "{path}");
        assert!(revalidated.body.is_empty());
        assert_eq!(revalidated.header("etag"), tag);
        let other = get(&app, path, &[("if-none-match", "\"something-else\"")]).await;
        assert_eq!(other.status, StatusCode::OK, "{path}");

        let gz = get(&app, path, &[("accept-encoding", "gzip")]).await;
        assert_eq!(gz.header("content-encoding"), "gzip", "{path}");
        assert!(gunzip(&gz.body) == plain.body, "{path}: the same document");
        assert_eq!(gz.header("etag"), tag, "{path}: one tag whatever the encoding");
        let br = get(&app, path, &[("accept-encoding", "gzip, deflate, br")]).await;
        assert_eq!(br.header("content-encoding"), "br", "{path}");
        assert!(unbrotli(&br.body) == plain.body, "{path}: the same document");
        assert!(br.body.len() < plain.body.len(), "{path}: compressed");
        assert_eq!(br.header("access-control-allow-origin"), "*", "{path}");
    }
    let html = get(&app, "/status", &[]).await;
    let csp = html.header("content-security-policy");
    assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'sha256-"), "{csp}");
    assert_eq!(html.header("x-content-type-options"), "nosniff");

    // HEAD, a preflight, the root, and what is not there.
    let client = http_client();
    let head = client.head(app.url("/api/v2/status.json")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert!(head.headers().contains_key("etag"));
    let preflight = client
        .request(reqwest::Method::OPTIONS, app.url("/api/v2/summary.json"))
        .header("origin", "https://widgets.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "if-none-match")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    let root = get(&app, "/", &[]).await;
    assert!(root.status.is_redirection(), "{}", root.status);
    assert_eq!(root.header("location"), "/status");
    for missing in ["/api/v2/nothing.json", "/components/not-an-id/badge.svg"] {
        let res = get(&app, missing, &[]).await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{missing}");
    }
    let unknown = get(&app, &format!("/components/{}/badge.svg", uuid::Uuid::now_v7()), &[]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.header("content-type"), "application/problem+json");
}

#[tokio::test]
async fn public_routes_need_no_key_and_are_rate_limited_per_client_address() {
    let app = TestApp::spawn_with(|c| {
        c.status.public_rate_limit_per_second = 1;
        c.status.public_rate_limit_burst = 3;
        c.status.trust_forwarded_for = true;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(get(&app, "/api/v2/status.json", &[]).await.status, StatusCode::OK);
    }
    let refused = get(&app, "/status", &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.header("content-type"), "application/problem+json");
    assert!(refused.header("retry-after").parse::<u64>().is_ok(), "{:?}", refused.headers);
    assert_eq!(refused.header("access-control-allow-origin"), "*", "a widget can read why");
    // Another client (behind a trusted proxy) has its own budget; the last address counts.
    let other = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    assert_eq!(get(&app, "/status", &other).await.status, StatusCode::OK);
    assert_eq!(get(&app, "/status", &[("x-forwarded-for", "203.0.113.7")]).await.status, StatusCode::OK);
    // The API's own limits are separate: an operator is not locked out by the page's traffic.
    assert_eq!(app.get("/v1/incidents").await.status, StatusCode::OK);

    // Not behind a trusted proxy, the header changes nothing.
    let direct = TestApp::spawn_with(|c| {
        c.status.public_rate_limit_per_second = 1;
        c.status.public_rate_limit_burst = 1;
    })
    .await;
    assert_eq!(get(&direct, "/status", &[]).await.status, StatusCode::OK);
    assert_eq!(
        get(&direct, "/status", &[("x-forwarded-for", "203.0.113.9")]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

// ---------------------------------------------------------------------------------------
// Served from memory, current within seconds, on every replica

#[tokio::test]
async fn public_surfaces_are_served_from_memory_while_the_database_is_unavailable() {
    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    let reference = seeded.active["reference"].as_str().unwrap().to_string();
    let paths = [
        "/status".to_string(),
        "/status?lang=de".into(),
        format!("/status/incidents/{reference}"),
        "/status/history".into(),
        "/api/v2/summary.json".into(),
        "/api/v2/incidents.json".into(),
        "/history.rss".into(),
        format!("/components/{}/badge.svg", seeded.checkout),
    ];
    let mut before = Vec::new();
    for path in &paths {
        before.push(get(&app, path, &[]).await.body);
    }
    let metrics = |body: &Value| -> (f64, f64, f64) {
        let text = body.as_str().unwrap_or_default().to_string();
        let value =
            |series: &str| text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse::<f64>().ok()).unwrap_or(0.0);
        (
            value("incidentd_status_snapshot_rebuild_duration_seconds_count{outcome=\"ok\"}"),
            value("incidentd_status_snapshot_rebuild_duration_seconds_count{outcome=\"failed\"}"),
            value("incidentd_status_snapshot_documents"),
        )
    };
    let (ok, failed, documents) = metrics(&app.get("/metrics").await.body);
    assert!(ok >= 1.0 && failed == 0.0 && documents >= 15.0, "{ok} {failed} {documents}");
    // The tables the state is read from are gone: any query would fail.
    let db = app.db().await;
    for table in ["incidents", "components", "incident_updates"] {
        db.execute(&format!("ALTER TABLE {table} RENAME TO {table}_away")).await;
    }
    assert!(!app.get("/v1/incidents").await.status.is_success(), "the database really is unavailable");
    // A change committed before the outage would rebuild now: it fails, and the last snapshot stays.
    app.service.refresh_public();
    let deadline = Instant::now() + Duration::from_secs(5);
    while metrics(&app.get("/metrics").await.body).1 < 1.0 {
        assert!(Instant::now() < deadline, "no rebuild was tried");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, earlier) in paths.iter().zip(&before) {
        let res = get(&app, path, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{path}: {}", res.text());
        assert!(&res.body == earlier, "{path}: not the same document as before: {}", res.text());
    }
    for table in ["incidents", "components", "incident_updates"] {
        db.execute(&format!("ALTER TABLE {table}_away RENAME TO {table}")).await;
    }
    db.close().await;
    assert_eq!(app.get("/v1/incidents").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_change_shows_on_every_public_surface_within_two_seconds() {
    let app = TestApp::spawn().await;
    let api = component(&app, "API", None).await;
    let before = get(&app, "/api/v2/summary.json", &[]).await;
    let tag = before.header("etag").to_string();
    let inc = app
        .create_incident(json!({"title": "Logins fail", "severity": "sev1", "impact": "critical",
            "affected_components": [{"component_id": api, "status": "major_outage"}]}))
        .await;
    let id = inc["id"].as_str().unwrap();
    let (summary, after) = until(&app, "/api/v2/summary.json", Duration::from_secs(2), |r| r.text().contains(id)).await;
    assert_ne!(summary.header("etag"), tag, "a new document has a new tag");
    assert_eq!(get(&app, "/api/v2/summary.json", &[("if-none-match", &tag)]).await.status, StatusCode::OK);
    assert_eq!(summary.json()["status"]["indicator"], "critical");
    let remaining = Duration::from_secs(2).saturating_sub(after).max(Duration::from_millis(100));
    until(&app, "/status", remaining, |r| r.text().contains("Logins fail")).await;
    until(&app, &format!("/components/{api}/badge.svg"), remaining, |r| r.text().contains("major outage")).await;
    // (Two seconds, the bound across replicas, as loaded CI machines need; it is ~100 ms.)
    // A component edited by hand (no incident) shows too.
    app.patch(&format!("/v1/components/{api}"), json!({"name": "Public API"})).await;
    until(&app, "/api/v2/components.json", Duration::from_secs(2), |r| r.text().contains("Public API")).await;
}

#[tokio::test]
async fn a_change_through_one_replica_shows_on_every_replica_within_two_seconds() {
    skip_unless!(Postgres, "replicas share one Postgres database; an SQLite file belongs to one process");
    let first = TestApp::spawn().await;
    let second = TestApp::spawn_on(&first.database_url).await;
    let api = component(&first, "API", None).await;
    until(&second, "/api/v2/components.json", Duration::from_secs(2), |r| r.text().contains(&api)).await;
    let inc = first
        .create_incident(json!({"title": "Logins fail", "severity": "sev1", "impact": "critical",
            "affected_components": [{"component_id": api, "status": "major_outage"}]}))
        .await;
    let id = inc["id"].as_str().unwrap();
    until(&second, "/api/v2/incidents/unresolved.json", Duration::from_secs(2), |r| r.text().contains(id)).await;
    until(&second, "/status", Duration::from_secs(2), |r| r.text().contains("Logins fail")).await;
    // And back: resolved through the second, gone from the first's page.
    second.transition(id, "resolved").await;
    until(&first, "/api/v2/incidents/unresolved.json", Duration::from_secs(2), |r| !r.text().contains(id)).await;
    until(&first, "/api/v2/status.json", Duration::from_secs(2), |r| r.text().contains("\"none\"")).await;
}

// ---------------------------------------------------------------------------------------
// Scheduled maintenance

#[tokio::test]
async fn scheduled_maintenance_is_on_the_page_the_statuspage_json_and_the_feeds() {
    let app = TestApp::spawn_with(|c| c.status.name = "Acme status".into()).await;
    let db = component(&app, "Database", None).await;
    let api = component(&app, "API", None).await;
    let at = |hours: i64| (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339();
    let schedule = |title: &str, components: Vec<&str>, hours: i64| {
        json!({"title": title, "body": format!("{title}: what you will notice."), "components": components,
            "scheduled_for": at(hours), "scheduled_until": at(hours + 1), "auto_start": false})
    };
    let app = &app;
    let create = |body: Value| async move {
        let res = app.post("/v1/maintenances", body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
        res.body["id"].as_str().unwrap().to_string()
    };
    let post = |id: String, body: Value| async move {
        let res = app.post(&format!("/v1/maintenances/{id}/updates"), body).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    };
    let upcoming = create(schedule("Storage upgrade", vec![&db], 24)).await;
    let active = create(schedule("Network switch", vec![&api], 1)).await;
    post(active.clone(), json!({"status": "in_progress"})).await;
    post(active.clone(), json!({"body": "Halfway there."})).await;
    let done = create(schedule("Kernel patch", vec![&db], 2)).await;
    post(done.clone(), json!({"status": "in_progress"})).await;
    post(done.clone(), json!({"status": "completed"})).await;
    let cancelled = create(schedule("Old plan", vec![&db], 3)).await;
    post(cancelled.clone(), json!({"status": "cancelled", "body": "Not needed after all."})).await;
    // The cancellation is the last change: once the feed has it, the snapshot has them all.
    until(app, "/history.atom", Duration::from_secs(5), |r| r.text().contains("Not needed after all.")).await;
    let summary = get(app, "/api/v2/summary.json", &[]).await;

    // Statuspage's documents: their shape, their values, and which maintenance is in each.
    let mut problems = Vec::new();
    let ids = |doc: &Value| -> Vec<String> {
        values(doc, "/scheduled_maintenances").iter().map(|m| m["id"].as_str().unwrap().to_string()).collect()
    };
    for (path, expected) in [
        ("/api/v2/scheduled-maintenances.json", vec![&upcoming, &cancelled, &done, &active][..].to_vec()),
        ("/api/v2/scheduled-maintenances/upcoming.json", vec![&upcoming]),
        ("/api/v2/scheduled-maintenances/active.json", vec![&active]),
    ] {
        let res = get(app, path, &[]).await;
        let ordered: Json = serde_json::from_slice(&res.body).expect("JSON");
        conforms(path, &ordered, &fixture("scheduled-maintenances.json"), &mut problems);
        let doc = res.json();
        value_sets(&doc);
        let expected: Vec<String> =
            expected.into_iter().filter(|id| **id != cancelled).map(|id| id.to_string()).collect();
        assert_eq!(ids(&doc), expected, "{path}: cancelled ones are left out");
    }
    let ordered: Json = serde_json::from_slice(&summary.body).expect("JSON");
    conforms("/api/v2/summary.json", &ordered, &fixture("summary.json"), &mut problems);
    let summary = summary.json();
    assert!(problems.is_empty(), "unlike Statuspage's documents:\n{}", problems.join("\n"));
    assert_eq!(ids(&summary), [active.clone(), upcoming.clone()], "under way and upcoming, soonest first");
    let m = &summary["scheduled_maintenances"][0];
    assert_eq!(m["name"], "Network switch");
    assert_eq!(m["status"], "in_progress");
    assert_eq!(m["components"][0]["id"], api.as_str());
    assert_eq!(m["components"][0]["status"], "under_maintenance");
    let bodies: Vec<&str> = values(m, "/incident_updates").iter().map(|u| u["body"].as_str().unwrap()).collect();
    assert_eq!(
        bodies,
        [
            "Halfway there.",
            "Scheduled maintenance is currently in progress. We will provide updates as necessary.",
            "Network switch: what you will notice."
        ],
        "newest first, Statuspage's words for a move without text"
    );
    assert_eq!(summary["status"], json!({"indicator": "none", "description": "Service Under Maintenance"}));
    let all = get(app, "/api/v2/scheduled-maintenances.json", &[]).await.json();
    let completed = values(&all, "/scheduled_maintenances").into_iter().find(|m| m["id"] == done.as_str()).unwrap();
    assert_eq!(completed["status"], "completed");
    assert!(completed["resolved_at"].is_string());
    for key in ["auto_start", "auto_complete", "reminded_at", "author", "version"] {
        assert!(!all.to_string().contains(&format!("\"{key}\"")), "{key} is not for customers");
    }

    // The page: under way and upcoming, in both languages; what is over is not there.
    let page = visible_text(&get(app, "/status?lang=en", &[]).await.text());
    let section = page.split("Scheduled maintenance").nth(1).expect("a maintenance section");
    assert!(section.contains("Network switch In progress"), "{section}");
    assert!(section.contains("Halfway there."), "{section}");
    assert!(section.contains("Storage upgrade Scheduled"), "{section}");
    assert!(section.contains("Affected Database"), "{section}");
    assert!(page.contains("Maintenance in progress"), "the banner: {page}");
    assert!(!page.contains("Kernel patch") && !page.contains("Old plan"), "{page}");
    let seite = visible_text(&get(app, "/status?lang=de", &[]).await.text());
    assert!(seite.contains("Geplante Wartungsarbeiten"), "{seite}");
    assert!(seite.contains("Network switch Läuft"), "{seite}");

    // The feeds: each maintenance's scheduling and each update after, cancellation included.
    let feed = feedparser(&get(app, "/history.atom", &[]).await.body);
    assert_eq!(feed["bozo"], false, "{feed}");
    let titles: Vec<&str> = feed["entries"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap()).collect();
    for title in [
        "Scheduled maintenance · Cancelled: Old plan",
        "Scheduled maintenance · Completed: Kernel patch",
        "Scheduled maintenance · In progress: Network switch",
        "Scheduled maintenance · Scheduled: Storage upgrade",
    ] {
        assert!(titles.contains(&title), "{title} in {titles:?}");
    }
    let cancel = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"] == "Scheduled maintenance · Cancelled: Old plan")
        .unwrap();
    assert_eq!(cancel["summary"], "Not needed after all.");
    let rss = feedparser(&get(app, "/history.rss", &[]).await.body);
    assert_eq!(rss["entries"].as_array().unwrap().len(), titles.len());

    // Public subscribers get the same view: no worker settings, no author.
    let events = app.get("/v1/events?public=true&page_size=500").await.body;
    let maintenance_events: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"].as_str().unwrap().starts_with("maintenance."))
        .collect();
    assert!(!maintenance_events.is_empty());
    for e in maintenance_events {
        assert!(e["data"]["maintenance"].get("auto_start").is_none(), "{e}");
        assert!(e["data"].get("update").is_none_or(|u| u.get("author").is_none()), "{e}");
    }
}

#[tokio::test]
async fn a_published_postmortem_reaches_the_page_the_json_the_feeds_and_subscribers_and_nothing_more() {
    let smtp = crate::receivers::SmtpSink::start();
    let smtp_url = smtp.url.clone();
    let app = TestApp::spawn_with(move |c| c.smtp_url = Some(smtp_url.into())).await;
    let imported = app
        .send(
            app.client
                .post(app.url("/v1/subscribers/import"))
                .header("content-type", "text/csv")
                .body("email\nreader@example.com\n"),
        )
        .await;
    assert_eq!(imported.body["imported"], 1, "{}", imported.body);
    let incident = app.create_incident(json!({"title": "Checkout down", "severity": "sev1", "impact": "major"})).await;
    let (id, reference) = (incident["id"].as_str().unwrap(), incident["reference"].as_str().unwrap());
    app.transition(id, "resolved").await;
    let summary = "Payments now fail over to a second provider within a minute.";
    let pm = format!("/v1/incidents/{id}/postmortem");
    let res = app
        .post(
            &pm,
            json!({"body": "CANARY-pm-body: the deploy broke the TLS config",
            "public_summary": summary, "contributing_factors": ["CANARY-pm-factor"],
            "recurrence_risk": "low", "recurrence_reason": "CANARY-pm-reason", "author": "CANARY-pm-author"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // Before publication, nothing of it is public.
    app.post(&format!("{pm}/transitions"), json!({"to": "in_review"})).await;
    settle(&app).await;
    assert!(!get(&app, "/api/v2/incidents.json", &[]).await.text().contains("fail over"));
    let published = app.post(&format!("{pm}/transitions"), json!({"to": "published"})).await;
    assert_eq!(published.status, StatusCode::OK, "{}", published.body);

    // The Statuspage JSON: its postmortem keys, and the status `postmortem`, in Statuspage's shape.
    let (doc, _) =
        until(&app, "/api/v2/incidents.json", Duration::from_secs(5), |r| r.text().contains("fail over")).await;
    let ordered: Json = serde_json::from_slice(&doc.body).unwrap();
    let mut problems = Vec::new();
    conforms("/api/v2/incidents.json", &ordered, &fixture("incidents.json"), &mut problems);
    assert!(problems.is_empty(), "unlike Statuspage's documents:\n{}", problems.join("\n"));
    let json = doc.json();
    value_sets(&json);
    let i = &json["incidents"][0];
    assert_eq!((i["status"].as_str(), i["postmortem_body"].as_str()), (Some("postmortem"), Some(summary)));
    let mut ts = Vec::new();
    timestamp("postmortem_published_at", &ordered_field(&ordered, "postmortem_published_at"), &mut ts);
    assert!(ts.is_empty() && i["postmortem_published_at"].is_string(), "{ts:?} {i}");

    // The incident's page in both languages, and the feeds.
    let page = visible_text(&get(&app, &format!("/status/incidents/{reference}?lang=en"), &[]).await.text());
    assert!(page.contains("Postmortem Published") && page.contains(summary), "{page}");
    let seite = visible_text(&get(&app, &format!("/status/incidents/{reference}?lang=de"), &[]).await.text());
    assert!(seite.contains("Nachbetrachtung") && seite.contains(summary), "{seite}");
    let feed = feedparser(&get(&app, "/history.atom", &[]).await.body);
    let entry = feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["title"] == format!("Postmortem: Checkout down ({reference})"));
    assert_eq!(entry.expect("a feed entry for the postmortem")["summary"], summary, "{feed}");
    assert_eq!(feedparser(&get(&app, "/history.rss", &[]).await.body)["bozo"], false);

    // The subscriber's mails: the declaration, the resolution, and the postmortem's summary.
    let mails: Vec<Value> = smtp.wait_for(3).await.iter().map(|m| crate::subscribers::parse_mail(m)).collect();
    let mail = mails
        .iter()
        .find(|m| m["subject"].as_str().unwrap().contains("Postmortem: Checkout down"))
        .unwrap_or_else(|| panic!("no postmortem mail: {mails:?}"));
    assert!(mail["text"].as_str().unwrap().contains(summary), "{mail}");

    // Nowhere public: the analysis, the factors, the reason, the author.
    for path in [
        "/api/v2/incidents.json",
        "/api/v2/summary.json",
        "/history.atom",
        "/history.rss",
        "/status",
        &format!("/status/incidents/{reference}"),
    ] {
        let text = get(&app, path, &[]).await.text();
        for canary in ["CANARY-pm-body", "CANARY-pm-factor", "CANARY-pm-reason", "CANARY-pm-author", "TLS config"] {
            assert!(!text.contains(canary), "{canary} on {path}");
        }
    }
    for mail in &mails {
        assert!(!mail.to_string().contains("CANARY"), "{mail}");
    }
    let public = app.get("/v1/events?public=true&page_size=500").await.body.to_string();
    assert!(!public.contains("CANARY"), "{public}");
}

/// The value of a top-level key of the first incident of an incidents document.
fn ordered_field(doc: &Json, key: &str) -> Json {
    match doc.get("incidents") {
        Some(Json::Array(items)) => items.first().and_then(|i| i.get(key)).cloned().unwrap_or(Json::Null),
        _ => Json::Null,
    }
}

// ---------------------------------------------------------------------------------------
// Feeds and badges

/// What Python's feedparser reads from a feed: version, whether it complained, entries.
fn feedparser(feed: &[u8]) -> Value {
    let dir = tempfile_dir();
    let path = dir.join("feed.xml");
    std::fs::write(&path, feed).unwrap();
    let tools = format!("{}/target/tools/python", env!("CARGO_MANIFEST_DIR"));
    let python_path = match std::env::var("PYTHONPATH") {
        Ok(p) if !p.is_empty() => format!("{tools}:{p}"),
        _ => tools,
    };
    let script = r#"
import json, sys, feedparser
d = feedparser.parse(sys.argv[1])
print(json.dumps({
    "version": d.version, "bozo": d.bozo, "error": str(d.get("bozo_exception", "")),
    "title": d.feed.get("title"), "link": d.feed.get("link"),
    "entries": [{"title": e.get("title"), "link": e.get("link"), "id": e.get("id"),
                 "summary": e.get("summary") or (e.get("content") or [{}])[0].get("value"), "published": e.get("published", e.get("updated"))}
                for e in d.entries]}))
"#;
    let out = std::process::Command::new(std::env::var("INCIDENTD_PYTHON").unwrap_or_else(|_| "python3".into()))
        .env("PYTHONPATH", python_path)
        .args(["-c", script])
        .arg(&path)
        .output()
        .expect("python3 runs (./scripts/test installs feedparser into target/tools/python)");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "feedparser failed (./scripts/test installs it: pip install --target target/tools/python feedparser): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("feedparser's JSON")
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("incidentd-feed-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn the_feeds_are_read_by_a_real_feed_parser_newest_update_first() {
    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    update(&app, seeded.active["id"].as_str().unwrap(), "Internal: the provider's ticket is 123.", "internal", None)
        .await;
    for (path, content_type, version) in
        [("/history.atom", "application/atom+xml", "atom10"), ("/history.rss", "application/rss+xml", "rss20")]
    {
        let res = get(&app, path, &[]).await;
        assert_eq!(res.status, StatusCode::OK, "{path}");
        assert!(res.header("content-type").starts_with(content_type), "{path}: {}", res.header("content-type"));
        let feed = feedparser(&res.body);
        assert_eq!(feed["version"], version, "{path}: {feed}");
        assert!(feed["bozo"] == false || feed["bozo"] == 0, "{path}: well-formed: {}", feed["error"]);
        assert!(feed["title"].as_str().unwrap().starts_with("Acme status"), "{path}: {}", feed["title"]);
        let entries = feed["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 7, "{path}: two declarations and five public updates: {feed}");
        let summaries: Vec<&str> = entries.iter().map(|e| e["summary"].as_str().unwrap_or_default()).collect();
        assert!(summaries[0].contains("Our payment provider confirmed"), "{path}: newest first: {summaries:?}");
        assert!(summaries.iter().all(|s| !s.contains("ticket is 123")), "{path}: no internal update");
        let reference = seeded.active["reference"].as_str().unwrap();
        assert!(entries[0]["link"].as_str().unwrap().ends_with(&format!("/status/incidents/{reference}")), "{path}");
        assert!(entries[0]["title"].as_str().unwrap().contains("Card payments failing"), "{path}");
        let ids: BTreeSet<&str> = entries.iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids.len(), entries.len(), "{path}: every entry has its own id");
        assert!(entries.iter().all(|e| e["published"].is_string()), "{path}: dated");
    }
}

#[tokio::test]
async fn badges_are_svg_with_a_readable_title() {
    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    let overall = get(&app, "/badge.svg", &[]).await;
    assert_eq!(overall.status, StatusCode::OK);
    assert_eq!(overall.header("content-type"), "image/svg+xml");
    let svg = overall.text();
    assert!(svg.starts_with("<svg") && svg.contains("xmlns=\"http://www.w3.org/2000/svg\""), "{svg}");
    assert!(svg.contains("role=\"img\""), "{svg}");
    assert!(svg.contains("<title>Acme status: major system outage</title>"), "{svg}");
    let checkout = get(&app, &format!("/components/{}/badge.svg", seeded.checkout), &[]).await;
    assert!(checkout.text().contains("<title>Checkout: major outage</title>"), "{}", checkout.text());
    let api = get(&app, &format!("/components/{}/badge.svg", seeded.api), &[]).await;
    assert!(api.text().contains("<title>API: operational</title>"), "{}", api.text());
    assert!(api.text().contains("aria-label=\"API: operational\""), "{}", api.text());
}

// ---------------------------------------------------------------------------------------
// The wall between internal and public

#[tokio::test]
async fn nothing_internal_reaches_any_public_route_page_feed_or_badge() {
    // With email, so that a subscriber's link pages can be scanned too.
    let smtp = crate::receivers::SmtpSink::start();
    let smtp_url = smtp.url.clone();
    let app = TestApp::spawn_with(move |c| c.smtp_url = Some(smtp_url.into())).await;
    let seeded = seed(&app).await;
    let (_, secret) = app.api_key("CANARY-api-key-name", &["incidents:write"]).await;
    let keyed = http_client();
    let as_key = |req: reqwest::RequestBuilder| req.bearer_auth(&secret);
    let c = seeded.checkout.clone();
    let res = app
        .send(as_key(keyed.post(app.url("/v1/incidents")).json(&json!({
            "title": "Exports delayed", "severity": "sev2", "impact": "minor",
            "affected_components": [{"component_id": c, "status": "partial_outage"}],
            "affected_customers": 4_321_987,
            "cause": {"kind": "third_party", "provider": "Stripe", "external_reference": "CANARY-external-reference"},
            "commander": "CANARY-commander", "root_cause": "CANARY-root-cause",
            "labels": {"team": "CANARY-label-value", "CANARY-label-key": "x"},
            "workaround": {"availability": "none"}}))))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    let id = res.body["id"].as_str().unwrap().to_string();
    let reference = res.body["reference"].as_str().unwrap().to_string();
    let post = |path: String, body: Value| app.send(as_key(keyed.post(app.url(&path)).json(&body)));
    assert!(
        post(format!("/v1/incidents/{id}/acknowledge"), json!({"by": "CANARY-acknowledger"})).await.status.is_success()
    );
    for (body, visibility) in [("CANARY-internal-update", "internal"), ("Exports are delayed; we are on it.", "public")]
    {
        let res = post(format!("/v1/incidents/{id}/updates"), json!({"body": body, "visibility": visibility})).await;
        assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    }
    let moved = post(
        format!("/v1/incidents/{id}/transitions"),
        json!({"to": "identified", "message": "CANARY-internal-transition", "visibility": "internal"}),
    )
    .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    // A follow-up action, a link, and a published postmortem of the resolved incident.
    let action = post(
        format!("/v1/incidents/{id}/actions"),
        json!({"title": "CANARY-action-title", "owner": "CANARY-action-owner", "tracker": "CANARY-tracker"}),
    )
    .await;
    assert_eq!(action.status, StatusCode::CREATED, "{}", action.body);
    let rid = seeded.resolved["id"].as_str().unwrap();
    let link = post(format!("/v1/incidents/{id}/links"), json!({"kind": "caused_by", "incident": rid})).await;
    assert_eq!(link.status, StatusCode::CREATED, "{}", link.body);
    let pm = post(
        format!("/v1/incidents/{rid}/postmortem"),
        json!({"body": "CANARY-postmortem-body", "public_summary": "Search indexes are now rebuilt in the background.",
            "contributing_factors": ["CANARY-contributing-factor"], "root_cause_category": "security",
            "recurrence_risk": "high", "recurrence_reason": "CANARY-recurrence-reason"}),
    )
    .await;
    assert_eq!(pm.status, StatusCode::CREATED, "{}", pm.body);
    for to in ["in_review", "published"] {
        let res = post(format!("/v1/incidents/{rid}/postmortem/transitions"), json!({"to": to})).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    }
    // The second incident is resolved, so both the open and the closed paths are scanned.
    let canaries = [
        "CANARY-action-title",
        "CANARY-action-owner",
        "CANARY-tracker",
        "CANARY-postmortem-body",
        "CANARY-contributing-factor",
        "CANARY-recurrence-reason",
        "CANARY-api-key-name",
        "CANARY-external-reference",
        "CANARY-commander",
        "CANARY-root-cause",
        "CANARY-label-value",
        "CANARY-label-key",
        "CANARY-acknowledger",
        "CANARY-internal-update",
        "CANARY-internal-transition",
        "4321987",
        "4,321,987",
        "4.321.987",
    ];
    let (summary, _) =
        until(&app, "/api/v2/summary.json", Duration::from_secs(5), |r| r.text().contains("Exports are delayed")).await;
    until(&app, "/api/v2/incidents.json", Duration::from_secs(5), |r| r.text().contains("rebuilt in the background"))
        .await;
    assert!(summary.text().contains("4300000"), "the rounded figure is public");

    // The pages a subscriber's links lead to, with real links (from the queued mail).
    let res = http_client().post(app.url("/status/subscribe")).json(&json!({"email": "c@example.com"})).send().await;
    assert_eq!(res.unwrap().status(), StatusCode::ACCEPTED);
    let db = app.db().await;
    let outbox = db.rows_as_text("mail_outbox").await.join("\n");
    db.close().await;
    let link_to = |what: &str| -> String {
        let marker = format!("/status/subscribe/{what}?token=");
        let start = outbox.find(&marker).unwrap_or_else(|| panic!("no {what} link queued: {outbox}"));
        outbox[start..].split(|c: char| !(c.is_ascii_alphanumeric() || "/?=._-".contains(c))).next().unwrap().into()
    };

    // Every public route the API documents, with every incident and component.
    let spec = app.get("/openapi.json").await.body;
    let mut paths = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(op) = item.get("get") else { continue };
        if !op["tags"].as_array().unwrap().iter().any(|t| t == "public") {
            continue;
        }
        let concrete: Vec<String> = if let Some(what) = path.strip_prefix("/status/subscribe/") {
            vec![link_to(what)]
        } else if path.contains("{reference}") {
            [
                reference.as_str(),
                seeded.active["reference"].as_str().unwrap(),
                seeded.resolved["reference"].as_str().unwrap(),
            ]
            .iter()
            .map(|r| path.replace("{reference}", r))
            .collect()
        } else if path.contains("{id}") {
            [&seeded.checkout, &seeded.api, &seeded.invoices].iter().map(|c| path.replace("{id}", c)).collect()
        } else if path == "/status/history" {
            let month = chrono::Utc::now().format("%Y-%m").to_string();
            vec![path.clone(), format!("{path}?month={month}")]
        } else {
            vec![path.clone()]
        };
        paths.extend(concrete);
    }
    assert!(paths.len() >= 20, "the public routes are documented: {paths:?}");
    let mut scanned = 0;
    for path in &paths {
        for lang in ["en", "de"] {
            let sep = if path.contains('?') { '&' } else { '?' };
            for encoding in ["identity", "gzip"] {
                let res = get(&app, &format!("{path}{sep}lang={lang}"), &[("accept-encoding", encoding)]).await;
                assert_eq!(res.status, StatusCode::OK, "{path}");
                let body = if encoding == "gzip" && res.header("content-encoding") == "gzip" {
                    gunzip(&res.body)
                } else {
                    res.body.clone()
                };
                let text = String::from_utf8_lossy(&body);
                let headers = format!("{:?}", res.headers);
                for canary in canaries {
                    assert!(!text.contains(canary), "{canary} on {path} ({lang}, {encoding})");
                    assert!(!headers.contains(canary), "{canary} in the headers of {path}");
                }
                scanned += 1;
            }
        }
    }
    assert!(scanned >= 80, "{scanned}");
}

// ---------------------------------------------------------------------------------------
// A real browser

#[tokio::test]
async fn the_status_page_works_in_a_real_browser() {
    let app = TestApp::spawn().await;
    let seeded = seed(&app).await;
    // An upcoming maintenance, so that its section is checked too.
    let at = |hours: i64| (chrono::Utc::now() + chrono::Duration::hours(hours)).to_rfc3339();
    let res = app
        .post(
            "/v1/maintenances",
            json!({"title": "Database upgrade", "body": "Writes pause for a minute.", "components": [seeded.checkout],
                "scheduled_for": at(48), "scheduled_until": at(49)}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    // A published postmortem on the resolved incident, so that its section is looked at too.
    let resolved = seeded.resolved["reference"].as_str().unwrap();
    let pm = format!("/v1/incidents/{resolved}/postmortem");
    let res = app
        .post(
            &pm,
            json!({"public_summary": "Search indexes are now rebuilt in the background, a shard at a time, so \
            searches stay fast while one is rebuilt.\n\nWe also alert when a search takes longer than a second.",
            "recurrence_risk": "low", "recurrence_reason": "Tested"}),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    for to in ["in_review", "published"] {
        assert_eq!(app.post(&format!("{pm}/transitions"), json!({"to": to})).await.status, StatusCode::OK);
    }
    settle(&app).await;
    let root = env!("CARGO_MANIFEST_DIR");
    let tools = std::env::var("INCIDENTD_BROWSER_TOOLS").unwrap_or_else(|_| format!("{root}/target/tools/browser"));
    assert!(
        std::path::Path::new(&format!("{tools}/node_modules/playwright-core")).exists(),
        "playwright-core and axe-core are not installed in {tools}: ./scripts/test installs them (npm ci)"
    );
    let shots = format!("{root}/target/screenshots/{:?}", backend()).to_lowercase();
    let reference = seeded.active["reference"].as_str().unwrap();
    let run = tokio::process::Command::new("node")
        .arg(format!("{root}/tests/browser/status.mjs"))
        .args([format!("http://{}", app.http), reference.to_string(), shots.clone(), resolved.to_string()])
        .env("INCIDENTD_BROWSER_TOOLS", &tools)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser run finishes within 4 minutes")
        .expect("node runs (./scripts/test installs Node.js and Debian's chromium)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!("the browser run printed no report: {stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    let checks = report["checks"].as_array().expect("checks");
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c["ok"] != true)
        .map(|c| format!("{}: {}", c["name"].as_str().unwrap_or_default(), c["detail"].as_str().unwrap_or_default()))
        .collect();
    assert!(failed.is_empty(), "in the browser:\n{}", failed.join("\n"));
    assert!(checks.len() >= 15, "{report}");
    assert!(out.status.success());
    for shot in [
        "status-en-light.png",
        "status-en-dark.png",
        "status-375px.png",
        "status-de.png",
        "postmortem-en.png",
        "postmortem-de.png",
        "postmortem-375px.png",
    ] {
        let meta = std::fs::metadata(format!("{shots}/{shot}")).expect("a screenshot");
        assert!(meta.len() > 10_000, "{shot} is {} bytes", meta.len());
    }
}
