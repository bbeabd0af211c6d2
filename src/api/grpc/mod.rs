//! The gRPC API (tonic): the incidentd.v1 services listed once in [`SERVICE_NAMES`]
//! (incidents, postmortems, actions, stats, components, maintenance, integrations, API keys,
//! audit, events, subscriptions, subscribers), standard health, and server reflection v1 and v1alpha (with the health
//! descriptors registered).

pub mod access;
pub mod components;
pub mod convert;
pub mod events;
pub mod incidents;
pub mod integrations;
pub mod maintenance;
pub mod postmortems;
pub mod status;
pub mod subscribers;
pub mod subscriptions;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health, HealthServer};
use tower::layer::util::{Identity, Stack};

use crate::api::admission::{AdmitLayer, Grpc};

use crate::proto::action_service_server::ActionServiceServer;
use crate::proto::api_key_service_server::ApiKeyServiceServer;
use crate::proto::audit_service_server::AuditServiceServer;
use crate::proto::component_service_server::ComponentServiceServer;
use crate::proto::event_service_server::EventServiceServer;
use crate::proto::incident_service_server::IncidentServiceServer;
use crate::proto::integration_service_server::IntegrationServiceServer;
use crate::proto::maintenance_service_server::MaintenanceServiceServer;
use crate::proto::postmortem_service_server::PostmortemServiceServer;
use crate::proto::stats_service_server::StatsServiceServer;
use crate::proto::subscriber_service_server::SubscriberServiceServer;
use crate::proto::subscription_service_server::SubscriptionServiceServer;
use crate::service::Service;

/// Declares the API's gRPC services once: [`SERVICE_NAMES`] (health reports on each, metrics
/// label calls by them) and the router that serves them are both made from this list.
macro_rules! api_services {
    ($($server:ident($adapter:ty)),+ $(,)?) => {
        /// The full name of every incidentd gRPC service (`incidentd.v1.IncidentService`, ...).
        pub const SERVICE_NAMES: &[&str] = &[$(<$server<$adapter> as tonic::server::NamedService>::NAME),+];

        /// Adds every API service, each refusing messages over `max_message_bytes`.
        fn add_api_services<L>(router: Router<L>, service: &Service, max_message_bytes: usize) -> Router<L> {
            router$(.add_service(
                $server::new(<$adapter>::new(service.clone())).max_decoding_message_size(max_message_bytes),
            ))+
        }
    };
}

api_services! {
    IncidentServiceServer(incidents::GrpcIncidentService),
    PostmortemServiceServer(postmortems::GrpcPostmortemService),
    ActionServiceServer(postmortems::GrpcActionService),
    StatsServiceServer(postmortems::GrpcStatsService),
    ComponentServiceServer(components::GrpcComponentService),
    MaintenanceServiceServer(maintenance::GrpcMaintenanceService),
    IntegrationServiceServer(integrations::GrpcIntegrationService),
    ApiKeyServiceServer(access::GrpcApiKeyService),
    AuditServiceServer(access::GrpcAuditService),
    EventServiceServer(events::GrpcEventService),
    SubscriptionServiceServer(subscriptions::GrpcSubscriptionService),
    SubscriberServiceServer(subscribers::GrpcSubscriberService),
}

/// The standard health service, which reports on the server (`""`) and each API service.
pub const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";

/// The limits of the gRPC server's connections.
#[derive(Debug, Clone, Copy)]
pub struct GrpcLimits {
    /// Largest message, in bytes.
    pub max_message_bytes: usize,
    /// Streams (calls) one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest header list (metadata) a call may send, in bytes.
    pub max_header_list_bytes: u32,
}

/// The layers every gRPC call passes: admission, then metrics.
pub type Layers = Stack<AdmitLayer<Grpc>, Stack<MetricsLayer, Identity>>;

/// The gRPC router with every service added. Messages over `max_message_bytes` are refused
/// (RESOURCE_EXHAUSTED).
pub fn server<H: Health>(
    service: Service,
    health: HealthServer<H>,
    limits: GrpcLimits,
    admission: crate::api::admission::Admission,
) -> anyhow::Result<Router<Layers>> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // The error details every failed call may carry (google.rpc.ErrorInfo, BadRequest,
            // PreconditionFailure, RetryInfo, ...): reflection-driven clients such as grpcurl
            // resolve their type URLs here and print them instead of "not recognized".
            .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let router = tonic::transport::Server::builder()
        .max_concurrent_streams(limits.max_concurrent_streams)
        .http2_max_header_list_size(limits.max_header_list_bytes)
        .layer(MetricsLayer(service.clone()))
        .layer(admission.layer::<Grpc>())
        .trace_fn(|req| {
            crate::telemetry::grpc_request_span(req, method_label(req.uri().path()).trim_start_matches('/'))
        })
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    Ok(add_api_services(router, &service, limits.max_message_bytes))
}

/// Authenticates the caller from the `authorization` metadata (`Bearer <key>`) and checks
/// that it holds `permission`, before the request is read (the service checks again).
pub(crate) async fn authorize<T>(
    service: &Service,
    request: &tonic::Request<T>,
    permission: crate::domain::Permission,
) -> Result<crate::domain::Caller, tonic::Status> {
    let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
    let caller = service.authenticate(header).await.map_err(status::to_status)?;
    caller.require(permission).map_err(status::to_status)?;
    Ok(caller)
}

/// An optional string field: proto3 sends an unset string as empty.
pub(crate) fn non_empty(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

/// The page a list request asks for.
pub(crate) fn page(size: i32, token: &str) -> Result<crate::domain::PageRequest, tonic::Status> {
    crate::domain::PageRequest::new(Some(i64::from(size)), Some(token)).map_err(status::to_status)
}

/// Parses a resource id field.
pub(crate) fn parse_id(field: &str, raw: &str) -> Result<uuid::Uuid, tonic::Status> {
    crate::domain::ids::parse_uuid(field, raw).map_err(status::to_status)
}

/// Marks a response as the replay of an earlier request with the same `request_id`.
pub(crate) fn mark_replayed<T>(mut res: tonic::Response<T>, replayed: bool) -> tonic::Response<T> {
    if replayed {
        res.metadata_mut().insert("idempotent-replayed", tonic::metadata::MetadataValue::from_static("true"));
    }
    res
}

/// Counts and times each call by method and status code (`grpc_requests_total`,
/// `grpc_request_duration_seconds`). The code is read from the response head: tonic sends a
/// failed unary call as trailers-only, so its code is there; a call whose head carries no
/// code has started answering and is counted as OK.
#[derive(Clone)]
pub struct MetricsLayer(Service);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered { inner, service: self.0.clone() }
    }
}

#[derive(Clone)]
pub struct Metered<S> {
    inner: S,
    service: Service,
}

/// The method label: the path of a known service, else `unknown` (so that arbitrary paths
/// do not create series).
fn method_label(path: &str) -> String {
    let known = path.strip_prefix('/').and_then(|p| p.split_once('/')).is_some_and(|(service, method)| {
        !method.is_empty()
            && !method.contains('/')
            && (service == HEALTH_SERVICE_NAME
                || SERVICE_NAMES.contains(&service)
                || service.starts_with("grpc.reflection."))
    });
    if known { path.to_string() } else { "unknown".to_string() }
}

impl<S, B, R> tower::Service<axum::http::Request<B>> for Metered<S>
where
    S: tower::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let started = std::time::Instant::now();
        let method = method_label(request.uri().path());
        let service = self.service.clone();
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(tonic::Code::from_i32)
                .unwrap_or(tonic::Code::Ok);
            let method = if code == tonic::Code::Unimplemented { "unknown".to_string() } else { method };
            service.metrics().observe_grpc(&method, &format!("{code:?}"), started.elapsed());
            Ok(response)
        })
    }
}
