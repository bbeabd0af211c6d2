//! `incidentd.v1.IncidentService`: each method converts, calls the service, converts back.

use tonic::{Request, Response, Status};

use super::convert::{
    entry_to_pb, incident_patch_from_pb, incident_to_pb, link_kind_from_pb, link_to_pb, new_incident_from_pb, opt_ts,
    severity_from_pb, status_from_pb, visibility_from_pb,
};
use super::status::to_status;
use super::{authorize, mark_replayed, non_empty, page, parse_id};
use crate::domain::incident::search_terms;
use crate::domain::query::IncidentFilter;
use crate::domain::validate::Violations;
use crate::domain::{Error, IdempotencyKey, IncidentKey, NewUpdate, Permission, TransitionInput};
use crate::proto as pb;
use crate::proto::incident_service_server::IncidentService;
use crate::service::Service;

pub struct GrpcIncidentService {
    service: Service,
}

impl GrpcIncidentService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

fn key(field: &str, raw: &str) -> Result<IncidentKey, Status> {
    IncidentKey::parse(field, raw).map_err(to_status)
}

#[tonic::async_trait]
impl IncidentService for GrpcIncidentService {
    async fn create_incident(
        &self,
        request: Request<pb::CreateIncidentRequest>,
    ) -> Result<Response<pb::CreateIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let input = new_incident_from_pb(req.incident.unwrap_or_default())
            .map_err(|e| to_status(e.prefix_fields("incident")))?;
        let created = self
            .service
            .create_incident(&caller, input, idem.as_ref())
            .await
            .map_err(|e| to_status(e.prefix_fields("incident")))?;
        let res = Response::new(pb::CreateIncidentResponse { incident: Some(incident_to_pb(&created.value)) });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn get_incident(
        &self,
        request: Request<pb::GetIncidentRequest>,
    ) -> Result<Response<pb::GetIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let key = key("id", &request.into_inner().id)?;
        let incident = self.service.get_incident(&caller, key).await.map_err(to_status)?;
        Ok(Response::new(pb::GetIncidentResponse { incident: Some(incident_to_pb(&incident)) }))
    }

    async fn list_incidents(
        &self,
        request: Request<pb::ListIncidentsRequest>,
    ) -> Result<Response<pb::ListIncidentsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let statuses = req
            .statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| required_enum(&mut v, &format!("statuses[{i}]"), *s, status_from_pb))
            .collect();
        let severities = req
            .severities
            .iter()
            .enumerate()
            .filter_map(|(i, s)| required_enum(&mut v, &format!("severities[{i}]"), *s, severity_from_pb))
            .collect();
        let component_id = non_empty(req.component_id)
            .and_then(|c| crate::domain::ids::parse_uuid("component_id", &c).map_err(|e| v.extend(e).ok()).ok());
        let filter = IncidentFilter {
            statuses,
            severities,
            component_id,
            open: req.open,
            terms: search_terms(&mut v, "query", &req.query),
            created_after: opt_ts(&mut v, "created_after", &req.created_after),
            created_before: opt_ts(&mut v, "created_before", &req.created_before),
        };
        v.finish().map_err(to_status)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_incidents(&caller, filter, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListIncidentsResponse {
            incidents: page.items.iter().map(incident_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_incident(
        &self,
        request: Request<pb::UpdateIncidentRequest>,
    ) -> Result<Response<pb::UpdateIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let incident = req.incident.ok_or_else(|| to_status(Error::invalid("incident", "is required")))?;
        let key = key("incident.id", &incident.id)?;
        let patch = incident_patch_from_pb(incident, req.update_mask).map_err(to_status)?;
        let etag = non_empty(req.etag);
        let updated = self
            .service
            .update_incident(&caller, key, patch, etag.as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("incident")))?;
        Ok(Response::new(pb::UpdateIncidentResponse { incident: Some(incident_to_pb(&updated)) }))
    }

    async fn delete_incident(
        &self,
        request: Request<pb::DeleteIncidentRequest>,
    ) -> Result<Response<pb::DeleteIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("id", &req.id)?;
        self.service.delete_incident(&caller, key, non_empty(req.etag).as_deref()).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteIncidentResponse {}))
    }

    async fn transition_incident(
        &self,
        request: Request<pb::TransitionIncidentRequest>,
    ) -> Result<Response<pb::TransitionIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("id", &req.id)?;
        let mut v = Violations::new();
        let input = TransitionInput {
            to: status_from_pb(&mut v, "to", req.to),
            message: non_empty(req.message),
            visibility: visibility_from_pb(&mut v, "visibility", req.visibility),
            actor: non_empty(req.actor),
        };
        v.finish().map_err(to_status)?;
        let incident = self.service.transition_incident(&caller, key, input).await.map_err(to_status)?;
        Ok(Response::new(pb::TransitionIncidentResponse { incident: Some(incident_to_pb(&incident)) }))
    }

    async fn acknowledge_incident(
        &self,
        request: Request<pb::AcknowledgeIncidentRequest>,
    ) -> Result<Response<pb::AcknowledgeIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("id", &req.id)?;
        let by = non_empty(req.by);
        let incident = self.service.acknowledge_incident(&caller, key, by.as_deref()).await.map_err(to_status)?;
        Ok(Response::new(pb::AcknowledgeIncidentResponse { incident: Some(incident_to_pb(&incident)) }))
    }

    async fn create_incident_update(
        &self,
        request: Request<pb::CreateIncidentUpdateRequest>,
    ) -> Result<Response<pb::CreateIncidentUpdateResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let update = req.update.unwrap_or_default();
        let mut v = Violations::new();
        let input = NewUpdate {
            body: Some(update.body),
            visibility: visibility_from_pb(&mut v, "visibility", update.visibility),
            status: status_from_pb(&mut v, "status_to", update.status_to),
            author: non_empty(update.author),
        };
        v.finish().map_err(|e| to_status(e.prefix_fields("update")))?;
        let created = self
            .service
            .post_update(&caller, key, input, idem.as_ref())
            .await
            .map_err(|e| to_status(e.prefix_fields("update")))?;
        let (entry, incident) = &created.value;
        let res = Response::new(pb::CreateIncidentUpdateResponse {
            update: Some(entry_to_pb(entry)),
            incident: Some(incident_to_pb(incident)),
        });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn list_incident_updates(
        &self,
        request: Request<pb::ListIncidentUpdatesRequest>,
    ) -> Result<Response<pb::ListIncidentUpdatesResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let mut v = Violations::new();
        let visibility = visibility_from_pb(&mut v, "visibility", req.visibility);
        v.finish().map_err(to_status)?;
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_updates(&caller, key, visibility, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListIncidentUpdatesResponse {
            updates: page.items.iter().map(entry_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn merge_incident(
        &self,
        request: Request<pb::MergeIncidentRequest>,
    ) -> Result<Response<pb::MergeIncidentResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("id", &req.id)?;
        let actor = non_empty(req.actor);
        let (target, merged) =
            self.service.merge_incident(&caller, key, Some(&req.into), actor.as_deref()).await.map_err(to_status)?;
        Ok(Response::new(pb::MergeIncidentResponse {
            incident: Some(incident_to_pb(&target)),
            merged: Some(incident_to_pb(&merged)),
        }))
    }

    async fn create_incident_link(
        &self,
        request: Request<pb::CreateIncidentLinkRequest>,
    ) -> Result<Response<pb::CreateIncidentLinkResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let mut v = Violations::new();
        let kind = link_kind_from_pb(&mut v, "kind", req.kind);
        v.finish().map_err(to_status)?;
        let link = self
            .service
            .create_link(&caller, key, kind, Some(&req.other_incident_id))
            .await
            .map_err(|e| to_status(rename_field(e, "incident", "other_incident_id")))?;
        Ok(Response::new(pb::CreateIncidentLinkResponse { link: Some(link_to_pb(&link)) }))
    }

    async fn list_incident_links(
        &self,
        request: Request<pb::ListIncidentLinksRequest>,
    ) -> Result<Response<pb::ListIncidentLinksResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let key = key("incident_id", &request.into_inner().incident_id)?;
        let links = self.service.list_links(&caller, key).await.map_err(to_status)?;
        Ok(Response::new(pb::ListIncidentLinksResponse { links: links.iter().map(link_to_pb).collect() }))
    }

    async fn delete_incident_link(
        &self,
        request: Request<pb::DeleteIncidentLinkRequest>,
    ) -> Result<Response<pb::DeleteIncidentLinkResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let link_id = parse_id("link_id", &req.link_id)?;
        self.service.delete_link(&caller, key, link_id).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteIncidentLinkResponse {}))
    }
}

/// Names a field the service calls `from` as the request calls it (`to`).
fn rename_field(e: Error, from: &str, to: &str) -> Error {
    match e {
        Error::Validation(v) => Error::Validation(
            v.into_iter()
                .map(|mut f| {
                    if f.field == from {
                        f.field = to.to_string();
                    }
                    f
                })
                .collect(),
        ),
        other => other,
    }
}

/// A repeated enum filter entry: UNSPECIFIED is refused.
fn required_enum<T>(
    v: &mut Violations,
    field: &str,
    raw: i32,
    parse: fn(&mut Violations, &str, i32) -> Option<T>,
) -> Option<T> {
    let parsed = parse(v, field, raw);
    if raw == 0 {
        v.add(field, "must not be UNSPECIFIED");
    }
    parsed
}
