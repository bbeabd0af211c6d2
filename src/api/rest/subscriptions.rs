//! `/v1/subscriptions` and `/v1/deliveries` (scope `subscriptions:manage`).

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{Authorized, JsonBody, ManageSubscriptions, if_match, nullable, paged, path_id};
use super::problem::ApiError;
use super::tagged;
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::{NewSubscription, SubscriptionPatch};
use crate::domain::validate::Violations;
use crate::domain::{Channel, Delivery, DeliveryAttempt, EventType, Severity, Subscription};
use crate::service::{Service, SubscriptionWithSecret, delivery_status};

type Manage = Authorized<ManageSubscriptions>;

/// A new subscription.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionIn {
    #[schema(value_type = Channel, required = true)]
    pub channel: Option<Channel>,
    /// An http(s) URL (webhook, slack, teams) or an email address.
    #[schema(value_type = String, required = true)]
    pub target: Option<String>,
    /// Only these event types; every type when empty.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    /// Only incident events at least this severe.
    pub min_severity: Option<Severity>,
    /// Only events about these components.
    #[serde(default)]
    pub component_ids: Vec<Uuid>,
    /// Send internal events and details too. Default false: public only.
    #[serde(default)]
    pub include_internal: bool,
}

/// A JSON merge patch of a subscription.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionPatchIn {
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = String, required = false)]
    pub target: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<EventType>>)]
    pub event_types: Option<Option<Vec<EventType>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Severity>)]
    pub min_severity: Option<Option<Severity>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Vec<Uuid>>)]
    pub component_ids: Option<Option<Vec<Uuid>>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool, required = false)]
    pub include_internal: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = bool, required = false)]
    pub paused: Option<Option<bool>>,
}

/// A subscription, with its signing secret when just created or rotated.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionOut {
    #[serde(flatten)]
    pub subscription: Subscription,
    /// The webhook signing secret (`whsec_…`): only in the responses that create or rotate it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl From<SubscriptionWithSecret> for SubscriptionOut {
    fn from(s: SubscriptionWithSecret) -> Self {
        SubscriptionOut { subscription: s.subscription, secret: s.secret }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<Subscription>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    pub attempts: Vec<DeliveryAttempt>,
    pub next_page_token: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Requeued {
    /// How many dead-lettered deliveries were queued again.
    pub requeued: u64,
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

/// Paging and a status filter.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DeliveryParams {
    /// Only deliveries in this status.
    status: Option<crate::domain::DeliveryStatus>,
    /// 1-500, default 50.
    page_size: Option<u32>,
    /// `next_page_token` of the previous page.
    page_token: Option<String>,
}

#[utoipa::path(post, path = "/v1/subscriptions", tag = "subscriptions", request_body = SubscriptionIn,
    responses(
        (status = 201, description = "Created; webhooks get their signing secret, this once", body = SubscriptionOut,
            headers(("Location" = String), ("ETag" = String))),
        (status = 400, description = "Invalid request (a refused target names `target`)"),
    ))]
pub async fn create_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    JsonBody(body): JsonBody<SubscriptionIn>,
) -> Result<Response, ApiError> {
    let input = NewSubscription {
        channel: body.channel,
        target: body.target,
        event_types: body.event_types,
        min_severity: body.min_severity,
        component_ids: body.component_ids,
        include_internal: body.include_internal,
    };
    let created = service.create_subscription(&caller, input).await?.value;
    let location = format!("/v1/subscriptions/{}", created.subscription.id);
    let etag = created.subscription.etag();
    let mut res = tagged(StatusCode::CREATED, &etag, SubscriptionOut::from(created));
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[utoipa::path(get, path = "/v1/subscriptions", tag = "subscriptions", params(PageParams),
    responses(
        (status = 200, description = "Subscriptions, newest first", body = SubscriptionList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
    ))]
pub async fn list_subscriptions(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    RawQuery(query): RawQuery,
) -> Result<Json<SubscriptionList>, ApiError> {
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_subscriptions(&caller, page).await?;
    Ok(Json(SubscriptionList { subscriptions: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "OK", body = Subscription, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn get_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let s = service.get_subscription(&caller, path_id(&raw)?).await?;
    Ok(tagged(StatusCode::OK, &s.etag(), &s))
}

#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    request_body(content = SubscriptionPatchIn, content_type = "application/merge-patch+json"),
    params(("id" = Uuid, Path, description = "Subscription id"),
        ("If-Match" = Option<String>, Header, description = "Apply only if the ETag still matches; otherwise 412")),
    responses(
        (status = 200, description = "OK", body = Subscription, headers(("ETag" = String))),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 412, description = "The ETag no longer matches"),
    ))]
pub async fn patch_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<SubscriptionPatchIn>,
) -> Result<Response, ApiError> {
    let id = path_id(&raw)?;
    let mut v = Violations::new();
    let mut required = |field: &str, value: Option<Option<bool>>| match value {
        Some(None) => {
            v.add(field, "cannot be null");
            None
        }
        other => other.flatten(),
    };
    let include_internal = required("include_internal", body.include_internal);
    let paused = required("paused", body.paused);
    if body.target == Some(None) {
        v.add("target", "cannot be null");
    }
    v.finish()?;
    let patch = SubscriptionPatch {
        target: body.target.flatten(),
        event_types: body.event_types.map(Option::unwrap_or_default),
        min_severity: body.min_severity,
        component_ids: body.component_ids.map(Option::unwrap_or_default),
        include_internal,
        paused,
    };
    let s = service.update_subscription(&caller, id, patch, if_match(&headers)?.as_deref()).await?;
    Ok(tagged(StatusCode::OK, &s.etag(), &s))
}

#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 204, description = "Deleted, with its deliveries and log"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn delete_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<StatusCode, ApiError> {
    service.delete_subscription(&caller, path_id(&raw)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    service: &Service,
    caller: &crate::domain::Caller,
    raw: &str,
    paused: bool,
) -> Result<Response, ApiError> {
    let patch = SubscriptionPatch { paused: Some(paused), ..Default::default() };
    let s = service.update_subscription(caller, path_id(raw)?, patch, None).await?;
    Ok(tagged(StatusCode::OK, &s.etag(), &s))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/pause", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "Paused: deliveries wait until it resumes", body = Subscription),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn pause_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&service, &caller, &raw, true).await
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/resume", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "Resumed: waiting deliveries go out", body = Subscription),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn resume_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    set_paused(&service, &caller, &raw, false).await
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/rotate-secret", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "A new secret; the old one keeps signing for the grace period", body = SubscriptionOut),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Not a webhook subscription"),
    ))]
pub async fn rotate_secret(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    let rotated = service.rotate_secret(&caller, path_id(&raw)?).await?;
    let mut res = Json(SubscriptionOut::from(rotated)).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/test", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "A subscription.test event was sent now; how it went", body = DeliveryAttempt),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn test_subscription(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Json<DeliveryAttempt>, ApiError> {
    Ok(Json(service.test_subscription(&caller, path_id(&raw)?).await?))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}/deliveries", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id"), DeliveryParams),
    responses(
        (status = 200, description = "Deliveries, newest first", body = DeliveryList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn list_deliveries(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<DeliveryList>, ApiError> {
    let id = path_id(&raw)?;
    let (q, page) = paged(query.as_deref(), &["status"])?;
    let mut v = Violations::new();
    let status = q.one("status").and_then(|s| delivery_status(&mut v, "status", s));
    v.finish()?;
    let page = service.list_deliveries(&caller, id, status, page).await?;
    Ok(Json(DeliveryList { deliveries: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(get, path = "/v1/subscriptions/{id}/attempts", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id"), PageParams),
    responses(
        (status = 200, description = "The delivery log: every attempt, newest first", body = AttemptList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn list_subscription_attempts(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AttemptList>, ApiError> {
    let id = path_id(&raw)?;
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_attempts(&caller, AttemptsOf::Subscription(id), page).await?;
    Ok(Json(AttemptList { attempts: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(post, path = "/v1/subscriptions/{id}/retry-failed", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Subscription id")),
    responses(
        (status = 200, description = "Every dead-lettered delivery is queued again", body = Requeued),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn retry_failed(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Json<Requeued>, ApiError> {
    Ok(Json(Requeued { requeued: service.retry_failed_deliveries(&caller, path_id(&raw)?).await? }))
}

#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "OK", body = Delivery),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn get_delivery(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(service.get_delivery(&caller, path_id(&raw)?).await?))
}

#[utoipa::path(get, path = "/v1/deliveries/{id}/attempts", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Delivery id"), PageParams),
    responses(
        (status = 200, description = "The delivery's attempts, newest first", body = AttemptList),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
    ))]
pub async fn list_delivery_attempts(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<AttemptList>, ApiError> {
    let id = path_id(&raw)?;
    let (_, page) = paged(query.as_deref(), &[])?;
    let page = service.list_attempts(&caller, AttemptsOf::Delivery(id), page).await?;
    Ok(Json(AttemptList { attempts: page.items, next_page_token: page.next_page_token }))
}

#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "subscriptions",
    params(("id" = Uuid, Path, description = "Delivery id")),
    responses(
        (status = 200, description = "Queued again with a fresh retry schedule", body = Delivery),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 404, description = "No such resource"),
        (status = 409, description = "Already pending or being sent"),
    ))]
pub async fn retry_delivery(
    Authorized(caller, ..): Manage,
    State(service): State<Service>,
    Path(raw): Path<String>,
) -> Result<Json<Delivery>, ApiError> {
    Ok(Json(service.retry_delivery(&caller, path_id(&raw)?).await?))
}
