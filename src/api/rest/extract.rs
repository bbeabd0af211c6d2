//! Request parsing that names the offending field: the authenticated caller (checked for the
//! route's permission before the body is read), strict JSON bodies, query strings, path ids
//! and the conditional/idempotency headers.

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::problem::{ApiError, problem};
use crate::domain::validate::Violations;
use crate::domain::{Caller, Error, FieldViolation, IdempotencyKey, IncidentKey, PageRequest, Permission};
use crate::service::Service;

/// A permission as a type, for [`Authorized`].
pub trait Needs: Send + Sync + 'static {
    const PERMISSION: Permission;
}

macro_rules! needs {
    ($($name:ident => $perm:ident),+ $(,)?) => {
        $(
            #[doc = concat!("Routes that need `Permission::", stringify!($perm), "`.")]
            pub struct $name;
            impl Needs for $name {
                const PERMISSION: Permission = Permission::$perm;
            }
        )+
    };
}

needs! {
    ReadIncidents => ReadIncidents,
    WriteIncidents => WriteIncidents,
    ReadComponents => ReadComponents,
    WriteComponents => WriteComponents,
    ReadMaintenance => ReadMaintenance,
    WriteMaintenance => WriteMaintenance,
    ManageSubscriptions => ManageSubscriptions,
    Admin => Admin,
}

/// The authenticated caller, known to hold `P`.
pub struct Authorized<P: Needs>(pub Caller, pub PhantomData<P>);

impl<P: Needs> FromRequestParts<Service> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, service: &Service) -> Result<Self, ApiError> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let caller = service.authenticate(header).await?;
        caller.require(P::PERMISSION)?;
        Ok(Authorized(caller, PhantomData))
    }
}

/// A JSON request body, deserialized strictly (unknown fields refused), with errors that
/// name the field. Accepts `application/json` and any `+json` media type (such as
/// `application/merge-patch+json`).
pub struct JsonBody<T>(pub T);

/// Why a body was refused.
pub enum BodyRejection {
    /// Not JSON, too large, or unreadable.
    Transport { status: StatusCode, code: &'static str, detail: String },
    /// JSON that does not fit the schema.
    Invalid(Error),
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        match self {
            BodyRejection::Transport { status, code, detail } => problem(status, code, detail),
            BodyRejection::Invalid(e) => ApiError(e).into_response(),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, BodyRejection> {
        let (headers, bytes) = read_body(req, state).await?;
        decode::<Obj<T>>(&headers, &bytes).map(|Obj(t)| JsonBody(t))
    }
}

/// An optional JSON body: an empty body (or `null`) is `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, BodyRejection> {
        let (headers, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJsonBody(T::default()));
        }
        decode::<Option<Obj<T>>>(&headers, &bytes).map(|t| OptionalJsonBody(t.map(|Obj(t)| t).unwrap_or_default()))
    }
}

/// A request body as bytes, whatever its type; too large a body is refused with a problem.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, BodyRejection> {
        read_body(req, state).await.map(|(_, bytes)| RawBody(bytes))
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<(HeaderMap, Bytes), BodyRejection> {
    let headers = req.headers().clone();
    let bytes = Bytes::from_request(req, state).await.map_err(|e| {
        if timed_out(&e) {
            return BodyRejection::Transport {
                status: StatusCode::REQUEST_TIMEOUT,
                code: "request_timeout",
                detail: "the request body did not arrive in time; send it again".into(),
            };
        }
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE { "payload_too_large" } else { "bad_body" };
        BodyRejection::Transport { status, code, detail: e.body_text() }
    })?;
    Ok((headers, bytes))
}

/// Whether reading the body failed on the body read deadline.
fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(e) = cause {
        if e.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn decode<T: DeserializeOwned>(headers: &HeaderMap, bytes: &[u8]) -> Result<T, BodyRejection> {
    if !is_json(headers) {
        return Err(BodyRejection::Transport {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code: "unsupported_media_type",
            detail: "send the body as application/json (Content-Type header)".into(),
        });
    }
    parse_json(bytes).map_err(BodyRejection::Invalid)
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Deserializes JSON, turning serde's error into a field violation.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut *de);
    let value = result.map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json reports some type mismatches (a number where an enum goes) as syntax
        // errors; a document that parses as JSON has no syntax error.
        let well_formed = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        Error::Validation(vec![json_violation(&path, &inner, well_formed)])
    })?;
    // One document and nothing after it but whitespace (`{"title":"x"} junk` is not JSON).
    de.end().map_err(|e| Error::Validation(vec![json_violation("", &e, false)]))?;
    Ok(value)
}

/// Deserializes an already parsed JSON document as `T`, naming the field on error (as
/// [`parse_json`] does): a document read once can be both kept and typed.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, Error> {
    let result: Result<T, _> = serde_path_to_error::deserialize(value);
    result.map_err(|e| {
        let path = e.path().to_string();
        Error::Validation(vec![json_violation(&path, &e.into_inner(), true)])
    })
}

fn json_violation(path: &str, e: &serde_json::Error, well_formed: bool) -> FieldViolation {
    use serde_json::error::Category;
    let path = if path == "." { "" } else { path };
    let join = |name: &str| if path.is_empty() { name.to_string() } else { format!("{path}.{name}") };
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    match e.classify() {
        Category::Syntax if well_formed && !path.is_empty() => {
            FieldViolation::new(path, format!("has the wrong type or value ({message})"))
        }
        Category::Syntax | Category::Eof | Category::Io => {
            let at = if path.is_empty() { String::new() } else { format!(" (at {path})") };
            FieldViolation::new("body", format!("malformed JSON{at}: {message}"))
        }
        Category::Data => {
            if let Some(name) = backticked(&message, "missing field `") {
                FieldViolation::new(join(name), "is required")
            } else if let Some(name) = backticked(&message, "unknown field `") {
                // The path already ends at the unknown field.
                let expected = message.split_once(", expected ").map(|(_, rest)| rest).unwrap_or("");
                let field = if path.is_empty() { name.to_string() } else { path.to_string() };
                // A key that is empty (`{"": 1}`) is named as written, so the field is never blank.
                let field = if field.is_empty() || field.ends_with('.') { format!("{field}\"\"") } else { field };
                FieldViolation::new(field, format!("unknown field; expected {expected}"))
            } else {
                FieldViolation::new(if path.is_empty() { "body" } else { path }, message)
            }
        }
    }
}

fn backticked<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    message.strip_prefix(prefix)?.split('`').next()
}

/// A JSON object deserialized as `T`. serde would also build a struct from a JSON array
/// (positionally); request bodies and nested objects go through this to refuse that.
/// Field paths for errors are kept (the map is read through the caller's deserializer).
#[derive(Debug, Default)]
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(ObjectVisitor(std::marker::PhantomData)).map(Obj)
    }
}

/// Deserializes a field that may be absent (outer `None`), `null` (`Some(None)`) or a value.
pub fn nullable<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A merge-patch field that may be left out but not set to `null`.
pub fn not_null<T>(v: &mut Violations, field: &str, value: Option<Option<T>>) -> Option<T> {
    match value {
        Some(None) => {
            v.add(field, "cannot be null");
            None
        }
        other => other.flatten(),
    }
}

/// An optional integer that also accepts integral JSON numbers written with a fraction
/// (`12.0`), as JSON Schema's `integer` does.
pub fn integer<'de, T: TryFrom<i64>, D: Deserializer<'de>>(d: D) -> Result<Option<T>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else { return Ok(None) };
    let whole = n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64));
    let value = whole.ok_or_else(|| serde::de::Error::custom(format!("expected an integer, got {n}")))?;
    T::try_from(value).map(Some).map_err(|_| serde::de::Error::custom(format!("{value} is out of range")))
}

/// [`integer`] for a merge-patch field that may also be `null`.
pub fn nullable_integer<'de, T: TryFrom<i64>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    integer(d).map(Some)
}

/// Parses the incident named in the path (id or reference).
pub fn incident_key(raw: &str) -> Result<IncidentKey, ApiError> {
    IncidentKey::parse("id", raw).map_err(ApiError)
}

/// Parses the resource id named in the path (a component, subscription, delivery or key).
pub fn path_id(raw: &str) -> Result<uuid::Uuid, ApiError> {
    crate::domain::ids::parse_uuid("id", raw).map_err(ApiError)
}

/// Parses a list's query string: `page_size`, `page_token` and the `extra` parameters (read
/// from the returned [`QueryParams`]).
pub fn paged(query: Option<&str>, extra: &[&str]) -> Result<(QueryParams, PageRequest), ApiError> {
    let known: Vec<&str> = ["page_size", "page_token"].iter().chain(extra).copied().collect();
    let q = QueryParams::parse(query, &known)?;
    let mut v = Violations::new();
    let size = q.int(&mut v, "page_size");
    v.finish()?;
    let page = PageRequest::new(size, q.one("page_token"))?;
    Ok((q, page))
}

/// The `If-Match` header, if any.
pub fn if_match(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(header::IF_MATCH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| ApiError(Error::invalid("If-Match", "must be an entity tag such as \"3\""))),
    }
}

/// The `Idempotency-Key` header, if any.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    const FIELD: &str = "Idempotency-Key";
    match headers.get(FIELD) {
        None => Ok(None),
        Some(v) => {
            let s = v.to_str().map_err(|_| ApiError(Error::invalid(FIELD, "must be printable ASCII")))?;
            IdempotencyKey::parse(FIELD, s.trim_matches('"')).map(Some).map_err(ApiError)
        }
    }
}

/// A query string, parsed into known parameters; any other parameter is refused.
pub struct QueryParams {
    pairs: Vec<(String, String)>,
}

impl QueryParams {
    pub fn parse(raw: Option<&str>, known: &[&str]) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            raw.map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
        let mut v = Violations::new();
        for (k, _) in &pairs {
            if !known.contains(&k.as_str()) {
                v.add(k.clone(), format!("unknown query parameter; expected one of: {}", known.join(", ")));
            }
        }
        v.finish().map_err(ApiError)?;
        Ok(Self { pairs })
    }

    /// The value of a single-valued parameter (the last one if repeated).
    pub fn one(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Parses every value of a repeatable parameter (comma-separated values are split too)
    /// with `FromStr`, recording a violation per bad or empty value.
    pub fn parse_all<T: std::str::FromStr<Err = String>>(&self, v: &mut Violations, name: &str) -> Vec<T> {
        self.pairs
            .iter()
            .filter(|(k, _)| k == name)
            .flat_map(|(_, value)| value.split(','))
            .filter_map(|s| s.trim().parse().map_err(|e: String| v.add(name, e)).ok())
            .collect()
    }

    pub fn bool(&self, v: &mut Violations, name: &str) -> Option<bool> {
        match self.one(name)? {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            other => {
                v.add(name, format!("must be true or false (got {other:?})"));
                None
            }
        }
    }

    pub fn int(&self, v: &mut Violations, name: &str) -> Option<i64> {
        let raw = self.one(name)?;
        raw.parse().map_err(|_| v.add(name, format!("must be an integer (got {raw:?})"))).ok()
    }

    pub fn time(&self, v: &mut Violations, name: &str) -> Option<DateTime<Utc>> {
        let raw = self.one(name)?;
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                v.add(name, format!("must be an RFC 3339 timestamp such as 2026-01-31T12:00:00Z (got {raw:?})"))
            })
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        #[allow(dead_code)]
        b: Option<i64>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        a: Option<i64>,
        #[allow(dead_code)]
        inner: Option<Obj<Inner>>,
    }

    fn fields(bytes: &[u8]) -> Vec<String> {
        match parse_json::<Obj<Body>>(bytes) {
            Ok(b) => panic!("accepted: {b:?}"),
            Err(e) => e.violations().iter().map(|v| v.field.clone()).collect(),
        }
    }

    /// Found by the fuzz target `rest_bodies`: a body with text after its JSON document was
    /// accepted (the rest ignored).
    #[test]
    fn text_after_the_document_is_refused() {
        assert_eq!(fields(br#"{"a": 1} {"a": 2}"#), ["body"]);
        assert_eq!(fields(br#"{"a": 1}: "internal"}"#), ["body"]);
        let Obj(body) = parse_json::<Obj<Body>>(b"{\"a\": 1} \r\n\t").expect("whitespace after is fine");
        assert_eq!(body.a, Some(1));
    }

    /// Found by the fuzz target `merge_patch`: an unknown empty key was reported with an
    /// empty field name.
    #[test]
    fn an_unknown_empty_key_is_named() {
        assert_eq!(fields(br#"{"": null}"#), [r#""""#]);
        assert_eq!(fields(br#"{"inner": {"": 1}}"#), [r#"inner."""#]);
    }
}
