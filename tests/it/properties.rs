//! A property test of the incident lifecycle: random sequences of operations through the
//! real REST API (declare with affected components, transitions allowed and forbidden,
//! acknowledge, post updates with and without a status, patch with a right or a stale
//! `If-Match`, set a component's status) against a simple model, checking after every step:
//!
//! - the milestones (`acknowledged_at`, `identified_at`, `mitigated_at`, `resolved_at`,
//!   `closed_at`) are stamped when their step happens and only then, first-time stamps never
//!   move, none is before `created_at` or after `updated_at`, and time never runs backwards;
//! - `reopen_count` counts the reopenings;
//! - each component's effective status is the worst status the open incidents affecting it
//!   impose, else its manual status;
//! - exactly one event per change: one about the incident for each change to it (an update
//!   posted is one too), one about a component for each move of its effective status, none
//!   for a refused or empty operation;
//! - the `ETag` (the version) goes up by one on every change of the incident and stays on
//!   a refused one or a timeline update that changes nothing of the incident.
//!
//! One application per test; each case declares fresh incidents and components. Cases:
//! `PROPTEST_CASES` (default 24), up to 20 operations each; `PROPTEST_RNG_SEED` fixes the seed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Res, STATUSES, TestApp, allowed};

const COMPONENTS: usize = 3;
const MAX_INCIDENTS: usize = 3;
const IMPOSED: [&str; 4] = ["under_maintenance", "degraded_performance", "partial_outage", "major_outage"];
const MANUAL: [&str; 5] =
    ["operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage"];
const SEVERITIES: [&str; 4] = ["sev1", "sev2", "sev3", "sev4"];

/// One operation; indexes pick an incident or component of the case (modulo how many exist).
#[derive(Debug, Clone)]
enum Op {
    Declare { status: usize, components: Vec<(usize, usize)> },
    Transition { incident: usize, to: usize },
    Acknowledge { incident: usize },
    PostUpdate { incident: usize, to: Option<usize> },
    Patch { incident: usize, stale: bool, severity: usize, components: Option<Vec<(usize, usize)>> },
    SetComponentStatus { component: usize, status: usize },
}

fn affected() -> impl Strategy<Value = Vec<(usize, usize)>> {
    proptest::collection::vec((0..COMPONENTS, 0..IMPOSED.len()), 0..=COMPONENTS)
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..3usize, affected()).prop_map(|(status, components)| Op::Declare { status, components }),
        5 => (0..MAX_INCIDENTS, 0..STATUSES.len()).prop_map(|(incident, to)| Op::Transition { incident, to }),
        2 => (0..MAX_INCIDENTS).prop_map(|incident| Op::Acknowledge { incident }),
        2 => (0..MAX_INCIDENTS, proptest::option::of(0..STATUSES.len()))
            .prop_map(|(incident, to)| Op::PostUpdate { incident, to }),
        3 => (0..MAX_INCIDENTS, any::<bool>(), 0..SEVERITIES.len(), proptest::option::of(affected())).prop_map(
            |(incident, stale, severity, components)| Op::Patch { incident, stale, severity, components }
        ),
        2 => (0..COMPONENTS, 0..MANUAL.len())
            .prop_map(|(component, status)| Op::SetComponentStatus { component, status }),
    ]
}

/// What the model knows of an incident.
#[derive(Debug, Clone)]
struct ModelIncident {
    id: String,
    status: &'static str,
    severity: &'static str,
    version: i64,
    reopen_count: i64,
    acknowledged: bool,
    /// Component index → imposed status (the last entry for a component wins on the wire
    /// only if the service allows duplicates; the generator avoids them, see `dedup`).
    components: BTreeMap<usize, &'static str>,
    events: usize,
    /// The incident as last read.
    last: Value,
}

struct ModelComponent {
    id: String,
    manual: &'static str,
    events: usize,
}

fn rank(s: &str) -> usize {
    MANUAL.iter().position(|m| *m == s).expect("a component status")
}

fn is_open(s: &str) -> bool {
    matches!(s, "investigating" | "identified" | "monitoring")
}

/// One entry per component (the first), as a list of `(component, imposed status)`.
fn dedup(list: &[(usize, usize)]) -> BTreeMap<usize, &'static str> {
    let mut out = BTreeMap::new();
    for &(c, s) in list {
        out.entry(c).or_insert(IMPOSED[s]);
    }
    out
}

fn components_json(components: &[ModelComponent], list: &BTreeMap<usize, &'static str>) -> Value {
    Value::Array(list.iter().map(|(c, s)| json!({"component_id": components[*c].id, "status": s})).collect())
}

struct Case<'a> {
    app: &'a TestApp,
    incidents: Vec<ModelIncident>,
    components: Vec<ModelComponent>,
    log: Vec<String>,
}

fn time(v: &Value, field: &str) -> Option<DateTime<Utc>> {
    v.get(field)
        .and_then(Value::as_str)
        .map(|s| DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{field} {s:?}: {e}")).with_timezone(&Utc))
}

macro_rules! check {
    ($case:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(TestCaseError::fail(format!(
                "{}\n  after: {}",
                format!($($fmt)+),
                $case.log.join("\n         ")
            )));
        }
    };
}

impl Case<'_> {
    /// The effective status the model expects of component `c`.
    fn effective(&self, c: usize) -> &'static str {
        self.incidents
            .iter()
            .filter(|i| is_open(i.status))
            .filter_map(|i| i.components.get(&c).copied())
            .max_by_key(|s| rank(s))
            .unwrap_or(self.components[c].manual)
    }

    fn effective_all(&self) -> Vec<&'static str> {
        (0..self.components.len()).map(|c| self.effective(c)).collect()
    }

    async fn event_count(&self, subject: &str) -> usize {
        self.app.service.sequence_all().await.expect("sequencing works");
        let res = self.app.get(&format!("/v1/events?subject={subject}&page_size=500")).await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.body);
        res.body["events"].as_array().expect("events").len()
    }

    async fn send(&self, method: Method, path: &str, body: Value, if_match: Option<String>) -> Res {
        let mut req = self.app.client.request(method, self.app.url(path)).json(&body);
        if let Some(tag) = if_match {
            req = req.header("If-Match", tag);
        }
        self.app.send(req).await
    }

    /// Runs one operation, updating the model with what must have happened.
    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let effective_before = self.effective_all();
        // The incident (index) whose version the operation must bump (or not).
        let mut changed: Option<usize> = None;
        // Whether the operation records an incident event, changed or not (an update posted).
        let mut event_for: Option<usize> = None;
        match op {
            Op::Declare { status, components } => {
                if self.incidents.len() == MAX_INCIDENTS {
                    return Ok(());
                }
                let status = ["investigating", "identified", "monitoring"][*status];
                let list = dedup(components);
                let body = json!({
                    "title": format!("Property {}", self.incidents.len()),
                    "severity": "sev2",
                    "status": status,
                    "affected_components": components_json(&self.components, &list),
                });
                let res = self.app.post("/v1/incidents", body).await;
                check!(self, res.status == StatusCode::CREATED, "declare: {} {}", res.status, res.body);
                check!(
                    self,
                    res.header("etag") == Some("\"1\""),
                    "a new incident's ETag is \"1\": {:?}",
                    res.header("etag")
                );
                self.incidents.push(ModelIncident {
                    id: res.body["id"].as_str().expect("id").to_string(),
                    status,
                    severity: "sev2",
                    version: 1,
                    reopen_count: 0,
                    acknowledged: false,
                    components: list,
                    events: 1,
                    last: Value::Null,
                });
                let i = self.incidents.len() - 1;
                self.check_timestamps_fresh(i, &res.body)?;
            }
            Op::Transition { incident, to } => {
                let Some(i) = self.pick(*incident) else { return Ok(()) };
                let to = STATUSES[*to];
                let from = self.incidents[i].status;
                let path = format!("/v1/incidents/{}/transitions", self.incidents[i].id);
                let res = self.send(Method::POST, &path, json!({"to": to}), None).await;
                if allowed(from, to) {
                    check!(self, res.status == StatusCode::OK, "{from} -> {to} allowed: {} {}", res.status, res.body);
                    self.moved(i, to);
                    changed = Some(i);
                    event_for = Some(i);
                } else {
                    check!(
                        self,
                        res.status == StatusCode::CONFLICT,
                        "{from} -> {to} refused: {} {}",
                        res.status,
                        res.body
                    );
                }
            }
            Op::Acknowledge { incident } => {
                let Some(i) = self.pick(*incident) else { return Ok(()) };
                let path = format!("/v1/incidents/{}/acknowledge", self.incidents[i].id);
                let res = self.send(Method::POST, &path, json!({}), None).await;
                let m = &self.incidents[i];
                if m.acknowledged {
                    check!(self, res.status == StatusCode::OK, "acknowledge again: {} {}", res.status, res.body);
                } else if is_open(m.status) {
                    check!(self, res.status == StatusCode::OK, "acknowledge: {} {}", res.status, res.body);
                    self.incidents[i].acknowledged = true;
                    changed = Some(i);
                    event_for = Some(i);
                } else {
                    check!(
                        self,
                        res.status == StatusCode::CONFLICT,
                        "acknowledge {}: {} {}",
                        m.status,
                        res.status,
                        res.body
                    );
                }
            }
            Op::PostUpdate { incident, to } => {
                let Some(i) = self.pick(*incident) else { return Ok(()) };
                let to = to.map(|t| STATUSES[t]);
                let from = self.incidents[i].status;
                let path = format!("/v1/incidents/{}/updates", self.incidents[i].id);
                let mut body = json!({"body": "Still looking", "visibility": "public"});
                if let Some(to) = to {
                    body["status"] = json!(to);
                }
                let res = self.send(Method::POST, &path, body, None).await;
                match to {
                    Some(to) if !allowed(from, to) => {
                        check!(
                            self,
                            res.status == StatusCode::CONFLICT,
                            "update {from} -> {to}: {} {}",
                            res.status,
                            res.body
                        );
                    }
                    _ => {
                        check!(self, res.status == StatusCode::CREATED, "update: {} {}", res.status, res.body);
                        event_for = Some(i);
                        if let Some(to) = to {
                            self.moved(i, to);
                            changed = Some(i);
                        }
                    }
                }
            }
            Op::Patch { incident, stale, severity, components } => {
                let Some(i) = self.pick(*incident) else { return Ok(()) };
                let m = &self.incidents[i];
                let tag = if *stale { format!("\"{}\"", m.version + 1) } else { format!("\"{}\"", m.version) };
                let severity = SEVERITIES[*severity];
                let mut body = json!({"severity": severity});
                let list = components.as_ref().map(|c| dedup(c));
                if let Some(list) = &list {
                    body["affected_components"] = components_json(&self.components, list);
                }
                let path = format!("/v1/incidents/{}", m.id);
                let res = self.send(Method::PATCH, &path, body, Some(tag)).await;
                if *stale {
                    check!(
                        self,
                        res.status == StatusCode::PRECONDITION_FAILED,
                        "stale If-Match: {} {}",
                        res.status,
                        res.body
                    );
                } else {
                    check!(self, res.status == StatusCode::OK, "patch: {} {}", res.status, res.body);
                    let differs = severity != m.severity || list.as_ref().is_some_and(|l| *l != m.components);
                    let m = &mut self.incidents[i];
                    m.severity = severity;
                    if let Some(list) = list {
                        m.components = list;
                    }
                    if differs {
                        changed = Some(i);
                        event_for = Some(i);
                    }
                }
            }
            Op::SetComponentStatus { component, status } => {
                let c = &self.components[*component];
                let status = MANUAL[*status];
                let res = self.app.patch(&format!("/v1/components/{}", c.id), json!({"status": status})).await;
                check!(self, res.status == StatusCode::OK, "component status: {} {}", res.status, res.body);
                self.components[*component].manual = status;
            }
        }
        if let Some(i) = changed {
            self.incidents[i].version += 1;
        }
        if let Some(i) = event_for {
            self.incidents[i].events += 1;
        }
        let effective_after = self.effective_all();
        for (c, (before, after)) in effective_before.iter().zip(&effective_after).enumerate() {
            if before != after {
                self.components[c].events += 1;
            }
        }
        self.check(changed).await
    }

    /// An existing incident for an index, if the case has declared any.
    fn pick(&self, index: usize) -> Option<usize> {
        (!self.incidents.is_empty()).then(|| index % self.incidents.len())
    }

    fn moved(&mut self, i: usize, to: &str) {
        let m = &mut self.incidents[i];
        if m.status == "resolved" && is_open(to) {
            m.reopen_count += 1;
        }
        m.status = STATUSES.iter().find(|s| **s == to).expect("a status");
    }

    fn check_timestamps_fresh(&self, i: usize, body: &Value) -> Result<(), TestCaseError> {
        let m = &self.incidents[i];
        let created = time(body, "created_at");
        check!(self, created.is_some(), "created_at is set: {body}");
        check!(self, time(body, "updated_at") == created, "a new incident was updated when created: {body}");
        check!(
            self,
            time(body, "identified_at").is_some() == (m.status == "identified"),
            "identified_at at declaration: {body}"
        );
        check!(
            self,
            time(body, "mitigated_at").is_some() == (m.status == "monitoring"),
            "mitigated_at at declaration: {body}"
        );
        for f in ["acknowledged_at", "resolved_at", "closed_at"] {
            check!(self, time(body, f).is_none(), "{f} is not set at declaration: {body}");
        }
        Ok(())
    }

    /// Reads everything back and checks every invariant against the model and the previous
    /// reading. `changed` is the incident the operation changed, if any.
    async fn check(&mut self, changed: Option<usize>) -> Result<(), TestCaseError> {
        for i in 0..self.incidents.len() {
            let res = self.app.get(&format!("/v1/incidents/{}", self.incidents[i].id)).await;
            check!(self, res.status == StatusCode::OK, "read back: {} {}", res.status, res.body);
            let (now, m) = (&res.body, &self.incidents[i]);
            let prev = &m.last;
            let expected_tag = format!("\"{}\"", m.version);
            check!(
                self,
                res.header("etag") == Some(expected_tag.as_str()),
                "{}: ETag {:?}, expected {expected_tag}",
                m.id,
                res.header("etag")
            );
            check!(
                self,
                now["version"] == json!(m.version),
                "{}: version {} (model {})",
                m.id,
                now["version"],
                m.version
            );
            check!(self, now["status"] == json!(m.status), "{}: status {} (model {})", m.id, now["status"], m.status);
            check!(
                self,
                now["reopen_count"] == json!(m.reopen_count),
                "{}: reopen_count {} (model {})",
                m.id,
                now["reopen_count"],
                m.reopen_count
            );
            check!(self, now["severity"] == json!(m.severity), "{}: severity {}", m.id, now["severity"]);
            let created = time(now, "created_at").expect("created_at");
            let updated = time(now, "updated_at").expect("updated_at");
            let stamps = ["acknowledged_at", "identified_at", "mitigated_at", "resolved_at", "closed_at"];
            for f in stamps {
                if let Some(t) = time(now, f) {
                    check!(
                        self,
                        created <= t && t <= updated,
                        "{}: {f} {t} outside created_at {created} .. updated_at {updated}",
                        m.id
                    );
                }
            }
            check!(
                self,
                time(now, "acknowledged_at").is_some() == m.acknowledged,
                "{}: acknowledged_at {}",
                m.id,
                now["acknowledged_at"]
            );
            let resolved = matches!(m.status, "resolved" | "closed");
            check!(
                self,
                time(now, "resolved_at").is_some() == resolved,
                "{}: resolved_at {} while {}",
                m.id,
                now["resolved_at"],
                m.status
            );
            check!(
                self,
                time(now, "closed_at").is_some() == (m.status == "closed"),
                "{}: closed_at {} while {}",
                m.id,
                now["closed_at"],
                m.status
            );
            if let (Some(r), Some(c)) = (time(now, "resolved_at"), time(now, "closed_at")) {
                check!(self, r <= c, "{}: resolved_at {r} after closed_at {c}", m.id);
            }
            if m.status == "identified" {
                check!(self, time(now, "identified_at").is_some(), "{}: identified without identified_at", m.id);
            }
            if m.status == "monitoring" {
                check!(self, time(now, "mitigated_at").is_some(), "{}: monitoring without mitigated_at", m.id);
            }
            if !prev.is_null() {
                check!(self, time(prev, "created_at") == Some(created), "{}: created_at moved", m.id);
                let prev_updated = time(prev, "updated_at").expect("updated_at");
                if changed == Some(i) {
                    check!(
                        self,
                        updated >= prev_updated,
                        "{}: updated_at went back from {prev_updated} to {updated}",
                        m.id
                    );
                } else {
                    check!(self, updated == prev_updated, "{}: updated_at moved without a change", m.id);
                }
                // First-time stamps never move once set.
                for f in ["acknowledged_at", "identified_at", "mitigated_at", "closed_at"] {
                    if let Some(t) = time(prev, f) {
                        check!(self, time(now, f) == Some(t), "{}: {f} moved from {t} to {}", m.id, now[f]);
                    }
                }
                // resolved_at is the latest resolution: it moves only forward, and only when
                // this operation changed the incident.
                if let (Some(a), Some(b)) = (time(prev, "resolved_at"), time(now, "resolved_at")) {
                    check!(self, b >= a, "{}: resolved_at went back from {a} to {b}", m.id);
                    if changed != Some(i) {
                        check!(self, a == b, "{}: resolved_at moved without a change", m.id);
                    }
                }
                if changed != Some(i) {
                    for f in stamps {
                        check!(
                            self,
                            prev[f] == now[f],
                            "{}: {f} changed from {} to {} without a change",
                            m.id,
                            prev[f],
                            now[f]
                        );
                    }
                }
            }
            let events = self.event_count(&self.incidents[i].id).await;
            check!(
                self,
                events == self.incidents[i].events,
                "{}: {events} events about it, expected {}",
                self.incidents[i].id,
                self.incidents[i].events
            );
            self.incidents[i].last = res.body;
        }
        for c in 0..self.components.len() {
            let res = self.app.get(&format!("/v1/components/{}", self.components[c].id)).await;
            check!(self, res.status == StatusCode::OK, "component: {} {}", res.status, res.body);
            let expected = self.effective(c);
            check!(
                self,
                res.body["status"] == json!(self.components[c].manual),
                "component {c}: manual status {}",
                res.body["status"]
            );
            check!(
                self,
                res.body["effective_status"] == json!(expected),
                "component {c}: effective status {}, expected {expected}",
                res.body["effective_status"]
            );
            let events = self.event_count(&self.components[c].id).await;
            check!(
                self,
                events == self.components[c].events,
                "component {c}: {events} status events, expected {}",
                self.components[c].events
            );
        }
        Ok(())
    }
}

async fn run_case(app: &TestApp, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut components = Vec::new();
    for n in 0..COMPONENTS {
        let c = app.create_component(&format!("Property {} {n}", uuid::Uuid::now_v7().simple())).await;
        components.push(ModelComponent {
            id: c["id"].as_str().expect("id").to_string(),
            manual: "operational",
            events: 0,
        });
    }
    let mut case = Case { app, incidents: Vec::new(), components, log: Vec::new() };
    for op in &ops {
        case.log.push(format!("{op:?}"));
        case.apply(op).await?;
    }
    Ok(())
}

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(24);
    // No regression files: a failure prints its shrunk sequence; PROPTEST_RNG_SEED replays a run.
    Config { cases, failure_persistence: None, max_shrink_iters: 200, ..Config::default() }
}

#[test]
fn lifecycle_sequences_keep_every_invariant() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let app = rt.block_on(TestApp::spawn());
    let mut runner = TestRunner::new(config());
    let strategy = proptest::collection::vec(op(), 1..=20);
    let result = runner.run(&strategy, |ops| rt.block_on(run_case(&app, ops)));
    drop(app);
    if let Err(e) = result {
        panic!("{e}");
    }
}
