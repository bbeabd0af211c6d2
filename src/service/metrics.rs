//! Prometheus metrics: what the transports and the dispatcher count as they go, and what is
//! read from the database when `/metrics` is scraped (open incidents, the delivery outbox,
//! the connection pool). One registry per service, so two services in one process (tests)
//! do not mix their figures.

use std::time::Duration;

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::domain::{Incident, Result, Status};
use crate::store::Observed;

/// Request latency buckets, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Time-to-acknowledge and time-to-resolve buckets, in seconds: 1 minute to 1 week.
const INCIDENT_BUCKETS: &[f64] =
    &[60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0, 604800.0];

/// An incident's acknowledgement and resolution times, taken before a change.
#[derive(Debug, Clone, Copy)]
pub(super) struct Milestones {
    acknowledged_at: Option<chrono::DateTime<chrono::Utc>>,
    resolved_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Milestones {
    pub(super) fn of(incident: &Incident) -> Self {
        Milestones { acknowledged_at: incident.acknowledged_at, resolved_at: incident.resolved_at }
    }
}

pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    grpc_requests: IntCounterVec,
    grpc_duration: HistogramVec,
    deliveries: IntCounterVec,
    attempt_duration: HistogramVec,
    time_to_acknowledge: Histogram,
    time_to_resolve: Histogram,
    open_incidents: IntGaugeVec,
    outbox_depth: IntGaugeVec,
    outbox_oldest_age: Gauge,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    database_up: IntGauge,
    status_rebuild: HistogramVec,
    status_documents: IntGauge,
    pruned: IntCounterVec,
    requests_shed: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    registry.register(Box::new(c.clone())).expect("metric registered once");
    c
}

fn histogram(registry: &Registry, name: &str, help: &str, labels: &[&str], buckets: &[f64]) -> HistogramVec {
    let h =
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels).expect("valid histogram");
    registry.register(Box::new(h.clone())).expect("metric registered once");
    h
}

fn gauges(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid gauge");
    registry.register(Box::new(g.clone())).expect("metric registered once");
    g
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new_custom(Some("incidentd".into()), None).expect("valid registry prefix");
        let incident_histogram = |name: &str, help: &str| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(INCIDENT_BUCKETS.to_vec()))
                .expect("valid histogram");
            r.register(Box::new(h.clone())).expect("metric registered once");
            h
        };
        let outbox_oldest_age = Gauge::new(
            "deliveries_oldest_pending_age_seconds",
            "Age of the oldest delivery waiting to be sent to an active subscription (0 when none waits)",
        )
        .expect("valid gauge");
        r.register(Box::new(outbox_oldest_age.clone())).expect("metric registered once");
        Metrics {
            http_requests: counter(&r, "http_requests_total", "REST requests answered", &["method", "route", "status"]),
            http_duration: histogram(
                &r,
                "http_request_duration_seconds",
                "REST request latency, until the response head is sent",
                &["method", "route", "status"],
                LATENCY_BUCKETS,
            ),
            grpc_requests: counter(&r, "grpc_requests_total", "gRPC calls answered", &["method", "code"]),
            requests_shed: counter(
                &r,
                "requests_shed_total",
                "Requests refused at once because the process had its limit of requests in flight",
                &["transport"],
            ),
            grpc_duration: histogram(
                &r,
                "grpc_request_duration_seconds",
                "gRPC call latency, until the response head is sent",
                &["method", "code"],
                LATENCY_BUCKETS,
            ),
            deliveries: counter(
                &r,
                "delivery_attempts_total",
                "Notification delivery attempts by channel and outcome (delivered, retry_scheduled, failed)",
                &["channel", "outcome"],
            ),
            attempt_duration: histogram(
                &r,
                "delivery_attempt_duration_seconds",
                "How long one delivery attempt took (connect, send, response)",
                &["channel"],
                LATENCY_BUCKETS,
            ),
            time_to_acknowledge: incident_histogram(
                "incident_time_to_acknowledge_seconds",
                "From an incident's start to its acknowledgement (MTTA is sum / count), observed by this process",
            ),
            time_to_resolve: incident_histogram(
                "incident_time_to_resolve_seconds",
                "From an incident's start to its resolution (MTTR is sum / count), observed by this process",
            ),
            open_incidents: gauges(
                &r,
                "incidents_open",
                "Open incidents by severity and status",
                &["severity", "status"],
            ),
            outbox_depth: gauges(
                &r,
                "deliveries_pending",
                "Deliveries waiting or being sent, by whether their subscription is active or paused",
                &["subscription"],
            ),
            outbox_oldest_age,
            pool_connections: gauges(
                &r,
                "db_pool_connections",
                "Database connections by state: in_use, idle, and waiting (tasks waiting for a connection)",
                &["state"],
            ),
            pool_max: gauge(&r, "db_pool_max_connections", "The connection pool's size limit"),
            database_up: gauge(&r, "database_up", "1 when the scrape could read the database, else 0"),
            status_rebuild: histogram(
                &r,
                "status_snapshot_rebuild_duration_seconds",
                "Rebuilds of the public status snapshot (read, render, compress), by outcome (ok, failed)",
                &["outcome"],
                LATENCY_BUCKETS,
            ),
            status_documents: gauge(&r, "status_snapshot_documents", "Documents the public status snapshot serves"),
            pruned: counter(
                &r,
                "retention_pruned_rows_total",
                "Rows deleted by retention, by table (deliveries, delivery_attempts, events, alerts, audit_events, \
                 idempotency_keys)",
                &["table"],
            ),
            registry: r,
        }
    }

    /// A rebuild of the public status snapshot: how long it took and, when it succeeded, how
    /// many documents it serves.
    pub fn observe_status_rebuild(&self, elapsed: Duration, documents: Option<usize>) {
        let outcome = if documents.is_some() { "ok" } else { "failed" };
        self.status_rebuild.with_label_values(&[outcome]).observe(elapsed.as_secs_f64());
        if let Some(n) = documents {
            self.status_documents.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    pub fn observe_http(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.http_requests.with_label_values(&labels).inc();
        self.http_duration.with_label_values(&labels).observe(elapsed.as_secs_f64());
    }

    /// A request refused by admission control (`transport`: `http` or `grpc`).
    pub fn observe_shed(&self, transport: &str) {
        self.requests_shed.with_label_values(&[transport]).inc();
    }

    pub fn observe_grpc(&self, method: &str, code: &str, elapsed: Duration) {
        self.grpc_requests.with_label_values(&[method, code]).inc();
        self.grpc_duration.with_label_values(&[method, code]).observe(elapsed.as_secs_f64());
    }

    pub(super) fn observe_attempt(&self, channel: &str, elapsed: Duration) {
        self.attempt_duration.with_label_values(&[channel]).observe(elapsed.as_secs_f64());
    }

    /// Rows retention deleted from `table`.
    pub(super) fn count_pruned(&self, table: &str, rows: u64) {
        self.pruned.with_label_values(&[table]).inc_by(rows);
    }

    pub(super) fn count_outcome(&self, channel: &str, outcome: &str) {
        self.deliveries.with_label_values(&[channel, outcome]).inc();
    }

    /// Observes time-to-acknowledge and time-to-resolve when a change set them (`before`: the
    /// incident's acknowledged and resolved times before the change).
    pub(super) fn observe_milestones(&self, before: Milestones, after: &Incident) {
        let seconds =
            |at: chrono::DateTime<chrono::Utc>| (at - after.started_at).num_milliseconds().max(0) as f64 / 1e3;
        if before.acknowledged_at.is_none()
            && let Some(at) = after.acknowledged_at
        {
            self.time_to_acknowledge.observe(seconds(at));
        }
        if before.resolved_at.is_none()
            && let Some(at) = after.resolved_at
        {
            self.time_to_resolve.observe(seconds(at));
        }
    }

    /// The text exposition, with the database-backed gauges set from `observed` (`Err`: the
    /// database could not be read; those gauges keep their last values and `database_up` is 0).
    pub(super) fn render(&self, observed: Result<Observed>) -> String {
        match observed {
            Ok(o) => {
                self.database_up.set(1);
                self.open_incidents.reset();
                for status in Status::OPEN {
                    for severity in crate::domain::Severity::ALL {
                        self.open_incidents.with_label_values(&[severity.as_str(), status.as_str()]).set(0);
                    }
                }
                for (severity, status, n) in &o.open_incidents {
                    self.open_incidents.with_label_values(&[severity.as_str(), status.as_str()]).set(*n);
                }
                self.outbox_depth.with_label_values(&["active"]).set(o.pending_active);
                self.outbox_depth.with_label_values(&["paused"]).set(o.pending_paused);
                let age = o.oldest_pending.map(|at| (crate::domain::now() - at).num_milliseconds().max(0) as f64 / 1e3);
                self.outbox_oldest_age.set(age.unwrap_or(0.0));
                self.pool_connections.with_label_values(&["in_use"]).set(o.pool.in_use);
                self.pool_connections.with_label_values(&["idle"]).set(o.pool.idle);
                self.pool_connections.with_label_values(&["waiting"]).set(o.pool.waiting);
                self.pool_max.set(o.pool.max);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: could not read the database");
                self.database_up.set(0);
            }
        }
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
