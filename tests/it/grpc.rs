//! gRPC: every method of both services, health checks and server reflection.

use incidentd::proto;
use incidentd::proto::component_service_client::ComponentServiceClient;
use tokio_stream::StreamExt;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::TestApp;

#[tokio::test]
async fn every_incident_method() {
    let app = TestApp::spawn().await;
    let mut client = app.incidents_grpc().await;
    let mut components = ComponentServiceClient::with_interceptor(app.channel().await, app.bearer());
    let component = components
        .create_component(proto::CreateComponentRequest {
            component: Some(proto::Component { name: "Login".into(), ..Default::default() }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .component
        .unwrap();

    let created = client
        .create_incident(proto::CreateIncidentRequest {
            incident: Some(proto::Incident {
                title: "Login failures".into(),
                summary: "SSO errors".into(),
                severity: proto::Severity::Sev1 as i32,
                affected_components: vec![proto::AffectedComponent {
                    component_id: component.id.clone(),
                    status: proto::ComponentStatus::MajorOutage as i32,
                }],
                labels: [("team".to_string(), "identity".to_string())].into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(created.reference, "INC-1");
    assert_eq!(created.status, proto::IncidentStatus::Investigating as i32);
    assert_eq!(created.impact, proto::Impact::None as i32);
    assert_eq!(created.etag, "\"1\"");
    assert!(created.created_at.is_some() && created.acknowledged_at.is_none());

    let got = client.get_incident(proto::GetIncidentRequest { id: "INC-1".into() }).await.unwrap().into_inner();
    assert_eq!(got.incident.unwrap(), created);

    // UpdateIncident: a field mask with nested and map paths.
    let updated = client
        .update_incident(proto::UpdateIncidentRequest {
            incident: Some(proto::Incident {
                id: created.id.clone(),
                title: "Login failures (SSO)".into(),
                workaround: Some(proto::Workaround { availability: 0, text: Some("use a password".into()) }),
                labels: [("region".to_string(), "us".to_string())].into(),
                summary: "ignored: not in the mask".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["title".into(), "workaround.text".into(), "labels.region".into()],
            }),
            etag: created.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(updated.title, "Login failures (SSO)");
    assert_eq!(updated.summary, "SSO errors");
    assert_eq!(updated.workaround.as_ref().unwrap().text.as_deref(), Some("use a password"));
    assert_eq!(updated.labels.len(), 2, "labels.region merged: {:?}", updated.labels);
    assert_eq!(updated.version, 2);

    // An empty mask updates the populated fields only.
    let updated = client
        .update_incident(proto::UpdateIncidentRequest {
            incident: Some(proto::Incident {
                id: created.reference.clone(),
                impact: proto::Impact::Critical as i32,
                affected_customers: Some(5000),
                ..Default::default()
            }),
            update_mask: None,
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(updated.impact, proto::Impact::Critical as i32);
    assert_eq!(updated.affected_customers, Some(5000));
    assert_eq!(updated.title, "Login failures (SSO)");

    let acked = client
        .acknowledge_incident(proto::AcknowledgeIncidentRequest { id: created.id.clone(), by: "jo".into() })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(acked.acknowledged_by.as_deref(), Some("jo"));
    let again = client
        .acknowledge_incident(proto::AcknowledgeIncidentRequest { id: created.id.clone(), by: "kim".into() })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    assert_eq!(again, acked);

    let posted = client
        .create_incident_update(proto::CreateIncidentUpdateRequest {
            incident_id: created.reference.clone(),
            update: Some(proto::IncidentUpdate {
                body: "Fix deployed, watching.".into(),
                visibility: proto::Visibility::Public as i32,
                status_to: proto::IncidentStatus::Monitoring as i32,
                author: "lee".into(),
                ..Default::default()
            }),
            request_id: "u1".into(),
        })
        .await
        .unwrap();
    assert!(posted.metadata().get("idempotent-replayed").is_none());
    let posted = posted.into_inner();
    let entry = posted.update.unwrap();
    assert_eq!(entry.kind, proto::UpdateKind::Update as i32);
    assert_eq!(entry.status_from, proto::IncidentStatus::Investigating as i32);
    assert_eq!(entry.status_to, proto::IncidentStatus::Monitoring as i32);
    assert_eq!(posted.incident.unwrap().status, proto::IncidentStatus::Monitoring as i32);

    let timeline = client
        .list_incident_updates(proto::ListIncidentUpdatesRequest {
            incident_id: created.id.clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(timeline.updates.len(), 2);
    assert_eq!(timeline.updates[0].kind, proto::UpdateKind::Created as i32);
    assert_eq!(timeline.updates[1].kind, proto::UpdateKind::FieldChange as i32);
    let field_change = &timeline.updates[1];
    assert!(field_change.changes.iter().any(|c| c.field == "title"));
    let rest = client
        .list_incident_updates(proto::ListIncidentUpdatesRequest {
            incident_id: created.id.clone(),
            page_token: timeline.next_page_token.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<i32> = rest.updates.iter().map(|u| u.kind).collect();
    assert_eq!(
        kinds,
        [
            proto::UpdateKind::FieldChange as i32,
            proto::UpdateKind::Acknowledgement as i32,
            proto::UpdateKind::Update as i32
        ]
    );
    assert!(rest.next_page_token.is_empty());
    let public = client
        .list_incident_updates(proto::ListIncidentUpdatesRequest {
            incident_id: created.id.clone(),
            visibility: proto::Visibility::Public as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(public.updates.len(), 1);

    // ListIncidents with filters.
    let second = client
        .create_incident(proto::CreateIncidentRequest {
            incident: Some(proto::Incident {
                title: "Billing delay".into(),
                severity: proto::Severity::Sev4 as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .incident
        .unwrap();
    let list = |req: proto::ListIncidentsRequest| {
        let mut client = client.clone();
        async move {
            client
                .list_incidents(req)
                .await
                .unwrap()
                .into_inner()
                .incidents
                .into_iter()
                .map(|i| i.title)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(Default::default()).await, ["Billing delay", "Login failures (SSO)"]);
    assert_eq!(
        list(proto::ListIncidentsRequest {
            statuses: vec![proto::IncidentStatus::Monitoring as i32],
            ..Default::default()
        })
        .await,
        ["Login failures (SSO)"]
    );
    assert_eq!(
        list(proto::ListIncidentsRequest { severities: vec![proto::Severity::Sev4 as i32], ..Default::default() })
            .await,
        ["Billing delay"]
    );
    assert_eq!(
        list(proto::ListIncidentsRequest { component_id: component.id.clone(), ..Default::default() }).await,
        ["Login failures (SSO)"]
    );
    assert_eq!(
        list(proto::ListIncidentsRequest { query: "BILLING".into(), ..Default::default() }).await,
        ["Billing delay"]
    );
    assert_eq!(
        list(proto::ListIncidentsRequest { open: Some(false), ..Default::default() }).await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(proto::ListIncidentsRequest { created_before: second.created_at, ..Default::default() }).await,
        ["Login failures (SSO)"]
    );
    let page = client
        .list_incidents(proto::ListIncidentsRequest { page_size: 1, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.incidents.len(), 1);
    let next = client
        .list_incidents(proto::ListIncidentsRequest {
            page_size: 1,
            page_token: page.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next.incidents[0].title, "Login failures (SSO)");

    let err = client
        .delete_incident(proto::DeleteIncidentRequest { id: second.id.clone(), etag: "\"9\"".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);
    client.delete_incident(proto::DeleteIncidentRequest { id: second.id.clone(), etag: String::new() }).await.unwrap();
    let err = client.get_incident(proto::GetIncidentRequest { id: second.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn every_component_method() {
    let app = TestApp::spawn().await;
    let mut client = app.components_grpc().await;
    let create = |name: &str, group: Option<&str>, position: i32| proto::CreateComponentRequest {
        component: Some(proto::Component {
            name: name.into(),
            group: group.map(str::to_string),
            position,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let api = client.create_component(create("API", Some("Core"), 1)).await.unwrap().into_inner().component.unwrap();
    assert_eq!(api.status, proto::ComponentStatus::Operational as i32);
    assert_eq!(api.effective_status, proto::ComponentStatus::Operational as i32);
    client.create_component(create("Web", Some("Core"), 0)).await.unwrap();
    let err = client.create_component(create("web", None, 0)).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);

    let got = client.get_component(proto::GetComponentRequest { id: api.id.clone() }).await.unwrap().into_inner();
    assert_eq!(got.component.unwrap(), api);

    let listed = client.list_components(proto::ListComponentsRequest::default()).await.unwrap().into_inner();
    let names: Vec<&str> = listed.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["Web", "API"]);

    let updated = client
        .update_component(proto::UpdateComponentRequest {
            component: Some(proto::Component {
                id: api.id.clone(),
                status: proto::ComponentStatus::PartialOutage as i32,
                description: "ignored".into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["status".into()] }),
            etag: api.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .component
        .unwrap();
    assert_eq!(updated.status, proto::ComponentStatus::PartialOutage as i32);
    assert_eq!(updated.effective_status, proto::ComponentStatus::PartialOutage as i32);
    assert_eq!(updated.description, "");
    let err = client
        .update_component(proto::UpdateComponentRequest {
            component: Some(proto::Component { id: api.id.clone(), name: "New".into(), ..Default::default() }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }),
            etag: api.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Aborted);

    client.delete_component(proto::DeleteComponentRequest { id: api.id.clone(), etag: String::new() }).await.unwrap();
    let err = client.get_component(proto::GetComponentRequest { id: api.id.clone() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn health_and_reflection_for_grpcurl_and_kubernetes_probes() {
    let app = TestApp::spawn().await;
    let channel = app.channel().await;
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "incidentd.v1.IncidentService", "incidentd.v1.ComponentService"] {
        let res = health.check(HealthCheckRequest { service: service.into() }).await.unwrap().into_inner();
        assert_eq!(res.status, 1, "{service:?} is SERVING");
    }

    // Reflection v1: list services, then resolve the health service's descriptor.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let requests = vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("grpc.health.v1.Health".into())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol("incidentd.v1.IncidentService".into())),
        },
    ];
    let mut stream = reflection.server_reflection_info(tokio_stream::iter(requests)).await.unwrap().into_inner();
    let mut responses = Vec::new();
    while let Some(r) = stream.next().await {
        responses.push(r.unwrap().message_response.unwrap());
    }
    let MessageResponse::ListServicesResponse(list) = &responses[0] else { panic!("{:?}", responses[0]) };
    let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "incidentd.v1.IncidentService",
        "incidentd.v1.ComponentService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    for r in &responses[1..] {
        let MessageResponse::FileDescriptorResponse(files) = r else { panic!("descriptor expected, got {r:?}") };
        assert!(!files.file_descriptor_proto.is_empty());
    }

    // Reflection v1alpha answers too (older grpcurl).
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let mut alpha = AlphaClient::new(channel);
    let req = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol("grpc.health.v1.Health".into())),
    };
    let mut stream = alpha.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let r = stream.next().await.unwrap().unwrap().message_response.unwrap();
    assert!(matches!(r, AlphaResponse::FileDescriptorResponse(_)), "{r:?}");
}
