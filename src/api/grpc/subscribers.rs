//! `incidentd.v1.SubscriberService`: the customer subscribers for operators.

use tonic::{Request, Response, Status};

use super::convert::{subscriber_status_from_pb, subscriber_status_to_pb, ts};
use super::status::to_status;
use super::{authorize, page, parse_id};
use crate::domain::Permission;
use crate::domain::subscriber::Subscriber;
use crate::domain::subscriber_list::{ImportLine, ImportReport, SubscriberFilter};
use crate::domain::validate::Violations;
use crate::proto as pb;
use crate::proto::subscriber_service_server::SubscriberService;
use crate::service::Service;

pub struct GrpcSubscriberService {
    service: Service,
}

impl GrpcSubscriberService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

fn subscriber_to_pb(s: &Subscriber) -> pb::Subscriber {
    let Subscriber {
        id,
        email,
        components,
        lang,
        status,
        created_at,
        confirmed_at,
        unsubscribed_at,
        mailed_at: _,
        mails_today: _,
        updated_at,
    } = s;
    pb::Subscriber {
        id: id.to_string(),
        email: email.clone(),
        components: components.iter().map(ToString::to_string).collect(),
        lang: lang.clone(),
        status: subscriber_status_to_pb(*status),
        created_at: Some(ts(*created_at)),
        confirmed_at: confirmed_at.map(ts),
        unsubscribed_at: unsubscribed_at.map(ts),
        updated_at: Some(ts(*updated_at)),
    }
}

/// The filter of a list or export (fields prefixed `filter.`).
fn filter_from_pb(f: Option<pb::SubscriberFilter>) -> Result<SubscriberFilter, Status> {
    let f = f.unwrap_or_default();
    let mut v = Violations::new();
    let statuses = f
        .statuses
        .iter()
        .enumerate()
        .filter_map(|(i, s)| subscriber_status_from_pb(&mut v, &format!("filter.statuses[{i}]"), *s))
        .collect();
    let component = match f.component_id.trim() {
        "" => None,
        raw => {
            uuid::Uuid::parse_str(raw).map_err(|_| v.add("filter.component_id", "must be a component id (a UUID)")).ok()
        }
    };
    v.finish().map_err(to_status)?;
    let search = Some(f.query.trim().to_string()).filter(|q| !q.is_empty());
    Ok(SubscriberFilter { statuses, component, search })
}

fn line_to_pb(l: ImportLine) -> pb::ImportLine {
    pb::ImportLine { line: l.line, email: l.email.unwrap_or_default(), reason: l.reason }
}

#[tonic::async_trait]
impl SubscriberService for GrpcSubscriberService {
    async fn list_subscribers(
        &self,
        request: Request<pb::ListSubscribersRequest>,
    ) -> Result<Response<pb::ListSubscribersResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let req = request.into_inner();
        let page = page(req.page_size, &req.page_token)?;
        let filter = filter_from_pb(req.filter)?;
        let page = self.service.list_subscribers(&caller, filter, page).await.map_err(to_status)?;
        Ok(Response::new(pb::ListSubscribersResponse {
            subscribers: page.items.iter().map(subscriber_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_subscriber(
        &self,
        request: Request<pb::GetSubscriberRequest>,
    ) -> Result<Response<pb::GetSubscriberResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        let s = self.service.get_subscriber(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetSubscriberResponse { subscriber: Some(subscriber_to_pb(&s)) }))
    }

    async fn count_subscribers(
        &self,
        request: Request<pb::CountSubscribersRequest>,
    ) -> Result<Response<pb::CountSubscribersResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let c = self.service.count_subscribers(&caller).await.map_err(to_status)?;
        Ok(Response::new(pb::CountSubscribersResponse {
            pending: c.pending,
            confirmed: c.confirmed,
            unsubscribed: c.unsubscribed,
            all_components: c.all_components,
            components: c
                .components
                .into_iter()
                .map(|c| pb::ComponentSubscriberCount {
                    component_id: c.component_id.to_string(),
                    name: c.name,
                    chose: c.chose,
                    reached: c.reached,
                })
                .collect(),
        }))
    }

    async fn delete_subscriber(
        &self,
        request: Request<pb::DeleteSubscriberRequest>,
    ) -> Result<Response<pb::DeleteSubscriberResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let id = parse_id("id", &request.into_inner().id)?;
        self.service.delete_subscriber(&caller, id).await.map_err(to_status)?;
        Ok(Response::new(pb::DeleteSubscriberResponse {}))
    }

    async fn export_subscribers(
        &self,
        request: Request<pb::ExportSubscribersRequest>,
    ) -> Result<Response<pb::ExportSubscribersResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let filter = filter_from_pb(request.into_inner().filter)?;
        let (csv, count) = self.service.export_subscribers(&caller, filter).await.map_err(to_status)?;
        Ok(Response::new(pb::ExportSubscribersResponse { csv, count: count as u64 }))
    }

    async fn import_subscribers(
        &self,
        request: Request<pb::ImportSubscribersRequest>,
    ) -> Result<Response<pb::ImportSubscribersResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let csv = request.into_inner().csv;
        let ImportReport { imported, skipped, rejected, ignored_columns } =
            self.service.import_subscribers(&caller, &csv).await.map_err(to_status)?;
        Ok(Response::new(pb::ImportSubscribersResponse {
            imported,
            skipped: skipped.into_iter().map(line_to_pb).collect(),
            rejected: rejected.into_iter().map(line_to_pb).collect(),
            ignored_columns,
        }))
    }
}
