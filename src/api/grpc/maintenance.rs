//! `incidentd.v1.MaintenanceService`.

use tonic::{Request, Response, Status};

use super::convert::{
    maintenance_patch_from_pb, maintenance_status_from_pb, maintenance_to_pb, maintenance_update_to_pb,
    new_maintenance_from_pb,
};
use super::status::to_status;
use super::{authorize, mark_replayed, non_empty, page, parse_id};
use crate::domain::maintenance::NewMaintenanceUpdate;
use crate::domain::validate::Violations;
use crate::domain::{Error, IdempotencyKey, Permission};
use crate::proto as pb;
use crate::proto::maintenance_service_server::MaintenanceService;
use crate::service::Service;

pub struct GrpcMaintenanceService {
    service: Service,
}

impl GrpcMaintenanceService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl MaintenanceService for GrpcMaintenanceService {
    async fn create_maintenance(
        &self,
        request: Request<pb::CreateMaintenanceRequest>,
    ) -> Result<Response<pb::CreateMaintenanceResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteMaintenance).await?;
        let req = request.into_inner();
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let input = new_maintenance_from_pb(req.maintenance.unwrap_or_default())
            .map_err(|e| to_status(e.prefix_fields("maintenance")))?;
        let created = self
            .service
            .create_maintenance(&caller, input, idem.as_ref())
            .await
            .map_err(|e| to_status(e.prefix_fields("maintenance")))?;
        let res = Response::new(pb::CreateMaintenanceResponse { maintenance: Some(maintenance_to_pb(&created.value)) });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn get_maintenance(
        &self,
        request: Request<pb::GetMaintenanceRequest>,
    ) -> Result<Response<pb::GetMaintenanceResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadMaintenance).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let m = self.service.get_maintenance(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetMaintenanceResponse { maintenance: Some(maintenance_to_pb(&m)) }))
    }

    async fn list_maintenances(
        &self,
        request: Request<pb::ListMaintenancesRequest>,
    ) -> Result<Response<pb::ListMaintenancesResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadMaintenance).await?;
        let req = request.into_inner();
        let page = page(req.page_size, &req.page_token)?;
        let mut v = Violations::new();
        let statuses = req
            .statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| maintenance_status_from_pb(&mut v, &format!("statuses[{i}]"), *s))
            .collect();
        v.finish().map_err(to_status)?;
        let page = self.service.list_maintenances(&caller, statuses, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListMaintenancesResponse {
            maintenances: page.items.iter().map(maintenance_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_maintenance(
        &self,
        request: Request<pb::UpdateMaintenanceRequest>,
    ) -> Result<Response<pb::UpdateMaintenanceResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteMaintenance).await?;
        let req = request.into_inner();
        let m = req.maintenance.ok_or_else(|| to_status(Error::invalid("maintenance", "is required")))?;
        let id = parse_id("maintenance.id", &m.id)?;
        let patch = maintenance_patch_from_pb(m, req.update_mask).map_err(to_status)?;
        let m = self
            .service
            .update_maintenance(&caller, id, patch, non_empty(req.etag).as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("maintenance")))?;
        Ok(Response::new(pb::UpdateMaintenanceResponse { maintenance: Some(maintenance_to_pb(&m)) }))
    }

    async fn create_maintenance_update(
        &self,
        request: Request<pb::CreateMaintenanceUpdateRequest>,
    ) -> Result<Response<pb::CreateMaintenanceUpdateResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteMaintenance).await?;
        let req = request.into_inner();
        let id = parse_id("maintenance_id", &req.maintenance_id)?;
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let mut v = Violations::new();
        let status = maintenance_status_from_pb(&mut v, "status", req.status);
        v.finish().map_err(to_status)?;
        let input = NewMaintenanceUpdate { body: Some(req.body), status };
        let created = self
            .service
            .post_maintenance_update(&caller, id, input, non_empty(req.etag).as_deref(), idem.as_ref())
            .await
            .map_err(to_status)?;
        let (update, maintenance) = &created.value;
        let res = Response::new(pb::CreateMaintenanceUpdateResponse {
            update: Some(maintenance_update_to_pb(update)),
            maintenance: Some(maintenance_to_pb(maintenance)),
        });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn list_maintenance_updates(
        &self,
        request: Request<pb::ListMaintenanceUpdatesRequest>,
    ) -> Result<Response<pb::ListMaintenanceUpdatesResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadMaintenance).await?;
        let req = request.into_inner();
        let id = parse_id("maintenance_id", &req.maintenance_id)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_maintenance_updates(&caller, id, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListMaintenanceUpdatesResponse {
            updates: page.items.iter().map(maintenance_update_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }
}
