//! Admission control: at most a set number of requests in flight in this process, REST and
//! gRPC together. A request over the limit is refused at once (503 `overloaded` /
//! RESOURCE_EXHAUSTED, with Retry-After), so the requests already admitted keep their
//! latency instead of every request slowing down together. Health checks, metrics and gRPC
//! reflection are never refused: a probe must see an overloaded process as alive.
//!
//! A permit is held until the handler has answered (a request body that is still arriving
//! holds it, up to the body read timeout); a live stream (SSE, gRPC server streaming) holds
//! one only while it is being set up.

use std::marker::PhantomData;
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

/// How a transport answers, and which of its requests are never refused.
pub trait Transport<R>: Send + Sync + 'static {
    /// The `transport` label of `incidentd_requests_shed_total`.
    const NAME: &'static str;
    /// Whether a request for `path` is never refused (probes, metrics, reflection).
    fn exempt(path: &str) -> bool;
    /// The answer to a refused request.
    fn refuse(error: Error) -> axum::http::Response<R>;
}

/// REST: 503 `overloaded` as a problem document; health, readiness and metrics exempt.
pub struct Http;

impl Transport<axum::body::Body> for Http {
    const NAME: &'static str = "http";

    fn exempt(path: &str) -> bool {
        ["/healthz", "/readyz", "/metrics"].contains(&path)
    }

    fn refuse(error: Error) -> axum::response::Response {
        use axum::response::IntoResponse;
        crate::api::rest::problem::ApiError(error).into_response()
    }
}

/// gRPC: RESOURCE_EXHAUSTED; the health and reflection services exempt.
pub struct Grpc;

impl<R: Default> Transport<R> for Grpc {
    const NAME: &'static str = "grpc";

    fn exempt(path: &str) -> bool {
        ["/grpc.health.v1.Health/", "/grpc.reflection."].iter().any(|p| path.starts_with(p))
    }

    fn refuse(error: Error) -> axum::http::Response<R> {
        crate::api::grpc::status::to_status(error).into_http::<R>()
    }
}

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

    /// The layer admitting requests of transport `T` (`Http` or `Grpc`).
    pub fn layer<T>(&self) -> AdmitLayer<T> {
        AdmitLayer { admission: self.clone(), transport: PhantomData }
    }
}

/// The tower layer of [`Admission::layer`].
pub struct AdmitLayer<T> {
    admission: Admission,
    transport: PhantomData<fn() -> T>,
}

impl<T> Clone for AdmitLayer<T> {
    fn clone(&self) -> Self {
        AdmitLayer { admission: self.admission.clone(), transport: PhantomData }
    }
}

impl<S, T> tower::Layer<S> for AdmitLayer<T> {
    type Service = Admitted<S, T>;

    fn layer(&self, inner: S) -> Admitted<S, T> {
        Admitted { inner, admission: self.admission.clone(), transport: PhantomData }
    }
}

pub struct Admitted<S, T> {
    inner: S,
    admission: Admission,
    transport: PhantomData<fn() -> T>,
}

impl<S: Clone, T> Clone for Admitted<S, T> {
    fn clone(&self) -> Self {
        Admitted { inner: self.inner.clone(), admission: self.admission.clone(), transport: PhantomData }
    }
}

impl<S, B, R, T> tower::Service<axum::http::Request<B>> for Admitted<S, T>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
    R: Send + 'static,
    T: Transport<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        if T::exempt(request.uri().path()) {
            return Box::pin(self.inner.call(request));
        }
        match self.admission.try_admit(T::NAME) {
            Ok(permit) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit);
                    response
                })
            }
            Err(e) => {
                let response = T::refuse(e);
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
