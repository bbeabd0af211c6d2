//! `incidentd.v1.SubscriptionService`.

use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::convert::{
    channel_from_pb, channel_to_pb, delivery_status_from_pb, delivery_status_to_pb, severity_from_pb, severity_to_pb,
    ts,
};
use super::status::to_status;
use super::{authorize, page, parse_id};
use crate::domain::ids::parse_uuid;
use crate::domain::query::AttemptsOf;
use crate::domain::subscription::{NewSubscription, SubscriptionPatch};
use crate::domain::validate::Violations;
use crate::domain::{Delivery, DeliveryAttempt, Error, EventType, Permission, Subscription};
use crate::proto as pb;
use crate::proto::subscription_service_server::SubscriptionService;
use crate::service::Service;

pub struct GrpcSubscriptionService {
    service: Service,
}

impl GrpcSubscriptionService {
    pub fn new(service: Service) -> Self {
        Self { service }
    }
}

fn subscription_to_pb(s: &Subscription) -> pb::Subscription {
    pb::Subscription {
        id: s.id.to_string(),
        channel: channel_to_pb(s.channel),
        target: s.target.clone(),
        event_types: s.event_types.iter().map(|t| t.as_str().to_string()).collect(),
        min_severity: s.min_severity.map(severity_to_pb).unwrap_or_default(),
        component_ids: s.component_ids.iter().map(Uuid::to_string).collect(),
        include_internal: s.include_internal,
        paused: s.paused,
        disabled_at: s.disabled_at.map(ts),
        disabled_reason: s.disabled_reason.clone(),
        failing_since: s.failing_since.map(ts),
        created_at: Some(ts(s.created_at)),
        updated_at: Some(ts(s.updated_at)),
        created_by: s.created_by.clone(),
        version: s.version,
        etag: s.etag(),
    }
}

fn delivery_to_pb(d: &Delivery) -> pb::Delivery {
    pb::Delivery {
        id: d.id.to_string(),
        event_id: d.event_id.to_string(),
        subscription_id: d.subscription_id.to_string(),
        event_type: d.event_type.as_str().into(),
        status: delivery_status_to_pb(d.status),
        attempts: d.attempts,
        next_attempt_at: d.next_attempt_at.map(ts),
        last_attempt_at: d.last_attempt_at.map(ts),
        last_status_code: d.last_status_code,
        last_error: d.last_error.clone(),
        created_at: Some(ts(d.created_at)),
        delivered_at: d.delivered_at.map(ts),
    }
}

fn attempt_to_pb(a: &DeliveryAttempt) -> pb::DeliveryAttempt {
    pb::DeliveryAttempt {
        id: a.id.to_string(),
        delivery_id: a.delivery_id.to_string(),
        subscription_id: a.subscription_id.to_string(),
        attempted_at: Some(ts(a.attempted_at)),
        status_code: a.status_code,
        latency_ms: a.latency_ms,
        response_excerpt: a.response_excerpt.clone(),
        error: a.error.clone(),
    }
}

fn event_types(v: &mut Violations, raw: &[String]) -> Vec<EventType> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, t)| t.parse().map_err(|e: String| v.add(format!("event_types[{i}]"), e)).ok())
        .collect()
}

fn component_ids(v: &mut Violations, raw: &[String]) -> Vec<Uuid> {
    raw.iter()
        .enumerate()
        .filter_map(|(i, c)| parse_uuid(&format!("component_ids[{i}]"), c).map_err(|e| v.extend(e).ok()).ok())
        .collect()
}

#[tonic::async_trait]
impl SubscriptionService for GrpcSubscriptionService {
    async fn create_subscription(
        &self,
        request: Request<pb::CreateSubscriptionRequest>,
    ) -> Result<Response<pb::CreateSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let s = request.into_inner().subscription.unwrap_or_default();
        let mut v = Violations::new();
        let input = NewSubscription {
            channel: channel_from_pb(&mut v, "channel", s.channel),
            target: Some(s.target),
            event_types: event_types(&mut v, &s.event_types),
            min_severity: severity_from_pb(&mut v, "min_severity", s.min_severity),
            component_ids: component_ids(&mut v, &s.component_ids),
            include_internal: s.include_internal,
        };
        v.finish().map_err(|e| to_status(e.prefix_fields("subscription")))?;
        let created = self
            .service
            .create_subscription(&caller, input)
            .await
            .map_err(|e| to_status(e.prefix_fields("subscription")))?
            .value;
        Ok(Response::new(pb::CreateSubscriptionResponse {
            subscription: Some(subscription_to_pb(&created.subscription)),
            secret: created.secret.unwrap_or_default(),
        }))
    }

    async fn get_subscription(
        &self,
        request: Request<pb::GetSubscriptionRequest>,
    ) -> Result<Response<pb::GetSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let s = self
            .service
            .get_subscription(&caller, parse_id("id", &request.into_inner().id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::GetSubscriptionResponse { subscription: Some(subscription_to_pb(&s)) }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let req = request.into_inner();
        let page =
            self.service.list_subscriptions(&caller, page(req.page_size, &req.page_token)?).await.map_err(to_status)?;
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: page.items.iter().map(subscription_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::UpdateSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let req = request.into_inner();
        let s = req.subscription.ok_or_else(|| to_status(Error::invalid("subscription", "is required")))?;
        let sub_id = parse_id("subscription.id", &s.id)?;
        let paths = req.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(to_status(Error::invalid("update_mask", "names no field to update")));
        }
        let mut v = Violations::new();
        let mut patch = SubscriptionPatch::default();
        for path in &paths {
            match path.as_str() {
                "target" => patch.target = Some(s.target.clone()),
                "event_types" => patch.event_types = Some(event_types(&mut v, &s.event_types)),
                "min_severity" => patch.min_severity = Some(severity_from_pb(&mut v, "min_severity", s.min_severity)),
                "component_ids" => patch.component_ids = Some(component_ids(&mut v, &s.component_ids)),
                "include_internal" => patch.include_internal = Some(s.include_internal),
                "paused" => patch.paused = Some(s.paused),
                p => v.add("update_mask", format!("{p:?} cannot be updated")),
            }
        }
        v.finish().map_err(|e| to_status(e.prefix_fields_except("subscription", &["update_mask"])))?;
        let etag = (!req.etag.is_empty()).then_some(req.etag);
        let updated = self
            .service
            .update_subscription(&caller, sub_id, patch, etag.as_deref())
            .await
            .map_err(|e| to_status(e.prefix_fields("subscription")))?;
        Ok(Response::new(pb::UpdateSubscriptionResponse { subscription: Some(subscription_to_pb(&updated)) }))
    }

    async fn delete_subscription(
        &self,
        request: Request<pb::DeleteSubscriptionRequest>,
    ) -> Result<Response<pb::DeleteSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        self.service
            .delete_subscription(&caller, parse_id("id", &request.into_inner().id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteSubscriptionResponse {}))
    }

    async fn pause_subscription(
        &self,
        request: Request<pb::PauseSubscriptionRequest>,
    ) -> Result<Response<pb::PauseSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let patch = SubscriptionPatch { paused: Some(true), ..Default::default() };
        let s = self
            .service
            .update_subscription(&caller, parse_id("id", &request.into_inner().id)?, patch, None)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::PauseSubscriptionResponse { subscription: Some(subscription_to_pb(&s)) }))
    }

    async fn resume_subscription(
        &self,
        request: Request<pb::ResumeSubscriptionRequest>,
    ) -> Result<Response<pb::ResumeSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let patch = SubscriptionPatch { paused: Some(false), ..Default::default() };
        let s = self
            .service
            .update_subscription(&caller, parse_id("id", &request.into_inner().id)?, patch, None)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ResumeSubscriptionResponse { subscription: Some(subscription_to_pb(&s)) }))
    }

    async fn rotate_subscription_secret(
        &self,
        request: Request<pb::RotateSubscriptionSecretRequest>,
    ) -> Result<Response<pb::RotateSubscriptionSecretResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let rotated =
            self.service.rotate_secret(&caller, parse_id("id", &request.into_inner().id)?).await.map_err(to_status)?;
        Ok(Response::new(pb::RotateSubscriptionSecretResponse {
            subscription: Some(subscription_to_pb(&rotated.subscription)),
            secret: rotated.secret.unwrap_or_default(),
        }))
    }

    async fn test_subscription(
        &self,
        request: Request<pb::TestSubscriptionRequest>,
    ) -> Result<Response<pb::TestSubscriptionResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let attempt = self
            .service
            .test_subscription(&caller, parse_id("id", &request.into_inner().id)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::TestSubscriptionResponse { attempt: Some(attempt_to_pb(&attempt)) }))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let req = request.into_inner();
        let sub = parse_id("subscription_id", &req.subscription_id)?;
        let mut v = Violations::new();
        let status = delivery_status_from_pb(&mut v, "status", req.status);
        v.finish().map_err(to_status)?;
        let page = self
            .service
            .list_deliveries(&caller, sub, status, page(req.page_size, &req.page_token)?)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::ListDeliveriesResponse {
            deliveries: page.items.iter().map(delivery_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn get_delivery(
        &self,
        request: Request<pb::GetDeliveryRequest>,
    ) -> Result<Response<pb::GetDeliveryResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let d =
            self.service.get_delivery(&caller, parse_id("id", &request.into_inner().id)?).await.map_err(to_status)?;
        Ok(Response::new(pb::GetDeliveryResponse { delivery: Some(delivery_to_pb(&d)) }))
    }

    async fn list_delivery_attempts(
        &self,
        request: Request<pb::ListDeliveryAttemptsRequest>,
    ) -> Result<Response<pb::ListDeliveryAttemptsResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let req = request.into_inner();
        let of = match (req.delivery_id.is_empty(), req.subscription_id.is_empty()) {
            (false, true) => AttemptsOf::Delivery(parse_id("delivery_id", &req.delivery_id)?),
            (true, false) => AttemptsOf::Subscription(parse_id("subscription_id", &req.subscription_id)?),
            _ => {
                return Err(to_status(Error::invalid(
                    "delivery_id",
                    "give exactly one of delivery_id and subscription_id",
                )));
            }
        };
        let page =
            self.service.list_attempts(&caller, of, page(req.page_size, &req.page_token)?).await.map_err(to_status)?;
        Ok(Response::new(pb::ListDeliveryAttemptsResponse {
            attempts: page.items.iter().map(attempt_to_pb).collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn retry_delivery(
        &self,
        request: Request<pb::RetryDeliveryRequest>,
    ) -> Result<Response<pb::RetryDeliveryResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let d =
            self.service.retry_delivery(&caller, parse_id("id", &request.into_inner().id)?).await.map_err(to_status)?;
        Ok(Response::new(pb::RetryDeliveryResponse { delivery: Some(delivery_to_pb(&d)) }))
    }

    async fn retry_failed_deliveries(
        &self,
        request: Request<pb::RetryFailedDeliveriesRequest>,
    ) -> Result<Response<pb::RetryFailedDeliveriesResponse>, Status> {
        let caller = authorize(&self.service, &request, Permission::ManageSubscriptions).await?;
        let sub = parse_id("subscription_id", &request.into_inner().subscription_id)?;
        let n = self.service.retry_failed_deliveries(&caller, sub).await.map_err(to_status)?;
        Ok(Response::new(pb::RetryFailedDeliveriesResponse { requeued: i64::try_from(n).unwrap_or(i64::MAX) }))
    }
}
