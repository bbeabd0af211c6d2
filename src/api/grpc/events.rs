//! `incidentd.v1.EventService`: the event log and its live stream.

use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::authorize;
use super::convert::{json_to_pb, ts};
use super::status::to_status;
use crate::domain::query::EventFilter;
use crate::domain::validate::Violations;
use crate::domain::{Event, EventType, PageRequest, Permission};
use crate::proto as pb;
use crate::proto::event_service_server::EventService;
use crate::service::Service;

pub struct GrpcEventService {
    service: Service,
}

impl GrpcEventService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

fn event_to_pb(e: &Event, source: &str, internal: bool) -> pb::CloudEvent {
    let data = if internal { Some(&e.data) } else { e.public_data.as_ref() };
    let data = data.and_then(|d| match json_to_pb(d).kind {
        Some(prost_types::value::Kind::StructValue(s)) => Some(s),
        _ => None,
    });
    pb::CloudEvent {
        id: e.id.to_string(),
        source: source.to_string(),
        spec_version: "1.0".into(),
        r#type: e.event_type.as_str().into(),
        subject: e.subject.clone(),
        time: Some(ts(e.time)),
        data_content_type: "application/json".into(),
        data,
        sequence: e.seq.unwrap_or_default(),
    }
}

fn filter(v: &mut Violations, types: &[String], subject: String, public_only: bool) -> EventFilter {
    let types = types
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.parse::<EventType>().map_err(|e| v.add(format!("types[{i}]"), e)).ok())
        .collect();
    v.search_text("subject", &subject);
    EventFilter { types, subject: (!subject.is_empty()).then_some(subject), public_only }
}

#[tonic::async_trait]
impl EventService for GrpcEventService {
    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        if req.after < 0 {
            v.add("after", "must not be negative");
        }
        let filter = filter(&mut v, &req.types, req.subject, req.public_only);
        v.finish().map_err(to_status)?;
        let page = PageRequest::new(Some(i64::from(req.page_size)), None).map_err(to_status)?;
        let events = self.service.list_events(&caller, req.after, &filter, page.size).await.map_err(to_status)?;
        let source = self.service.public_url();
        Ok(Response::new(pb::ListEventsResponse {
            next_cursor: events.last().and_then(|e| e.seq).unwrap_or(req.after),
            events: events.iter().map(|e| event_to_pb(e, source, !req.public_only)).collect(),
        }))
    }

    type WatchEventsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WatchEventsResponse, Status>> + Send + 'static>>;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = authorize(&self.service, &request, Permission::ReadIncidents).await?;
        let req = request.into_inner();
        let mut v = Violations::new();
        if req.after.is_some_and(|a| a < 0) {
            v.add("after", "must not be negative");
        }
        let filter = filter(&mut v, &req.types, req.subject, req.public_only);
        v.finish().map_err(to_status)?;
        let events = self.service.watch_events(&caller, req.after, filter).await.map_err(to_status)?;
        let source = self.service.public_url().to_string();
        let internal = !req.public_only;
        let stream = ReceiverStream::new(events).map(move |item| match item {
            Ok(e) => Ok(pb::WatchEventsResponse { event: Some(event_to_pb(&e, &source, internal)) }),
            Err(e) => Err(to_status(e)),
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
