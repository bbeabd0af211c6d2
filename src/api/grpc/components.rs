//! `incidentd.v1.ComponentService`.

use tonic::{Request, Response, Status};

use super::convert::{
    component_patch_from_pb, component_to_pb, new_component_from_pb, opt_ts, status_change_to_pb, uptime_to_pb,
};
use super::status::to_status;
use super::{authorize, mark_replayed, non_empty, page, parse_id};
use crate::domain::validate::Violations;
use crate::domain::{Error, IdempotencyKey, Permission};
use crate::proto as pb;
use crate::proto::component_service_server::ComponentService;
use crate::service::Service;

pub struct GrpcComponentService {
    service: Service,
}

impl GrpcComponentService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl ComponentService for GrpcComponentService {
    async fn create_component(
        &self,
        request: Request<pb::CreateComponentRequest>,
    ) -> Result<Response<pb::CreateComponentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteComponents).await?;
        let req = request.into_inner();
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let input = new_component_from_pb(req.component.unwrap_or_default())
            .map_err(|e| to_status(e.prefix_fields("component")))?;
        let created = self
            .service
            .create_component(&caller, input, idem.as_ref())
            .await
            .map_err(|e| to_status(e.prefix_fields("component")))?;
        let res = Response::new(pb::CreateComponentResponse { component: Some(component_to_pb(&created.value)) });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn get_component(
        &self,
        request: Request<pb::GetComponentRequest>,
    ) -> Result<Response<pb::GetComponentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadComponents).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let c = self.service.get_component(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetComponentResponse { component: Some(component_to_pb(&c)) }))
    }

    async fn list_components(
        &self,
        request: Request<pb::ListComponentsRequest>,
    ) -> Result<Response<pb::ListComponentsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadComponents).await?;
        let req = request.into_inner();
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_components(&caller, req.group.as_deref(), page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListComponentsResponse {
            components: page.items.iter().map(component_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_component(
        &self,
        request: Request<pb::UpdateComponentRequest>,
    ) -> Result<Response<pb::UpdateComponentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteComponents).await?;
        let req = request.into_inner();
        let component = req.component.ok_or_else(|| to_status(Error::invalid("component", "is required")))?;
        let id = parse_id("component.id", &component.id)?;
        let patch = component_patch_from_pb(component, req.update_mask).map_err(to_status)?;
        let c = self
            .service
            .update_component(&caller, id, patch, non_empty(req.etag).as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("component")))?;
        Ok(Response::new(pb::UpdateComponentResponse { component: Some(component_to_pb(&c)) }))
    }

    async fn delete_component(
        &self,
        request: Request<pb::DeleteComponentRequest>,
    ) -> Result<Response<pb::DeleteComponentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteComponents).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        self.service.delete_component(&caller, id, non_empty(req.etag).as_deref()).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteComponentResponse {}))
    }

    async fn list_component_history(
        &self,
        request: Request<pb::ListComponentHistoryRequest>,
    ) -> Result<Response<pb::ListComponentHistoryResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadComponents).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_component_history(&caller, id, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListComponentHistoryResponse {
            changes: page.items.iter().map(status_change_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_component_uptime(
        &self,
        request: Request<pb::GetComponentUptimeRequest>,
    ) -> Result<Response<pb::GetComponentUptimeResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadComponents).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        let mut v = Violations::new();
        let (from, to) = (opt_ts(&mut v, "from", &req.from), opt_ts(&mut v, "to", &req.to));
        v.finish().map_err(to_status)?;
        let uptime = self.service.component_uptime(&caller, id, from, to).await.map_err(to_status)?;
        Ok(Response::new(pb::GetComponentUptimeResponse { uptime: Some(uptime_to_pb(&uptime)) }))
    }
}
