//! The HTTP trace layer: a span per request, and a log line for each server error, except the
//! answers a health probe expects.
//!
//! A 503 is an expected answer, not a failure of the request: `/readyz` answers it on purpose
//! while the process drains or its database is away (a probe asks every few hundred
//! milliseconds), and every route answers it while the database is away or the process is
//! at its limit of requests in flight. Logging each at ERROR would fire log-based alerts on
//! every rolling restart and bury the one line that matters in an outage: they are logged at
//! debug (and counted in the request metrics); the readiness watcher logs the database going
//! away (once, at WARN) and coming back (INFO). A 507 (full disk) is logged where it arises.

use axum::http::{Request, Response, StatusCode};
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, MakeClassifier, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass,
};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

/// Classifies server errors as failures, except the expected ones (503, 507).
#[derive(Clone, Copy, Default)]
pub struct Expected;

/// The classifier of one request.
#[derive(Clone, Copy)]
pub struct ExpectedClassifier;

impl MakeClassifier for Expected {
    type Classifier = ExpectedClassifier;
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn make_classifier<B>(&self, _req: &Request<B>) -> Self::Classifier {
        ExpectedClassifier
    }
}

impl ClassifyResponse for ExpectedClassifier {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(self, res: &Response<B>) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if matches!(res.status(), StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE) {
            tracing::debug!(status = res.status().as_u16(), "expected server error");
            return ClassifiedResponse::Ready(Ok(()));
        }
        ServerErrorsAsFailures::new().classify_response(res)
    }

    fn classify_error<E: std::fmt::Display + 'static>(self, error: &E) -> Self::FailureClass {
        ServerErrorsAsFailures::new().classify_error(error)
    }
}

/// The trace layer [`layer`] builds.
pub type HttpTraceLayer = TraceLayer<
    Expected,
    fn(&Request<axum::body::Body>) -> tracing::Span,
    tower_http::trace::DefaultOnRequest,
    tower_http::trace::DefaultOnResponse,
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    DefaultOnFailure,
>;

/// The trace layer of every HTTP router: spans named and parented as in
/// [`crate::telemetry::http_request_span`]; server errors logged at ERROR, 503 and 507 at
/// debug.
pub fn layer() -> HttpTraceLayer {
    TraceLayer::new(Expected)
        .make_span_with(crate::telemetry::http_request_span::<axum::body::Body> as fn(&_) -> _)
        .on_failure(DefaultOnFailure::new().level(Level::ERROR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(path: &str, status: StatusCode) -> bool {
        let req = Request::builder().uri(path).body(()).unwrap();
        let res = Response::builder().status(status).body(()).unwrap();
        match Expected.make_classifier(&req).classify_response(&res) {
            ClassifiedResponse::Ready(r) => r.is_err(),
            ClassifiedResponse::RequiresEos(_) => unreachable!("never waits for the end of the stream"),
        }
    }

    #[test]
    fn a_503_or_507_is_not_a_failure_but_other_5xx_are() {
        assert!(!classify("/readyz", StatusCode::SERVICE_UNAVAILABLE));
        assert!(!classify("/v1/incidents", StatusCode::SERVICE_UNAVAILABLE));
        assert!(!classify("/v1/incidents", StatusCode::INSUFFICIENT_STORAGE));
        assert!(classify("/readyz", StatusCode::INTERNAL_SERVER_ERROR));
        assert!(classify("/v1/incidents", StatusCode::BAD_GATEWAY));
        assert!(!classify("/v1/incidents", StatusCode::OK));
    }
}
