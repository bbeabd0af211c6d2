//! Admission control: at most a set number of requests in flight in this process, REST and
//! gRPC together. A request over the limit is refused at once (503 `overloaded` /
//! RESOURCE_EXHAUSTED, with Retry-After), so the requests already admitted keep their
//! latency instead of every request slowing down together. Health checks, metrics and gRPC
//! reflection are never refused: a probe must see an overloaded process as alive.
//!
//! A permit is held until the handler has answered (a request body that is still arriving
//! holds it, up to the body read timeout); a live stream (SSE, gRPC server streaming) holds
//! one only while it is being set up.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::domain::Error;
use crate::service::Service;

/// The requests in flight in this process, bounded.
#[derive(Clone)]
pub struct Admission {
    permits: Arc<Semaphore>,
    limit: usize,
    service: Service,
}

/// REST paths never refused.
const REST_EXEMPT: [&str; 3] = ["/healthz", "/readyz", "/metrics"];
/// gRPC services never refused (by path prefix).
const GRPC_EXEMPT: [&str; 2] = ["/grpc.health.v1.Health/", "/grpc.reflection."];

impl Admission {
    pub fn new(limit: usize, service: Service) -> Self {
        let limit = limit.max(1);
        Admission { permits: Arc::new(Semaphore::new(limit)), limit, service }
    }

    /// A permit, or `Overloaded` when every one is taken.
    fn try_admit(&self, transport: &str) -> Result<OwnedSemaphorePermit, Error> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            self.service.metrics().observe_shed(transport);
            tracing::debug!(transport, limit = self.limit, "request shed: at the limit of requests in flight");
            Error::Overloaded { limit: self.limit }
        })
    }
}

/// The REST middleware (`axum::middleware::from_fn_with_state`).
pub async fn admit_http(
    axum::extract::State(admission): axum::extract::State<Admission>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if REST_EXEMPT.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    match admission.try_admit("http") {
        Ok(permit) => {
            let response = next.run(request).await;
            drop(permit);
            response
        }
        Err(e) => crate::api::rest::problem::ApiError(e).into_response(),
    }
}

/// The gRPC layer (`tonic::transport::Server::builder().layer(..)`).
impl<S> tower::Layer<S> for Admission {
    type Service = Admitted<S>;

    fn layer(&self, inner: S) -> Admitted<S> {
        Admitted { inner, admission: self.clone() }
    }
}

#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    admission: Admission,
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for Admitted<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        if GRPC_EXEMPT.iter().any(|p| path.starts_with(p)) {
            return Box::pin(self.inner.call(request));
        }
        match self.admission.try_admit("grpc") {
            Ok(permit) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit);
                    response
                })
            }
            Err(e) => {
                let response = crate::api::grpc::status::to_status(e).into_http::<R>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
