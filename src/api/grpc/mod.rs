//! The gRPC API (tonic): `incidentd.v1.IncidentService` and `ComponentService`, standard
//! health, and server reflection v1 and v1alpha (with the health descriptors registered).

pub mod access;
pub mod components;
pub mod convert;
pub mod events;
pub mod incidents;
pub mod status;
pub mod subscriptions;

use tonic::transport::server::Router;
use tonic_health::pb::health_server::{Health, HealthServer};

use crate::proto::api_key_service_server::ApiKeyServiceServer;
use crate::proto::audit_service_server::AuditServiceServer;
use crate::proto::component_service_server::ComponentServiceServer;
use crate::proto::event_service_server::EventServiceServer;
use crate::proto::incident_service_server::IncidentServiceServer;
use crate::proto::subscription_service_server::SubscriptionServiceServer;
use crate::service::Service;

pub const INCIDENT_SERVICE_NAME: &str = crate::proto::incident_service_server::SERVICE_NAME;
pub const COMPONENT_SERVICE_NAME: &str = crate::proto::component_service_server::SERVICE_NAME;
pub const API_KEY_SERVICE_NAME: &str = crate::proto::api_key_service_server::SERVICE_NAME;
pub const AUDIT_SERVICE_NAME: &str = crate::proto::audit_service_server::SERVICE_NAME;
pub const EVENT_SERVICE_NAME: &str = crate::proto::event_service_server::SERVICE_NAME;
pub const SUBSCRIPTION_SERVICE_NAME: &str = crate::proto::subscription_service_server::SERVICE_NAME;

/// The gRPC router with every service added. Messages over `max_message_bytes` are refused
/// (RESOURCE_EXHAUSTED).
pub fn server<H: Health>(
    service: Service,
    health: HealthServer<H>,
    max_message_bytes: usize,
) -> anyhow::Result<Router> {
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    Ok(tonic::transport::Server::builder()
        .trace_fn(|req| tracing::info_span!("grpc", path = %req.uri().path()))
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            IncidentServiceServer::new(incidents::GrpcIncidentService::new(service.clone()))
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            ComponentServiceServer::new(components::GrpcComponentService::new(service.clone()))
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            ApiKeyServiceServer::new(access::GrpcApiKeyService::new(service.clone()))
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            AuditServiceServer::new(access::GrpcAuditService::new(service.clone()))
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            EventServiceServer::new(events::GrpcEventService::new(service.clone()))
                .max_decoding_message_size(max_message_bytes),
        )
        .add_service(
            SubscriptionServiceServer::new(subscriptions::GrpcSubscriptionService::new(service))
                .max_decoding_message_size(max_message_bytes),
        ))
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

/// Marks a response as the replay of an earlier request with the same `request_id`.
pub(crate) fn mark_replayed<T>(mut res: tonic::Response<T>, replayed: bool) -> tonic::Response<T> {
    if replayed {
        res.metadata_mut().insert("idempotent-replayed", tonic::metadata::MetadataValue::from_static("true"));
    }
    res
}
