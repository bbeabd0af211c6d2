//! `incidentd.v1.PostmortemService`, `ActionService` and `StatsService`: each method
//! converts, calls the service, converts back.

use tonic::{Request, Response, Status};

use super::convert::{
    action_patch_from_pb, action_status_from_pb, action_to_pb, new_action_from_pb, new_postmortem_from_pb, opt_ts,
    postmortem_patch_from_pb, postmortem_status_from_pb, postmortem_to_pb, stats_to_pb,
};
use super::status::to_status;
use super::{authorize, mark_replayed, non_empty, page, parse_id};
use crate::domain::validate::Violations;
use crate::domain::{Error, IdempotencyKey, IncidentKey, Permission};
use crate::proto as pb;
use crate::proto::action_service_server::ActionService;
use crate::proto::postmortem_service_server::PostmortemService;
use crate::proto::stats_service_server::StatsService;
use crate::service::{ActionQuery, Service};

fn key(field: &str, raw: &str) -> Result<IncidentKey, Status> {
    IncidentKey::parse(field, raw).map_err(to_status)
}

pub struct GrpcPostmortemService {
    service: Service,
}

impl GrpcPostmortemService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl PostmortemService for GrpcPostmortemService {
    async fn create_postmortem(
        &self,
        request: Request<pb::CreatePostmortemRequest>,
    ) -> Result<Response<pb::CreatePostmortemResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let input = new_postmortem_from_pb(req.postmortem.unwrap_or_default())
            .map_err(|e| to_status(e.prefix_fields("postmortem")))?;
        let created = self
            .service
            .create_postmortem(&caller, key, input, idem.as_ref())
            .await
            .map_err(|e| to_status(e.prefix_fields("postmortem")))?;
        let res = Response::new(pb::CreatePostmortemResponse { postmortem: Some(postmortem_to_pb(&created.value)) });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn get_postmortem(
        &self,
        request: Request<pb::GetPostmortemRequest>,
    ) -> Result<Response<pb::GetPostmortemResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let key = key("incident_id", &request.into_inner().incident_id)?;
        let p = self.service.get_postmortem(&caller, key).await.map_err(to_status)?;
        Ok(Response::new(pb::GetPostmortemResponse { postmortem: Some(postmortem_to_pb(&p)) }))
    }

    async fn update_postmortem(
        &self,
        request: Request<pb::UpdatePostmortemRequest>,
    ) -> Result<Response<pb::UpdatePostmortemResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let p = req.postmortem.ok_or_else(|| to_status(Error::invalid("postmortem", "is required")))?;
        let patch = postmortem_patch_from_pb(p, req.update_mask).map_err(to_status)?;
        let p = self
            .service
            .update_postmortem(&caller, key, patch, non_empty(req.etag).as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("postmortem")))?;
        Ok(Response::new(pb::UpdatePostmortemResponse { postmortem: Some(postmortem_to_pb(&p)) }))
    }

    async fn transition_postmortem(
        &self,
        request: Request<pb::TransitionPostmortemRequest>,
    ) -> Result<Response<pb::TransitionPostmortemResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let key = key("incident_id", &req.incident_id)?;
        let mut v = Violations::new();
        let to = postmortem_status_from_pb(&mut v, "to", req.to);
        v.finish().map_err(to_status)?;
        let p = self
            .service
            .transition_postmortem(&caller, key, to, non_empty(req.etag).as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields_except("postmortem", &["to"])))?;
        Ok(Response::new(pb::TransitionPostmortemResponse { postmortem: Some(postmortem_to_pb(&p)) }))
    }
}

pub struct GrpcActionService {
    service: Service,
}

impl GrpcActionService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl ActionService for GrpcActionService {
    async fn create_action(
        &self,
        request: Request<pb::CreateActionRequest>,
    ) -> Result<Response<pb::CreateActionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let idem = IdempotencyKey::parse_optional("request_id", &req.request_id).map_err(to_status)?;
        let (incident, input) =
            new_action_from_pb(req.action.unwrap_or_default()).map_err(|e| to_status(e.prefix_fields("action")))?;
        let key = key("action.incident_id", &incident)?;
        let created = self
            .service
            .create_action(&caller, key, input, idem.as_ref())
            .await
            .map_err(|e| to_status(e.prefix_fields("action")))?;
        let res = Response::new(pb::CreateActionResponse { action: Some(action_to_pb(&created.value)) });
        Ok(mark_replayed(res, created.replayed))
    }

    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::GetActionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let a = self.service.get_action(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetActionResponse { action: Some(action_to_pb(&a)) }))
    }

    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let incident = match non_empty(req.incident_id) {
            Some(i) => Some(key("incident_id", &i)?),
            None => None,
        };
        let mut v = Violations::new();
        let statuses = req
            .statuses
            .iter()
            .enumerate()
            .filter_map(|(i, s)| action_status_from_pb(&mut v, &format!("statuses[{i}]"), *s))
            .collect();
        v.search_text("owner", &req.owner);
        v.finish().map_err(to_status)?;
        let query = ActionQuery { incident, owner: non_empty(req.owner), statuses, overdue: req.overdue };
        let page = page(req.page_size, &req.page_token)?;
        let page = self.service.list_actions(&caller, query, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListActionsResponse {
            actions: page.items.iter().map(action_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_action(
        &self,
        request: Request<pb::UpdateActionRequest>,
    ) -> Result<Response<pb::UpdateActionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let a = req.action.ok_or_else(|| to_status(Error::invalid("action", "is required")))?;
        let id = parse_id("action.id", &a.id)?;
        let patch = action_patch_from_pb(a, req.update_mask).map_err(to_status)?;
        let a = self
            .service
            .update_action(&caller, id, patch, non_empty(req.etag).as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("action")))?;
        Ok(Response::new(pb::UpdateActionResponse { action: Some(action_to_pb(&a)) }))
    }

    async fn delete_action(
        &self,
        request: Request<pb::DeleteActionRequest>,
    ) -> Result<Response<pb::DeleteActionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::WriteIncidents).await?;
        let req = request.into_inner();
        let id = parse_id("id", &req.id)?;
        self.service.delete_action(&caller, id, non_empty(req.etag).as_deref()).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteActionResponse {}))
    }
}

pub struct GrpcStatsService {
    service: Service,
}

impl GrpcStatsService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

#[tonic::async_trait]
impl StatsService for GrpcStatsService {
    async fn get_stats(&self, request: Request<pb::GetStatsRequest>) -> Result<Response<pb::GetStatsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        let from = opt_ts(&mut v, "from", &req.from);
        let to = opt_ts(&mut v, "to", &req.to);
        v.finish().map_err(to_status)?;
        let stats = self.service.stats(&caller, from, to).await.map_err(to_status)?;
        Ok(Response::new(stats_to_pb(&stats)))
    }
}
