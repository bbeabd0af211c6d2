//! The floor: the least an axum + sqlx server does to answer incidentd's reads, for `bench/api`
//! to compare incidentd with (`cargo run --release --example floor -- --help`).
//!
//! * `GET /incidents/{id}`: incidentd's own SELECT of one incident (by id, or by reference
//!   `INC-n`), decoded into a flat struct of the same 33 columns and serialised as JSON;
//! * `GET /incidents?status=…&severity=…&component=…&page_size=…`: incidentd's own filtered
//!   list SELECT (newest first, one row more than the page), decoded and serialised the same way;
//! * `GET /hello`: `Hello, World!`, the floor of `/healthz`.
//!
//! No middleware, no authentication, no tracing, no metrics: everything incidentd does on top
//! of this is what `bench/api` measures. The pool is sqlx's, of incidentd's size (16), without
//! the ping sqlx makes by default when it hands out a connection (incidentd makes one only for
//! a connection idle for over half a second).
//!
//! It prints `floor listening on http://ADDR` on stdout once it accepts connections.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use clap::Parser;
use incidentd::domain::query::IncidentFilter;
use incidentd::domain::{Severity, Status};
use incidentd::store::sql::incidents::{SELECT_INCIDENT_BY_ID, SELECT_INCIDENT_BY_REF, incidents_query};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::types::Json as Jsonb;
use uuid::Uuid;

#[derive(Parser)]
#[command(about = "The floor bench/api compares incidentd with: a minimal axum + sqlx server")]
struct Args {
    /// The Postgres database incidentd serves (seeded).
    #[arg(long, env = "FLOOR_DATABASE_URL")]
    database_url: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Pool size (incidentd's default).
    #[arg(long, default_value_t = 16)]
    max_connections: u32,
}

/// One incident row: the columns incidentd reads, as they come.
#[derive(sqlx::FromRow, Serialize)]
struct Incident {
    id: Uuid,
    reference_number: i64,
    title: String,
    summary: String,
    severity: String,
    status: String,
    impact: String,
    affected_components: Jsonb<Value>,
    affected_customers: Option<i64>,
    eta: Option<DateTime<Utc>>,
    workaround_availability: String,
    workaround_text: Option<String>,
    cause_kind: String,
    cause_provider: Option<String>,
    cause_external_reference: Option<String>,
    commander: Option<String>,
    labels: Jsonb<Value>,
    related_incident_ids: Jsonb<Value>,
    root_cause: Option<String>,
    resolution_summary: Option<String>,
    reopen_count: i32,
    started_at: DateTime<Utc>,
    detected_at: DateTime<Utc>,
    acknowledged_at: Option<DateTime<Utc>>,
    acknowledged_by: Option<String>,
    identified_at: Option<DateTime<Utc>>,
    mitigated_at: Option<DateTime<Utc>>,
    resolved_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    version: i64,
    merged_into: Option<Uuid>,
}

#[derive(Clone)]
struct Floor {
    pool: PgPool,
    by_id: &'static str,
    by_ref: &'static str,
    /// incidentd's list SELECT for a status, a severity and a component, newest first, with
    /// `$1` `$2` `$3` the filters and `$4` the limit.
    list: &'static str,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // No ping when a connection is handed out (sqlx's default makes one): the floor does the
    // least a server can.
    let pool = PgPoolOptions::new()
        .max_connections(args.max_connections)
        .test_before_acquire(false)
        .connect(&args.database_url)
        .await?;
    let filter = IncidentFilter {
        statuses: vec![Status::Resolved],
        severities: vec![Severity::Sev2],
        component_id: Some(Uuid::nil()),
        ..Default::default()
    };
    let list = incidents_query::<sqlx::Postgres>(&filter, None, 1)?.into_string();
    let floor = Floor {
        pool,
        by_id: SELECT_INCIDENT_BY_ID.as_str(),
        by_ref: SELECT_INCIDENT_BY_REF.as_str(),
        list: Box::leak(list.into_boxed_str()),
    };
    let app = Router::new()
        .route("/hello", get(|| async { "Hello, World!" }))
        .route("/incidents/{id}", get(incident))
        .route("/incidents", get(incidents))
        .with_state(floor);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("floor listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

fn server_error(e: sqlx::Error) -> Response {
    (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response()
}

async fn incident(State(floor): State<Floor>, Path(key): Path<String>) -> Response {
    let row = match key.strip_prefix("INC-").map(str::parse::<i64>) {
        Some(Ok(n)) => sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(floor.by_ref)).bind(n),
        Some(Err(_)) => return StatusCode::NOT_FOUND.into_response(),
        None => match key.parse::<Uuid>() {
            Ok(id) => sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(floor.by_id)).bind(id),
            Err(_) => return StatusCode::NOT_FOUND.into_response(),
        },
    };
    match row.fetch_optional(&floor.pool).await {
        Ok(Some(incident)) => Json(incident).into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => server_error(e),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    status: String,
    severity: String,
    component: Uuid,
    page_size: i64,
}

#[derive(Serialize)]
struct Page {
    incidents: Vec<Incident>,
    next_page_token: Option<String>,
}

async fn incidents(State(floor): State<Floor>, Query(q): Query<ListQuery>) -> Response {
    let rows = sqlx::query_as::<_, Incident>(sqlx::AssertSqlSafe(floor.list))
        .bind(vec![q.status])
        .bind(vec![q.severity])
        .bind(q.component)
        .bind(q.page_size + 1)
        .fetch_all(&floor.pool)
        .await;
    match rows {
        Ok(mut incidents) => {
            let more = incidents.len() as i64 > q.page_size;
            incidents.truncate(q.page_size as usize);
            let next_page_token = more.then(|| incidents.last().map(|i| i.id.to_string())).flatten();
            Json(Page { incidents, next_page_token }).into_response()
        }
        Err(e) => server_error(e),
    }
}
