//! `incidentd.v1.ApiKeyService` and `incidentd.v1.AuditService` (scope admin).

use tonic::{Request, Response, Status};

use super::convert::{json_to_pb, opt_ts, scope_from_pb, scope_to_pb, ts};
use super::status::to_status;
use super::{authorize, page, parse_id};
use crate::domain::access::{AuditFilter, NewApiKey};
use crate::domain::ids::parse_uuid;
use crate::domain::validate::Violations;
use crate::domain::{ApiKey, AuditEvent, Permission};
use crate::proto as pb;
use crate::proto::api_key_service_server::ApiKeyService;
use crate::proto::audit_service_server::AuditService;
use crate::service::Service;

fn key_to_pb(k: &ApiKey) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.to_string(),
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        scopes: k.scopes.iter().copied().map(scope_to_pb).collect(),
        created_at: Some(ts(k.created_at)),
        expires_at: k.expires_at.map(ts),
        last_used_at: k.last_used_at.map(ts),
        revoked_at: k.revoked_at.map(ts),
        created_by: k.created_by.clone(),
    }
}

fn event_to_pb(e: &AuditEvent) -> pb::AuditEvent {
    let details = match json_to_pb(&e.details).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    };
    pb::AuditEvent {
        id: e.id.to_string(),
        occurred_at: Some(ts(e.occurred_at)),
        actor_key_id: e.actor_key_id.map(|k| k.to_string()).unwrap_or_default(),
        actor_name: e.actor_name.clone(),
        action: e.action.clone(),
        resource_type: e.resource_type.clone(),
        resource_id: e.resource_id.clone(),
        details,
    }
}

pub struct GrpcApiKeyService {
    service: Service,
}

impl GrpcApiKeyService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl ApiKeyService for GrpcApiKeyService {
    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let scopes = req
            .scopes
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let field = format!("scopes[{i}]");
                if *s == pb::Scope::Unspecified as i32 {
                    v.add(field.clone(), "must name a scope (SCOPE_UNSPECIFIED is not one)");
                }
                scope_from_pb(&mut v, &field, *s)
            })
            .collect();
        let expires_at = opt_ts(&mut v, "expires_at", &req.expires_at);
        v.finish().map_err(to_status)?;
        let input = NewApiKey { name: Some(req.name), scopes, expires_at };
        let issued = self.service.create_api_key(&caller, input).await.map_err(to_status)?;
        Ok(Response::new(pb::CreateApiKeyResponse { api_key: Some(key_to_pb(&issued.key)), secret: issued.secret }))
    }

    async fn get_api_key(
        &self,
        request: Request<pb::GetApiKeyRequest>,
    ) -> Result<Response<pb::GetApiKeyResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let key = self.service.get_api_key(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetApiKeyResponse { api_key: Some(key_to_pb(&key)) }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_api_keys(&caller, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.items.iter().map(key_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let key = self.service.revoke_api_key(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::RevokeApiKeyResponse { api_key: Some(key_to_pb(&key)) }))
    }
}

pub struct GrpcAuditService {
    service: Service,
}

impl GrpcAuditService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl AuditService for GrpcAuditService {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let actor_key_id = (!req.actor_key_id.is_empty())
            .then(|| parse_uuid("actor_key_id", &req.actor_key_id).map_err(|e| v.extend(e).ok()).ok())
            .flatten();
        let mut text = |name: &str, value: String| {
            v.search_text(name, &value);
            (!value.is_empty()).then_some(value)
        };
        let filter = AuditFilter {
            actor_key_id,
            resource_type: text("resource_type", req.resource_type),
            resource_id: text("resource_id", req.resource_id),
            action: text("action", req.action),
        };
        v.finish().map_err(to_status)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_audit_events(&caller, filter, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.items.iter().map(event_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}
