//! Serving a snapshot's documents: conditional requests, the encoding, the language, and
//! pages rendered on demand.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::i18n::Lang;
use super::snapshot::{Doc, HTML, Snapshot, page_key};
use super::{Public, html};
use crate::api::rest::problem::{ApiError, problem};
use crate::config::LanguageSetting;
use crate::domain::Error;

/// Which encoding to send: brotli, then gzip, then none, as `Accept-Encoding` allows.
pub(super) fn encoding(headers: &HeaderMap) -> Option<&'static str> {
    let accept = headers.get(header::ACCEPT_ENCODING).and_then(|v| v.to_str().ok())?;
    let q = |name: &str| -> Option<f32> {
        accept.split(',').find_map(|part| {
            let mut pieces = part.split(';');
            let coding = pieces.next()?.trim();
            if !coding.eq_ignore_ascii_case(name) && coding != "*" {
                return None;
            }
            Some(pieces.find_map(|p| p.trim().strip_prefix("q=")).and_then(|q| q.trim().parse().ok()).unwrap_or(1.0))
        })
    };
    ["br", "gzip"].into_iter().find(|c| q(c).is_some_and(|q| q > 0.0))
}

/// Serves a document: 304 when the client's tag matches, else the best encoding.
pub(super) fn serve(
    public: &Public,
    doc: &Doc,
    headers: &HeaderMap,
    vary_language: Option<Lang>,
    status: StatusCode,
) -> Response {
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == doc.etag || t.trim() == "*"));
    let chosen = encoding(headers);
    let mut res = if matches && status == StatusCode::OK {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let body = match chosen {
            Some("br") => doc.br.clone(),
            Some(_) => doc.gzip.clone(),
            None => doc.identity.clone(),
        };
        let mut res = (status, body).into_response();
        if let Some(coding) = chosen {
            res.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding));
        }
        res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(doc.content_type));
        res
    };
    let h = res.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, public.cache_control.clone());
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    match vary_language {
        Some(lang) => {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding, Accept-Language"));
            h.insert(header::CONTENT_LANGUAGE, HeaderValue::from_static(lang.tag()));
        }
        None => {
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        }
    }
    if doc.content_type == HTML {
        h.insert(header::CONTENT_SECURITY_POLICY, public.csp.clone());
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    }
    res
}

pub(super) fn starting() -> Response {
    let mut res =
        problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the status page is being prepared; retry shortly");
    res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    res
}

/// Serves the document at `key` of the current snapshot.
pub(super) fn serve_key(public: &Public, key: &str, headers: &HeaderMap) -> Response {
    match public.current() {
        None => starting(),
        Some(snapshot) => match snapshot.get(key) {
            Some(doc) => serve(public, doc, headers, None, StatusCode::OK),
            None => problem(StatusCode::NOT_FOUND, "not_found", "no such document"),
        },
    }
}

/// The language of a page: `?lang=`, else the setting, else `Accept-Language`. The second
/// value says whether it was negotiated (the response then varies by `Accept-Language`).
pub(super) fn language(public: &Public, query: &PageQuery, headers: &HeaderMap) -> (Lang, bool) {
    if let Some(lang) = query.lang.as_deref().and_then(Lang::parse) {
        return (lang, false);
    }
    match public.settings.language {
        LanguageSetting::En => (Lang::En, false),
        LanguageSetting::De => (Lang::De, false),
        LanguageSetting::Auto => {
            (Lang::negotiate(headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())), true)
        }
    }
}

/// A page's query: other parameters (`utm_source` and such) are ignored.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// `en` or `de`; by default the setting, else the reader's Accept-Language.
    pub lang: Option<String>,
}

/// The history's query.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `en` or `de`.
    pub lang: Option<String>,
    /// `YYYY-MM`: that month's incidents; by default the last 90 days.
    pub month: Option<String>,
}

pub(super) fn serve_page(public: &Public, path: &str, query: &PageQuery, headers: &HeaderMap) -> Response {
    let (lang, negotiated) = language(public, query, headers);
    match public.current() {
        None => starting(),
        Some(snapshot) => match snapshot.get(&page_key(path, lang)) {
            Some(doc) => serve(public, doc, headers, negotiated.then_some(lang), StatusCode::OK),
            None => problem(StatusCode::NOT_FOUND, "not_found", "no such page"),
        },
    }
}

/// Serves a page the snapshot does not hold rendered: from the cache of this snapshot's
/// generation, else from what `read` reads, rendered by `render`, then cached until the next
/// rebuild.
pub(super) async fn on_demand<T>(
    public: &Public,
    snapshot: &Snapshot,
    path: &str,
    (lang, negotiated): (Lang, bool),
    headers: &HeaderMap,
    read: impl std::future::Future<Output = crate::domain::Result<T>>,
    render: impl FnOnce(&html::Renderer, T) -> askama::Result<String>,
) -> Response {
    let key = page_key(path, lang);
    let vary = negotiated.then_some(lang);
    if let Some(doc) = public.cold_get(snapshot.generation, &key) {
        return serve(public, &doc, headers, vary, StatusCode::OK);
    }
    let data = match read.await {
        Ok(data) => data,
        Err(e) => return ApiError(e).into_response(),
    };
    let renderer = html::Renderer { settings: &public.settings, state: &snapshot.state, lang };
    match render(&renderer, data) {
        Ok(body) => {
            let doc = Doc::new(HTML, body.into_bytes(), None);
            public.cold_put(snapshot.generation, key, doc.clone());
            serve(public, &doc, headers, vary, StatusCode::OK)
        }
        Err(e) => ApiError(Error::Internal(e.to_string())).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn brotli_is_preferred_then_gzip_and_q0_refuses() {
        assert_eq!(encoding(&accept("gzip, deflate, br")), Some("br"));
        assert_eq!(encoding(&accept("gzip")), Some("gzip"));
        assert_eq!(encoding(&accept("br;q=0, gzip;q=0.5")), Some("gzip"));
        assert_eq!(encoding(&accept("*")), Some("br"));
        assert_eq!(encoding(&accept("identity")), None);
        assert_eq!(encoding(&HeaderMap::new()), None);
    }
}
