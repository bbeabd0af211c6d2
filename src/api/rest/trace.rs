//! The HTTP trace layer: a span per request, and a log line for each server error, except the
//! answers a health probe expects.
//!
//! `/readyz` answers 503 on purpose while the process drains or its database is away; a probe
//! asks every few hundred milliseconds, so logging each of those at ERROR would fire log-based
//! alerts on every rolling restart. They are logged at debug; the readiness watcher logs the
//! database going away (once, at WARN) and coming back (INFO).

use axum::http::{Request, Response, StatusCode};
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, MakeClassifier, NeverClassifyEos, ServerErrorsAsFailures,
    ServerErrorsFailureClass,
};
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

/// The routes whose 503 is an expected answer, not a failure.
const HEALTH_ROUTES: [&str; 2] = ["/healthz", "/readyz"];

/// Classifies server errors as failures, except a health route's 503.
#[derive(Clone, Copy, Default)]
pub struct HealthAware;

/// The classifier of one request.
#[derive(Clone, Copy)]
pub struct HealthAwareClassifier {
    health: bool,
}

impl MakeClassifier for HealthAware {
    type Classifier = HealthAwareClassifier;
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn make_classifier<B>(&self, req: &Request<B>) -> Self::Classifier {
        HealthAwareClassifier { health: HEALTH_ROUTES.contains(&req.uri().path()) }
    }
}

impl ClassifyResponse for HealthAwareClassifier {
    type FailureClass = ServerErrorsFailureClass;
    type ClassifyEos = NeverClassifyEos<ServerErrorsFailureClass>;

    fn classify_response<B>(self, res: &Response<B>) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        if self.health && res.status() == StatusCode::SERVICE_UNAVAILABLE {
            tracing::debug!(status = 503, "not ready");
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
    HealthAware,
    fn(&Request<axum::body::Body>) -> tracing::Span,
    tower_http::trace::DefaultOnRequest,
    tower_http::trace::DefaultOnResponse,
    tower_http::trace::DefaultOnBodyChunk,
    tower_http::trace::DefaultOnEos,
    DefaultOnFailure,
>;

/// The trace layer of every HTTP router: spans named and parented as in
/// [`crate::telemetry::http_request_span`]; server errors logged at ERROR, a health route's
/// 503 at debug.
pub fn layer() -> HttpTraceLayer {
    TraceLayer::new(HealthAware)
        .make_span_with(crate::telemetry::http_request_span::<axum::body::Body> as fn(&_) -> _)
        .on_failure(DefaultOnFailure::new().level(Level::ERROR))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(path: &str, status: StatusCode) -> bool {
        let req = Request::builder().uri(path).body(()).unwrap();
        let res = Response::builder().status(status).body(()).unwrap();
        match HealthAware.make_classifier(&req).classify_response(&res) {
            ClassifiedResponse::Ready(r) => r.is_err(),
            ClassifiedResponse::RequiresEos(_) => unreachable!("never waits for the end of the stream"),
        }
    }

    #[test]
    fn a_health_routes_503_is_not_a_failure_but_other_5xx_are() {
        assert!(!classify("/readyz", StatusCode::SERVICE_UNAVAILABLE));
        assert!(!classify("/healthz", StatusCode::SERVICE_UNAVAILABLE));
        assert!(classify("/readyz", StatusCode::INTERNAL_SERVER_ERROR));
        assert!(classify("/v1/incidents", StatusCode::SERVICE_UNAVAILABLE));
        assert!(!classify("/v1/incidents", StatusCode::OK));
    }
}
