//! `incidentd.v1.IntegrationService`: each method converts, calls the service, converts back.

use tonic::{Request, Response, Status};

use super::convert::{alert_to_pb, integration_patch_from_pb, integration_to_pb, new_integration_from_pb};
use super::status::to_status;
use super::{authorize, non_empty, page, parse_id};
use crate::domain::alert::Alert;
use crate::domain::integration::Integration;
use crate::domain::page::Page;
use crate::domain::{Error, IncidentKey, Permission};
use crate::proto as pb;
use crate::proto::integration_service_server::IntegrationService;
use crate::service::Service;

pub struct GrpcIntegrationService {
    service: Service,
}

impl GrpcIntegrationService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }

    fn to_pb(&self, i: &Integration) -> pb::Integration {
        integration_to_pb(i, self.service.public_url())
    }
}

/// A page of alerts as `(alerts, next_page_token)`.
fn alerts_page(page: Page<Alert>) -> (Vec<pb::Alert>, String) {
    (page.items.iter().map(alert_to_pb).collect(), page.next_page_token.unwrap_or_default())
}

#[tonic::async_trait]
impl IntegrationService for GrpcIntegrationService {
    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> Result<Response<pb::CreateIntegrationResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let input = new_integration_from_pb(req.integration.unwrap_or_default())
            .map_err(|e| to_status(e.prefix_fields("integration")))?;
        let created = self
            .service
            .create_integration(&caller, input)
            .await
            .map_err(|e| to_status(e.prefix_fields("integration")))?
            .value;
        Ok(Response::new(pb::CreateIntegrationResponse {
            integration: Some(self.to_pb(&created.integration)),
            secret: created.secret,
        }))
    }

    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> Result<Response<pb::GetIntegrationResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let i = self.service.get_integration(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetIntegrationResponse { integration: Some(self.to_pb(&i)) }))
    }

    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Result<Response<pb::ListIntegrationsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_integrations(&caller, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: page.items.iter().map(|i| self.to_pb(i)).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_integration(
        &self,
        request: Request<pb::UpdateIntegrationRequest>,
    ) -> Result<Response<pb::UpdateIntegrationResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let i = req.integration.ok_or_else(|| to_status(Error::invalid("integration", "is required")))?;
        let id = parse_id("integration.id", &i.id)?;
        let patch = integration_patch_from_pb(i, req.update_mask).map_err(to_status)?;
        let i = self
            .service
            .update_integration(&caller, id, patch, non_empty(req.etag).as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("integration")))?;
        Ok(Response::new(pb::UpdateIntegrationResponse { integration: Some(self.to_pb(&i)) }))
    }

    async fn delete_integration(
        &self,
        request: Request<pb::DeleteIntegrationRequest>,
    ) -> Result<Response<pb::DeleteIntegrationResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        self.service.delete_integration(&caller, id, non_empty(req.etag).as_deref()).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteIntegrationResponse {}))
    }

    async fn rotate_integration_secret(
        &self,
        request: Request<pb::RotateIntegrationSecretRequest>,
    ) -> Result<Response<pb::RotateIntegrationSecretResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let rotated = self.service.rotate_integration_secret(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::RotateIntegrationSecretResponse {
            integration: Some(self.to_pb(&rotated.integration)),
            secret: rotated.secret,
        }))
    }

    async fn list_integration_alerts(
        &self,
        request: Request<pb::ListIntegrationAlertsRequest>,
    ) -> Result<Response<pb::ListIntegrationAlertsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::Admin).await?;
        let req = request.into_inner();
        let id = parse_id("integration_id", &req.integration_id)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_integration_alerts(&caller, id, page).await.map_err(to_status)?;
        let (alerts, next_page_token) = alerts_page(page);
        Ok(Response::new(pb::ListIntegrationAlertsResponse { alerts, next_page_token }))
    }

    async fn list_incident_alerts(
        &self,
        request: Request<pb::ListIncidentAlertsRequest>,
    ) -> Result<Response<pb::ListIncidentAlertsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let key = IncidentKey::parse("incident_id", &req.incident_id).map_err(to_status)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_incident_alerts(&caller, key, page).await.map_err(to_status)?;
        let (alerts, next_page_token) = alerts_page(page);
        Ok(Response::new(pb::ListIncidentAlertsResponse { alerts, next_page_token }))
    }
}
