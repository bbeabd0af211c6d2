//! Integrations over gRPC: create (the secret shown once), get, list, update with a field
//! mask and an etag, rotate the secret, delete, invalid input naming the field, and the
//! alerts an Alertmanager webhook (over REST) leaves on the integration and its incident.

use std::collections::BTreeMap;

use incidentd::proto;
use incidentd::proto::integration_service_client::IntegrationServiceClient;
use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{TestApp, bad_request_fields, http_client};

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask { paths: paths.iter().map(|p| p.to_string()).collect() })
}

#[tokio::test]
async fn integrations_over_grpc_from_create_to_delete_with_their_alerts() {
    let app = TestApp::spawn().await;
    let db = app.create_component("Database").await["id"].as_str().unwrap().to_string();
    let mut grpc = IntegrationServiceClient::with_interceptor(app.channel().await, app.bearer());

    // Create: the secret is in the response, this once.
    let created = grpc
        .create_integration(proto::CreateIntegrationRequest {
            integration: Some(proto::Integration {
                name: "prod alerts".into(),
                kind: proto::IntegrationKind::Alertmanager as i32,
                default_severity: proto::Severity::Sev2 as i32,
                rules: vec![proto::LabelRule {
                    labels: BTreeMap::from([("team".to_string(), "db".to_string())]),
                    severity: proto::Severity::Sev1 as i32,
                    components: vec![db.clone()],
                    component_status: proto::ComponentStatus::PartialOutage as i32,
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let secret = created.secret;
    let integration = created.integration.unwrap();
    let id = integration.id.clone();
    assert_eq!(secret.len(), 32);
    assert!(secret.starts_with(&integration.secret_prefix), "{secret} / {}", integration.secret_prefix);
    assert!(
        integration.receiver_url.ends_with(&format!("/v1/integrations/{id}/alertmanager")),
        "{}",
        integration.receiver_url
    );
    assert_eq!(integration.kind, proto::IntegrationKind::Alertmanager as i32);
    assert_eq!(integration.grouping, proto::Grouping::GroupKey as i32, "the default");
    assert_eq!(integration.auto_resolve, Some(true), "the default");
    assert_eq!((integration.version, integration.etag.as_str()), (1, "\"1\""));
    assert_eq!(integration.rules[0].components, [db]);
    assert_eq!(integration.rules[0].component_status, proto::ComponentStatus::PartialOutage as i32);

    // REST serves the same integration, without its secret.
    let rest = app.get(&format!("/v1/integrations/{id}")).await;
    assert_eq!(rest.status, StatusCode::OK, "{}", rest.body);
    assert_eq!(rest.body["name"], "prod alerts");
    assert_eq!(rest.body["default_severity"], "sev2");
    assert_eq!(rest.body["receiver_url"], integration.receiver_url.as_str());
    assert!(!rest.body.to_string().contains(&secret));

    // Get and list.
    let got = grpc
        .get_integration(proto::GetIntegrationRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner()
        .integration
        .unwrap();
    assert_eq!(got, integration);
    let listed = grpc.list_integrations(proto::ListIntegrationsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.integrations, std::slice::from_ref(&integration));
    assert!(listed.next_page_token.is_empty());
    let unknown = grpc.get_integration(proto::GetIntegrationRequest { id: uuid::Uuid::nil().to_string() }).await;
    assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);

    // Update only what the mask names, with the current etag.
    let updated = grpc
        .update_integration(proto::UpdateIntegrationRequest {
            integration: Some(proto::Integration {
                id: id.clone(),
                name: "prod alertmanager".into(),
                // Not in the mask: left as it is.
                default_severity: proto::Severity::Sev4 as i32,
                auto_resolve: Some(false),
                ..Default::default()
            }),
            update_mask: mask(&["name", "auto_resolve"]),
            etag: integration.etag.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .integration
        .unwrap();
    assert_eq!(updated.name, "prod alertmanager");
    assert_eq!(updated.auto_resolve, Some(false));
    assert_eq!(updated.default_severity, proto::Severity::Sev2 as i32);
    assert_eq!(updated.rules, integration.rules);
    assert_eq!((updated.version, updated.etag.as_str()), (2, "\"2\""));
    assert_eq!(app.get(&format!("/v1/integrations/{id}")).await.body["auto_resolve"], false);
    // A stale etag is refused as every other Update method refuses it (ABORTED).
    let stale = grpc
        .update_integration(proto::UpdateIntegrationRequest {
            integration: Some(proto::Integration { id: id.clone(), name: "x".into(), ..Default::default() }),
            update_mask: mask(&["name"]),
            etag: integration.etag.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");

    // Rotate: a new secret and prefix.
    let rotated = grpc
        .rotate_integration_secret(proto::RotateIntegrationSecretRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    let new_secret = rotated.secret;
    let rotated = rotated.integration.unwrap();
    assert_eq!(new_secret.len(), 32);
    assert_ne!(new_secret, secret);
    assert_ne!(rotated.secret_prefix, integration.secret_prefix);
    assert!(new_secret.starts_with(&rotated.secret_prefix));
    assert_eq!(rotated.version, 3);

    // Invalid input names the field.
    let invalid = grpc
        .create_integration(proto::CreateIntegrationRequest { integration: Some(Default::default()) })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_request_fields(&invalid), ["integration.name", "integration.kind"]);
    let bad_rule = |rule: proto::LabelRule| proto::CreateIntegrationRequest {
        integration: Some(proto::Integration {
            name: "x".into(),
            kind: proto::IntegrationKind::Grafana as i32,
            rules: vec![rule],
            ..Default::default()
        }),
    };
    let invalid = grpc
        .create_integration(bad_rule(proto::LabelRule {
            components: vec!["not-a-uuid".into()],
            component_status: 99,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        bad_request_fields(&invalid),
        ["integration.rules[0].components[0]", "integration.rules[0].component_status"]
    );
    let invalid = grpc.create_integration(bad_rule(proto::LabelRule::default())).await.unwrap_err();
    assert_eq!(bad_request_fields(&invalid), ["integration.rules[0]"]);
    let unknown_component = grpc
        .create_integration(bad_rule(proto::LabelRule {
            components: vec![uuid::Uuid::nil().to_string()],
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&unknown_component), ["integration.rules[0].components[0]"]);
    let invalid = grpc
        .update_integration(proto::UpdateIntegrationRequest {
            integration: Some(proto::Integration { id: id.clone(), name: String::new(), ..Default::default() }),
            update_mask: mask(&["name"]),
            etag: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_request_fields(&invalid), ["integration.name"]);
    for paths in [&[][..], &["kind"], &["secret_prefix"], &["nope"]] {
        let invalid = grpc
            .update_integration(proto::UpdateIntegrationRequest {
                integration: Some(proto::Integration { id: id.clone(), ..Default::default() }),
                update_mask: mask(paths),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(invalid.code(), tonic::Code::InvalidArgument, "{paths:?}");
        assert_eq!(bad_request_fields(&invalid), ["update_mask"], "{paths:?}");
    }
    let invalid = grpc.get_integration(proto::GetIntegrationRequest { id: "nope".into() }).await.unwrap_err();
    assert_eq!(bad_request_fields(&invalid), ["id"]);

    // One Alertmanager notification over REST, with the new secret (the old one is refused).
    let body = json!({
        "version": "4",
        "groupKey": "{}:{alertname=\"X\"}",
        "status": "firing",
        "receiver": "incidentd",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "X"},
            "annotations": {"summary": "X is broken"},
            "startsAt": "2026-01-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prom/graph",
            "fingerprint": "abc",
        }],
    });
    let receiver = app.url(&format!("/v1/integrations/{id}/alertmanager"));
    let refused = app.send(http_client().post(&receiver).bearer_auth(&secret).json(&body)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    let received = app.send(http_client().post(&receiver).bearer_auth(&new_secret).json(&body)).await;
    assert_eq!(received.status, StatusCode::OK, "{}", received.body);
    let incident_id = received.body["groups"][0]["incident_id"].as_str().unwrap().to_string();
    let incident = app.get(&format!("/v1/incidents/{incident_id}")).await.body;
    assert_eq!(incident["severity"], "sev2", "no rule matched: the default severity");

    let alerts = grpc
        .list_integration_alerts(proto::ListIntegrationAlertsRequest {
            integration_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alerts.alerts.len(), 1, "{alerts:?}");
    assert!(alerts.next_page_token.is_empty());
    let alert = &alerts.alerts[0];
    assert_eq!(alert.integration_id, id);
    assert_eq!(alert.incident_id, incident_id);
    assert_eq!(alert.status, proto::AlertStatus::Firing as i32);
    assert_eq!(alert.title, "X is broken");
    assert_eq!(alert.fingerprint, "abc");
    assert_eq!(alert.dedup_key, "{}:{alertname=\"X\"}");
    assert!(alert.received_at.is_some());
    let payload = alert.payload.as_ref().expect("the payload as received");
    assert_eq!(
        payload.fields["fingerprint"].kind,
        Some(prost_types::value::Kind::StringValue("abc".into())),
        "{payload:?}"
    );
    // REST lists the same alert.
    let rest_alerts = app.get(&format!("/v1/integrations/{id}/alerts")).await.body;
    assert_eq!(rest_alerts["alerts"][0]["id"], alert.id.as_str());

    // The incident's alerts, by id and by reference.
    let by_id = grpc
        .list_incident_alerts(proto::ListIncidentAlertsRequest {
            incident_id: incident_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_id.alerts, alerts.alerts);
    let reference = incident["reference"].as_str().unwrap().to_string();
    let by_reference = grpc
        .list_incident_alerts(proto::ListIncidentAlertsRequest { incident_id: reference, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_reference.alerts, alerts.alerts);
    let unknown = grpc
        .list_incident_alerts(proto::ListIncidentAlertsRequest {
            incident_id: uuid::Uuid::nil().to_string(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    // Delete: a stale etag is refused; then it is gone, its alerts stay on the incident.
    let stale = grpc
        .delete_integration(proto::DeleteIntegrationRequest { id: id.clone(), etag: integration.etag.clone() })
        .await
        .unwrap_err();
    assert_eq!(stale.code(), tonic::Code::Aborted, "{stale:?}");
    grpc.delete_integration(proto::DeleteIntegrationRequest { id: id.clone(), etag: rotated.etag.clone() })
        .await
        .unwrap();
    let gone = grpc.get_integration(proto::GetIntegrationRequest { id: id.clone() }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let gone = grpc
        .list_integration_alerts(proto::ListIntegrationAlertsRequest {
            integration_id: id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let kept = grpc
        .list_incident_alerts(proto::ListIncidentAlertsRequest { incident_id, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.alerts.len(), 1);
    let refused = app.send(http_client().post(&receiver).bearer_auth(&new_secret).json(&body)).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
}
