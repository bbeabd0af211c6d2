//! `/v1/integrations` (scope admin), the alerts lists, and the Alertmanager and Grafana
//! webhook receivers (authenticated by the integration's own secret).

use std::collections::BTreeMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{
    Admin, Authorized, JsonBody, RawBody, ReadIncidents, from_value, if_match, incident_key, not_null, nullable, paged,
    parse_json, path_id,
};
use super::problem::ApiError;
use super::{created, tagged};
use crate::domain::alert::{Alert, AlertSignal, AlertStatus, contains_nul, label_fingerprint};
use crate::domain::integration::{Grouping, Integration, IntegrationKind, IntegrationPatch, LabelRule, NewIntegration};
use crate::domain::validate::Violations;
use crate::domain::{Error, Severity};
use crate::service::{GroupOutcome, IntegrationWithSecret, Service};

/// An integration to create. `name` and `kind` are required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationIn {
    #[schema(value_type = String, required = true, min_length = 1, max_length = 100)]
    pub name: Option<String>,
    #[schema(value_type = IntegrationKind, required = true)]
    pub kind: Option<IntegrationKind>,
    /// The severity of an incident that no rule and no `severity` label decides (default sev3).
    pub default_severity: Option<Severity>,
    /// Label rules, at most 50: the first matching rule naming a severity decides it; every
    /// matching rule adds its components.
    #[serde(default)]
    pub rules: Vec<LabelRule>,
    /// `group_key` (default: one incident per Alertmanager/Grafana group) or `fingerprint`
    /// (one per alert). PagerDuty events always group by `dedup_key`.
    pub grouping: Option<Grouping>,
    /// Resolve the incident once every alert of its group has cleared (default true).
    pub auto_resolve: Option<bool>,
}

/// A JSON merge patch of an integration (`kind` and the secret do not change this way).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntegrationPatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Severity, required = false)]
    pub default_severity: Option<Option<Severity>>,
    /// `null` empties it.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<LabelRule>>)]
    pub rules: Option<Option<Vec<LabelRule>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Grouping, required = false)]
    pub grouping: Option<Option<Grouping>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool, required = false)]
    pub auto_resolve: Option<Option<bool>>,
}

/// An integration as served, with the URL its sender posts to.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationOut {
    #[serde(flatten)]
    pub integration: Integration,
    /// Where the sender posts: `…/v1/integrations/{id}/alertmanager`, `…/grafana`, or
    /// `…/v2/enqueue` (PagerDuty Events API v2), below `INCIDENTD_PUBLIC_URL`.
    pub receiver_url: String,
}

/// An integration with its secret, shown once (on create and rotate): the bearer token
/// (Alertmanager, Grafana) or the `routing_key` (PagerDuty Events API v2).
#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationWithSecretOut {
    #[serde(flatten)]
    pub integration: IntegrationOut,
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntegrationList {
    pub integrations: Vec<IntegrationOut>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<Alert>,
    /// Absent on the last page.
    pub next_page_token: Option<String>,
}

/// Paging.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

fn out(service: &Service, integration: Integration) -> IntegrationOut {
    let receiver_url = format!("{}{}", service.public_url(), integration.receiver_path());
    IntegrationOut { integration, receiver_url }
}

fn with_secret(service: &Service, value: IntegrationWithSecret) -> IntegrationWithSecretOut {
    IntegrationWithSecretOut { integration: out(service, value.integration), secret: value.secret }
}

#[utoipa::path(
    post, path = "/v1/integrations", tag = "integrations",
    request_body = IntegrationIn,
    responses(
        (status = 201, description = "Created; `secret` is shown this once", body = IntegrationWithSecretOut, headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn create_integration(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    JsonBody(body): JsonBody<IntegrationIn>,
) -> Result<Response, ApiError> {
    let IntegrationIn { name, kind, default_severity, rules, grouping, auto_resolve } = body;
    let input = NewIntegration { name, kind, default_severity, rules, grouping, auto_resolve };
    let created_ = service.create_integration(&caller, input).await?;
    let value = with_secret(&service, created_.value);
    let location = format!("/v1/integrations/{}", value.integration.integration.id);
    let etag = value.integration.integration.etag();
    Ok(created(location, &etag, false, &value))
}

#[utoipa::path(
    get, path = "/v1/integrations", tag = "integrations",
    params(PageParams),
    responses(
        (status = 200, description = "Integrations, newest first", body = IntegrationList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    )
)]
pub async fn list_integrations(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<IntegrationList>, ApiError> {
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_integrations(&caller, page).await?;
    let integrations = page.items.into_iter().map(|i| out(&service, i)).collect();
    Ok(axum::Json(IntegrationList { integrations, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    get, path = "/v1/integrations/{id}", tag = "integrations",
    params(("id" = uuid::Uuid, Path, description = "Integration id")),
    responses(
        (status = 200, description = "OK", body = IntegrationOut, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn get_integration(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let integration = service.get_integration(&caller, path_id(&id)?).await?;
    let etag = integration.etag();
    Ok(tagged(StatusCode::OK, &etag, out(&service, integration)))
}

#[utoipa::path(
    patch, path = "/v1/integrations/{id}", tag = "integrations",
    request_body(content = IntegrationPatchIn, content_type = "application/merge-patch+json"),
    params(
        ("id" = uuid::Uuid, Path, description = "Integration id"),
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches; otherwise 412"),
    ),
    responses(
        (status = 200, description = "OK", body = IntegrationOut, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn patch_integration(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<IntegrationPatchIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&id)?;
    let IntegrationPatchIn { name, default_severity, rules, grouping, auto_resolve } = body;
    let mut v = Violations::new();
    let patch = IntegrationPatch {
        name: not_null(&mut v, "name", name),
        default_severity: not_null(&mut v, "default_severity", default_severity),
        rules: rules.map(Option::unwrap_or_default),
        grouping: not_null(&mut v, "grouping", grouping),
        auto_resolve: not_null(&mut v, "auto_resolve", auto_resolve),
    };
    v.finish()?;
    let integration = service.update_integration(&caller, id, patch, if_match(&headers)?.as_deref()).await?;
    let etag = integration.etag();
    Ok(tagged(StatusCode::OK, &etag, out(&service, integration)))
}

#[utoipa::path(
    delete, path = "/v1/integrations/{id}", tag = "integrations",
    params(
        ("id" = uuid::Uuid, Path, description = "Integration id"),
        ("If-Match" = Option<String>, Header, description = "Delete only if the ETag still matches; otherwise 412"),
    ),
    responses(
        (status = 204, description = "Deleted: its secret stops working; the alerts it received stay on their incidents"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 412, description = "The ETag no longer matches"),
    )
)]
pub async fn delete_integration(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    service.delete_integration(&caller, path_id(&id)?, if_match(&headers)?.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    post, path = "/v1/integrations/{id}/rotate-secret", tag = "integrations",
    params(("id" = uuid::Uuid, Path, description = "Integration id")),
    responses(
        (status = 200, description = "A new secret, shown this once; the old one stops working at once", body = IntegrationWithSecretOut),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn rotate_integration_secret(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let value = service.rotate_integration_secret(&caller, path_id(&id)?).await?;
    let value = with_secret(&service, value);
    let etag = value.integration.integration.etag();
    Ok(tagged(StatusCode::OK, &etag, value))
}

#[utoipa::path(
    get, path = "/v1/integrations/{id}/alerts", tag = "integrations",
    params(("id" = uuid::Uuid, Path, description = "Integration id"), PageParams),
    responses(
        (status = 200, description = "The alerts it received, newest first", body = AlertList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn list_integration_alerts(
    Authorized(caller, ..): Authorized<Admin>,
    State(service): State<Service>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<AlertList>, ApiError> {
    let id = path_id(&id)?;
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_integration_alerts(&caller, id, page).await?;
    Ok(axum::Json(AlertList { alerts: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(
    get, path = "/v1/incidents/{id}/alerts", tag = "incidents",
    params(("id" = String, Path, description = "Incident id or reference (INC-42)"), PageParams),
    responses(
        (status = 200, description = "The alerts that opened or joined the incident, newest first", body = AlertList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    )
)]
pub async fn list_incident_alerts(
    Authorized(caller, ..): Authorized<ReadIncidents>,
    State(service): State<Service>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<axum::Json<AlertList>, ApiError> {
    let key = incident_key(&id)?;
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_incident_alerts(&caller, key, page).await?;
    Ok(axum::Json(AlertList { alerts: page.items, next_page_token: page.next_page_token }))
}

// ---- the Alertmanager and Grafana receivers ----

/// `firing` or `resolved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WebhookAlertStatus {
    Firing,
    Resolved,
}

/// One alert of a webhook notification. Other fields (Grafana's `values`, `silenceURL`,
/// `dashboardURL`, `panelURL`, `imageURL`, …) are accepted and kept with the alert.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookAlert {
    pub status: WebhookAlertStatus,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: Option<DateTime<Utc>>,
    #[serde(rename = "endsAt")]
    pub ends_at: Option<DateTime<Utc>>,
    #[serde(rename = "generatorURL")]
    pub generator_url: Option<String>,
    /// Computed from the labels when absent.
    pub fingerprint: Option<String>,
    /// Grafana: the panel or dashboard the alert belongs to.
    #[serde(rename = "panelURL")]
    pub panel_url: Option<String>,
    #[serde(rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
}

/// Alertmanager's webhook payload (version 4); Grafana's webhook contact point sends the
/// same with extra fields (`title`, `message`, `orgId`, `state`, …), accepted too.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WebhookPayload {
    pub version: Option<String>,
    #[serde(rename = "groupKey")]
    pub group_key: Option<String>,
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: Option<u64>,
    pub status: WebhookAlertStatus,
    pub receiver: Option<String>,
    #[serde(rename = "groupLabels", default)]
    pub group_labels: BTreeMap<String, String>,
    #[serde(rename = "commonLabels", default)]
    pub common_labels: BTreeMap<String, String>,
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: BTreeMap<String, String>,
    #[serde(rename = "externalURL")]
    pub external_url: Option<String>,
    pub alerts: Vec<WebhookAlert>,
    /// Grafana: the notification's title and message.
    pub title: Option<String>,
    pub message: Option<String>,
}

/// What a delivery did, per group.
#[derive(Debug, Serialize, ToSchema)]
pub struct IngestedOut {
    pub groups: Vec<GroupOut>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupOut {
    pub dedup_key: String,
    /// The incident its alerts joined or opened; absent when none (only cleared alerts of a
    /// group no open incident has).
    pub incident_id: Option<uuid::Uuid>,
    pub opened: bool,
    pub resolved: bool,
}

impl From<GroupOutcome> for GroupOut {
    fn from(g: GroupOutcome) -> Self {
        GroupOut { dedup_key: g.dedup_key, incident_id: g.incident_id, opened: g.opened, resolved: g.resolved }
    }
}

/// Alertmanager writes `0001-01-01T00:00:00Z` for "no end".
fn real_time(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    t.filter(|t| t.year() >= 1970)
}

fn non_blank(s: Option<&String>) -> Option<String> {
    s.map(|s| s.trim()).filter(|s| !s.is_empty()).map(str::to_string)
}

/// Reads a webhook notification into alert signals, each with its raw JSON.
pub fn webhook_signals(bytes: &[u8]) -> Result<Vec<AlertSignal>, Error> {
    let raw: serde_json::Value = parse_json(bytes)?;
    if contains_nul(&raw) {
        return Err(Error::invalid("body", "must not contain NUL characters (\\u0000)"));
    }
    let payload: WebhookPayload = from_value(&raw)?;
    if payload.alerts.is_empty() {
        return Err(Error::invalid("alerts", "must hold at least one alert"));
    }
    let mut v = Violations::new();
    if let Some(k) = &payload.group_key {
        v.text("groupKey", k, 4096);
    }
    let signals = payload
        .alerts
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let labels: BTreeMap<String, String> =
                payload.common_labels.iter().chain(&a.labels).map(|(k, v)| (k.clone(), v.clone())).collect();
            let annotation = |name: &str| non_blank(a.annotations.get(name).or(payload.common_annotations.get(name)));
            let title = annotation("summary")
                .or_else(|| non_blank(labels.get("alertname")))
                .or_else(|| non_blank(payload.title.as_ref()))
                .unwrap_or_else(|| "Alert".to_string());
            if let Some(f) = &a.fingerprint {
                v.text(&format!("alerts[{i}].fingerprint"), f, 255);
            }
            AlertSignal {
                group_key: payload.group_key.clone(),
                fingerprint: a
                    .fingerprint
                    .clone()
                    .filter(|f| !f.is_empty())
                    .unwrap_or_else(|| label_fingerprint(&a.labels)),
                status: match a.status {
                    WebhookAlertStatus::Firing => AlertStatus::Firing,
                    WebhookAlertStatus::Resolved => AlertStatus::Resolved,
                },
                title,
                description: annotation("description").or_else(|| annotation("message")),
                labels,
                starts_at: real_time(a.starts_at),
                ends_at: real_time(a.ends_at),
                source_url: non_blank(a.generator_url.as_ref())
                    .or_else(|| non_blank(a.panel_url.as_ref()))
                    .or_else(|| non_blank(a.dashboard_url.as_ref())),
                payload: raw["alerts"][i].clone(),
            }
        })
        .collect();
    v.finish()?;
    Ok(signals)
}

async fn receive(
    service: Service,
    kind: IntegrationKind,
    id: &str,
    headers: &HeaderMap,
    bytes: &[u8],
) -> Result<Response, ApiError> {
    let id = path_id(id)?;
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let integration = service.authenticate_integration(id, kind, authorization).await?;
    let signals = webhook_signals(bytes)?;
    let outcomes = service.ingest_alerts(&integration, signals).await?;
    let body = IngestedOut { groups: outcomes.into_iter().map(GroupOut::from).collect() };
    Ok((StatusCode::OK, axum::Json(body)).into_response())
}

#[utoipa::path(
    post, path = "/v1/integrations/{id}/alertmanager", tag = "integrations",
    request_body = WebhookPayload,
    params(("id" = uuid::Uuid, Path, description = "Integration id (kind alertmanager)")),
    security(("integration_secret" = [])),
    responses(
        (status = 200, description = "Taken in: what each group opened, joined or resolved", body = IngestedOut),
        (status = 400, description = "Not an Alertmanager webhook payload: `errors` names each bad field"),
        (status = 401, description = "Missing or wrong integration secret (or no such integration)"),
        (status = 404, description = "The integration is of another kind"),
        (status = 429, description = "Rate limit exceeded; see Retry-After"),
    )
)]
pub async fn receive_alertmanager(
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    receive(service, IntegrationKind::Alertmanager, &id, &headers, &bytes).await
}

#[utoipa::path(
    post, path = "/v1/integrations/{id}/grafana", tag = "integrations",
    request_body = WebhookPayload,
    params(("id" = uuid::Uuid, Path, description = "Integration id (kind grafana)")),
    security(("integration_secret" = [])),
    responses(
        (status = 200, description = "Taken in: what each group opened, joined or resolved", body = IngestedOut),
        (status = 400, description = "Not a Grafana webhook payload: `errors` names each bad field"),
        (status = 401, description = "Missing or wrong integration secret (or no such integration)"),
        (status = 404, description = "The integration is of another kind"),
        (status = 429, description = "Rate limit exceeded; see Retry-After"),
    )
)]
pub async fn receive_grafana(
    State(service): State<Service>,
    Path(id): Path<String>,
    headers: HeaderMap,
    RawBody(bytes): RawBody,
) -> Result<Response, ApiError> {
    receive(service, IntegrationKind::Grafana, &id, &headers, &bytes).await
}
