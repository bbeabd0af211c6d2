//! Customer subscriptions from the status page, without a key: `POST /status/subscribe`
//! (JSON, or the page's form), and the pages the links in the mails lead to (confirm,
//! unsubscribe, manage: choosing components; the one-click unsubscribe of RFC 8058 is a POST
//! to the same link). Answers are
//! never cached; requests to subscribe are limited per client address.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::Public;
use super::html::Renderer;
use super::i18n::Lang;
use super::serve::{PageQuery, language, starting};
use crate::api::rest::extract::parse_json;
use crate::api::rest::problem::ApiError;
use crate::domain::Error;
use crate::domain::subscriber::{LinkProblem, LinkPurpose, Subscriber, link_problem};
use crate::service::{Service, SubscribeRequest};

/// The largest subscribe request read.
const MAX_BODY: usize = 16 * 1024;

/// A request to subscribe an address. Only `email` is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeIn {
    #[schema(value_type = String, required = true, max_length = 254, example = "jane@example.com")]
    pub email: Option<String>,
    /// Only incidents and maintenance affecting these components (ids); every component when
    /// absent or empty.
    #[serde(default)]
    pub components: Vec<Uuid>,
    /// The language of the mails: `en` (default) or `de`.
    pub lang: Option<String>,
}

/// The answer to every valid request, whether or not the address was subscribed already.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscribeAccepted {
    pub message: &'static str,
}

/// A link's token.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkQuery {
    /// The token from the mail's link.
    pub token: Option<String>,
    /// `en` or `de`; by default the subscriber's language.
    pub lang: Option<String>,
}

/// An HTML answer that is never cached.
fn page(public: &Public, status: StatusCode, body: String) -> Response {
    let mut res = (status, body).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CONTENT_SECURITY_POLICY, public.csp.clone());
    res
}

/// Renders a subscription page in `lang`.
fn render(
    public: &Public,
    lang: Lang,
    status: StatusCode,
    draw: impl FnOnce(&Renderer) -> askama::Result<String>,
) -> Response {
    let Some(snapshot) = public.current() else { return starting() };
    let renderer = Renderer { settings: &public.settings, state: &snapshot.state, lang };
    match draw(&renderer) {
        Ok(body) => page(public, status, body),
        Err(e) => ApiError(Error::Internal(e.to_string())).into_response(),
    }
}

fn lang_of(s: &Subscriber) -> Lang {
    Lang::parse(&s.lang).unwrap_or(Lang::En)
}

/// The language of a link's page: `?lang=`, else the subscriber's.
fn link_lang(query: &LinkQuery, subscriber: &Subscriber) -> Lang {
    query.lang.as_deref().and_then(Lang::parse).unwrap_or_else(|| lang_of(subscriber))
}

/// The page for a link that does not work (bad, expired, or its subscriber gone).
fn link_failed(public: &Public, query: &LinkQuery, headers: &HeaderMap, error: Error) -> Response {
    let (lang, _) = language(public, &PageQuery { lang: query.lang.clone() }, headers);
    let Some(problem) = link_problem(&error) else { return ApiError(error).into_response() };
    render(public, lang, StatusCode::BAD_REQUEST, |r| {
        let t = r.lang.strings();
        let message = match problem {
            LinkProblem::Invalid => t.link_invalid,
            LinkProblem::Expired => t.link_expired,
            LinkProblem::Cancelled => t.link_cancelled,
        };
        r.subscription("/status", t.link_invalid_heading, vec![message.to_string()], None)
    })
}

/// The page a link leads to: drawn for the subscriber it names (in its language unless the
/// link says otherwise), or the page for a link that does not work.
fn link_page(
    public: &Public,
    query: &LinkQuery,
    headers: &HeaderMap,
    result: Result<Subscriber, Error>,
    draw: impl FnOnce(&Renderer, &Subscriber) -> askama::Result<String>,
) -> Response {
    match result {
        Ok(s) => render(public, link_lang(query, &s), StatusCode::OK, |r| draw(r, &s)),
        Err(e) => link_failed(public, query, headers, e),
    }
}

#[utoipa::path(post, path = "/status/subscribe", tag = "public",
    request_body(content = SubscribeIn, description = "JSON, or the same fields as an HTML form (`application/x-www-form-urlencoded`, `components` repeated)"),
    responses(
        (status = 202, description = "Accepted: if the address can be subscribed, a mail with a confirmation link is on its way (the same answer whatever the address's state)", body = SubscribeAccepted),
        (status = 200, description = "A form was posted: the same, as a page", content_type = "text/html"),
        (status = 400, description = "Invalid request: `errors` names each bad field"),
        (status = 413, description = "The request is too large"),
        (status = 404, description = "This deployment sends no email (INCIDENTD_SMTP_URL is not set): `code` is `not_configured`"),
        (status = 429, description = "Too many requests from this address; see Retry-After")))]
async fn subscribe(
    Extension(public): Extension<Arc<Public>>,
    State(service): State<Service>,
    request: Request,
) -> Response {
    if let Some(retry_after) = public.subscribe_limited(&request) {
        return ApiError(Error::RateLimited { retry_after }).into_response();
    }
    let headers = request.headers().clone();
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let body: Bytes = match axum::body::to_bytes(request.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return crate::api::rest::problem::problem(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request is larger than 16 KiB",
            );
        }
    };
    let input = if form { Ok(from_form(&body)) } else { parse_json::<SubscribeIn>(&body) };
    let result = match input {
        Ok(SubscribeIn { email, components, lang }) => {
            service.subscribe(SubscribeRequest { email, components, lang }).await
        }
        Err(e) => Err(e),
    };
    match (result, form) {
        (Ok(()), false) => (StatusCode::ACCEPTED, axum::Json(SubscribeAccepted { message: ACCEPTED })).into_response(),
        (Err(e), false) => ApiError(e).into_response(),
        (outcome, true) => {
            let (lang, _) = language(&public, &PageQuery::default(), &headers);
            let ok = outcome.is_ok();
            render(&public, lang, if ok { StatusCode::OK } else { StatusCode::BAD_REQUEST }, |r| {
                let t = r.lang.strings();
                let text = match &outcome {
                    Ok(()) => t.subscribe_sent.to_string(),
                    Err(e) => form_error(e),
                };
                r.subscription("/status", t.subscribe_heading, vec![text], None)
            })
        }
    }
}

/// What a page says about a refused form: each bad field's message.
fn form_error(e: &Error) -> String {
    match e {
        Error::Validation(v) => v.iter().map(|f| format!("{}: {}", f.field, f.message)).collect::<Vec<_>>().join(" "),
        e => e.to_string(),
    }
}

const ACCEPTED: &str = "If the address can be subscribed, a mail with a link to confirm is on its way; nothing \
                        else is sent until it is followed.";

/// The page's form: `email`, `lang`, and `components` once per chosen component. A bad
/// component id is kept out (the form only offers real ones).
fn from_form(body: &[u8]) -> SubscribeIn {
    let mut input = SubscribeIn::default();
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "email" => input.email = Some(v.into_owned()),
            "lang" => input.lang = Some(v.into_owned()),
            "components" => input.components.extend(Uuid::parse_str(&v).ok()),
            _ => {}
        }
    }
    input
}

#[utoipa::path(get, path = "/status/subscribe/confirm", tag = "public", params(LinkQuery),
    responses((status = 200, description = "Confirmed: the subscription is active (HTML)", content_type = "text/html"),
        (status = 400, description = "The link is not valid or has expired (HTML)", content_type = "text/html")))]
async fn confirm(
    Extension(public): Extension<Arc<Public>>,
    State(service): State<Service>,
    Query(query): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let result = service.confirm_subscriber(query.token.as_deref().unwrap_or_default()).await;
    link_page(&public, &query, &headers, result, |r, _| {
        let t = r.lang.strings();
        r.subscription("/status", t.subscribed_heading, vec![t.subscribed_text.to_string()], None)
    })
}

#[utoipa::path(get, path = "/status/subscribe/unsubscribe", tag = "public", params(LinkQuery),
    responses((status = 200, description = "Asks to confirm with a button (a POST to the same link): mail scanners that follow links unsubscribe nobody (HTML)", content_type = "text/html"),
        (status = 400, description = "The link is not valid (HTML)", content_type = "text/html")))]
async fn unsubscribe_page(
    Extension(public): Extension<Arc<Public>>,
    State(service): State<Service>,
    Query(query): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let token = query.token.clone().unwrap_or_default();
    let result = service.subscriber_for_link(LinkPurpose::Unsubscribe, &token).await;
    link_page(&public, &query, &headers, result, |r, _| {
        let t = r.lang.strings();
        let action = format!("/status/subscribe/unsubscribe?token={token}");
        r.subscription(
            "/status",
            t.unsubscribe_heading,
            vec![t.unsubscribe_question.to_string()],
            Some((t.unsubscribe_heading, action)),
        )
    })
}

#[utoipa::path(post, path = "/status/subscribe/unsubscribe", tag = "public", params(LinkQuery),
    request_body(content = String, description = "Ignored: RFC 8058's `List-Unsubscribe=One-Click`, or the page's empty form", content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Unsubscribed (HTML); again: the same", content_type = "text/html"),
        (status = 400, description = "The link is not valid (HTML)", content_type = "text/html")))]
async fn unsubscribe(
    Extension(public): Extension<Arc<Public>>,
    State(service): State<Service>,
    Query(query): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let result = service.unsubscribe_subscriber(query.token.as_deref().unwrap_or_default()).await;
    link_page(&public, &query, &headers, result, |r, _| {
        let t = r.lang.strings();
        r.subscription("/status", t.unsubscribe_heading, vec![t.unsubscribed_text.to_string()], None)
    })
}

#[utoipa::path(get, path = "/status/subscribe/manage", tag = "public", params(LinkQuery),
    responses((status = 200, description = "The components the subscription is for, as a form that changes them (a POST to the same link) (HTML)", content_type = "text/html"),
        (status = 400, description = "The link is not valid, or the subscription has ended (HTML)", content_type = "text/html")))]
async fn manage_page(
    Extension(public): Extension<Arc<Public>>,
    State(service): State<Service>,
    Query(query): Query<LinkQuery>,
    headers: HeaderMap,
) -> Response {
    let token = query.token.clone().unwrap_or_default();
    let result = service.subscriber_to_manage(&token).await;
    link_page(&public, &query, &headers, result, |r, s| {
        r.manage(format!("/status/subscribe/manage?token={token}"), &s.components, false)
    })
}

#[utoipa::path(post, path = "/status/subscribe/manage", tag = "public", params(LinkQuery),
    request_body(content = String, description = "The page's form: `components` once per chosen component id; none chosen: every component", content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Saved: the page again, with the new choice (HTML)", content_type = "text/html"),
        (status = 400, description = "The link is not valid, the subscription has ended, or a component is unknown (HTML)", content_type = "text/html")))]
async fn manage(
    Extension(public): Extension<Arc<Public>>,
    State(service): State<Service>,
    Query(query): Query<LinkQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = query.token.clone().unwrap_or_default();
    let components = from_form(&body).components;
    match service.choose_components(&token, components).await {
        Err(e) if link_problem(&e).is_none() => {
            let (lang, _) = language(&public, &PageQuery { lang: query.lang.clone() }, &headers);
            render(&public, lang, StatusCode::BAD_REQUEST, |r| {
                let t = r.lang.strings();
                r.subscription("/status", t.manage_heading, vec![form_error(&e)], None)
            })
        }
        result => link_page(&public, &query, &headers, result, |r, s| {
            r.manage(format!("/status/subscribe/manage?token={token}"), &s.components, true)
        }),
    }
}

/// The routes of this module.
pub fn routes() -> utoipa_axum::router::OpenApiRouter<Service> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(super::own_405(routes!(subscribe)))
        .routes(super::own_405(routes!(confirm)))
        .routes(super::own_405(routes!(unsubscribe_page, unsubscribe)))
        .routes(super::own_405(routes!(manage_page, manage)))
}
