//! `GET /v1/stats`: the numbers over time.

use axum::extract::{RawQuery, State};

use super::extract::{Authorized, QueryParams, ReadIncidents};
use super::problem::ApiError;
use crate::domain::stats::Stats;
use crate::domain::validate::Violations;
use crate::service::Service;

/// The window.
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StatsParams {
    /// The start (RFC 3339); default 30 days before `to`, at most 3,660 days before it.
    from: Option<chrono::DateTime<chrono::Utc>>,
    /// The end, exclusive (RFC 3339); default now.
    to: Option<chrono::DateTime<chrono::Utc>>,
}

#[utoipa::path(
    get, path = "/v1/stats", tag = "stats",
    params(StatsParams),
    responses(
        (status = 200, description = "MTTA (declared → first acknowledgement) and MTTR (declared → resolved) as mean, p50 and p90, \
            overall, by severity, by component and by month; counts by cause kind, third-party provider and root-cause category; \
            the reopen rate; the follow-up actions open and overdue. Of the incidents declared in the window, merged duplicates left out.",
            body = Stats),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn get_stats(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<Stats>, ApiError> {
    let q = QueryParams::parse(query.as_deref(), &["from", "to"])?;
    let mut v = Violations::new();
    let (from, to) = (q.time(&mut v, "from"), q.time(&mut v, "to"));
    v.finish()?;
    Ok(axum::Json(service.stats(&caller, from, to).await?))
}
