//! Access control: every REST route and gRPC method with no key, a malformed, unknown, revoked
//! or expired key, and a key of each scope; the secrets; the audit trail; rate, size and CORS
//! limits.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tonic::metadata::MetadataValue;
use tonic_types::StatusExt;

use crate::helpers::{Bearer, TestApp};
use incidentd::proto;

/// What an operation needs, as the README documents it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Need {
    ReadIncidents,
    WriteIncidents,
    ReadComponents,
    WriteComponents,
    ReadMaintenance,
    WriteMaintenance,
    ManageSubscriptions,
    Admin,
}

/// The documented scope table, written out independently of the code under test.
fn allowed(scope: &str, need: Need) -> bool {
    let granted: &[&str] = match need {
        Need::ReadIncidents => &["incidents:read", "incidents:write", "admin"],
        Need::WriteIncidents => &["incidents:write", "admin"],
        Need::ReadComponents => &["incidents:read", "incidents:write", "components:write", "admin"],
        Need::WriteComponents => &["components:write", "admin"],
        Need::ReadMaintenance => {
            &["incidents:read", "incidents:write", "components:write", "maintenance:write", "admin"]
        }
        Need::WriteMaintenance => &["maintenance:write", "admin"],
        Need::ManageSubscriptions => &["subscriptions:manage", "admin"],
        Need::Admin => &["admin"],
    };
    granted.contains(&scope)
}

const SCOPES: [&str; 6] =
    ["incidents:read", "incidents:write", "components:write", "maintenance:write", "subscriptions:manage", "admin"];

/// The credentials every operation is tried with.
struct Keys {
    bad: Vec<(&'static str, Option<String>)>,
    scoped: Vec<(&'static str, String)>,
}

async fn keys(app: &TestApp) -> Keys {
    let (revoked_id, revoked) = app.api_key("revoked", &["admin"]).await;
    assert_eq!(app.delete(&format!("/v1/api-keys/{revoked_id}")).await.status, StatusCode::OK);
    let (expired_id, expired) = app.api_key("expired", &["admin"]).await;
    let db = app.db().await;
    db.expire_api_key(&expired_id).await;
    db.close().await;
    // Well-formed, correctly checksummed, never stored.
    let unknown = incidentd::domain::access::NewApiKey {
        name: Some("nobody".into()),
        scopes: vec![incidentd::domain::Scope::Admin],
        expires_at: None,
    }
    .issue("test", incidentd::domain::now())
    .unwrap()
    .secret;
    let mut almost = unknown.clone();
    almost.replace_range(20..21, if &unknown[20..21] == "A" { "B" } else { "A" });
    let mut scoped = Vec::new();
    for scope in SCOPES {
        scoped.push((scope, app.api_key(&format!("key {scope}"), &[scope]).await.1));
    }
    Keys {
        bad: vec![
            ("no key", None),
            ("malformed", Some("Bearer not-a-key".into())),
            ("wrong scheme", Some(format!("Basic {}", scoped[5].1))),
            ("bad checksum", Some(format!("Bearer {almost}"))),
            ("unknown", Some(format!("Bearer {unknown}"))),
            ("revoked", Some(format!("Bearer {revoked}"))),
            ("expired", Some(format!("Bearer {expired}"))),
        ],
        scoped,
    }
}

#[derive(Debug, Clone, Copy)]
enum Rest {
    CreateIncident,
    ListIncidents,
    GetIncident,
    PatchIncident,
    DeleteIncident,
    Transition,
    Acknowledge,
    PostUpdate,
    ListUpdates,
    CreateComponent,
    ListComponents,
    GetComponent,
    PatchComponent,
    DeleteComponent,
    ListComponentHistory,
    GetComponentUptime,
    CreateMaintenance,
    ListMaintenances,
    GetMaintenance,
    PatchMaintenance,
    PostMaintenanceUpdate,
    ListMaintenanceUpdates,
    ListSubscribers,
    CountSubscribers,
    ExportSubscribers,
    ImportSubscribers,
    GetSubscriber,
    DeleteSubscriber,
    CreateApiKey,
    ListApiKeys,
    GetApiKey,
    RevokeApiKey,
    ListAuditEvents,
    ListEvents,
    StreamEvents,
    CreateSubscription,
    ListSubscriptions,
    GetSubscription,
    PatchSubscription,
    DeleteSubscription,
    PauseSubscription,
    ResumeSubscription,
    RotateSecret,
    TestSubscription,
    ListDeliveries,
    ListSubscriptionAttempts,
    RetryFailed,
    GetDelivery,
    ListDeliveryAttempts,
    RetryDelivery,
    CreateIntegration,
    ListIntegrations,
    GetIntegration,
    PatchIntegration,
    DeleteIntegration,
    RotateIntegrationSecret,
    ListIntegrationAlerts,
    ListIncidentAlerts,
    CreatePostmortem,
    GetPostmortem,
    PatchPostmortem,
    TransitionPostmortem,
    CreateAction,
    ListIncidentActions,
    ListActions,
    GetAction,
    PatchAction,
    DeleteAction,
    MergeIncident,
    CreateLink,
    ListLinks,
    DeleteLink,
    GetStats,
}

impl Rest {
    const ALL: [Rest; 73] = [
        Rest::CreateIncident,
        Rest::ListIncidents,
        Rest::GetIncident,
        Rest::PatchIncident,
        Rest::DeleteIncident,
        Rest::Transition,
        Rest::Acknowledge,
        Rest::PostUpdate,
        Rest::ListUpdates,
        Rest::CreateComponent,
        Rest::ListComponents,
        Rest::GetComponent,
        Rest::PatchComponent,
        Rest::DeleteComponent,
        Rest::ListComponentHistory,
        Rest::GetComponentUptime,
        Rest::CreateMaintenance,
        Rest::ListMaintenances,
        Rest::GetMaintenance,
        Rest::PatchMaintenance,
        Rest::PostMaintenanceUpdate,
        Rest::ListMaintenanceUpdates,
        Rest::ListSubscribers,
        Rest::CountSubscribers,
        Rest::ExportSubscribers,
        Rest::ImportSubscribers,
        Rest::GetSubscriber,
        Rest::DeleteSubscriber,
        Rest::CreateApiKey,
        Rest::ListApiKeys,
        Rest::GetApiKey,
        Rest::RevokeApiKey,
        Rest::ListAuditEvents,
        Rest::ListEvents,
        Rest::StreamEvents,
        Rest::CreateSubscription,
        Rest::ListSubscriptions,
        Rest::GetSubscription,
        Rest::PatchSubscription,
        Rest::DeleteSubscription,
        Rest::PauseSubscription,
        Rest::ResumeSubscription,
        Rest::RotateSecret,
        Rest::TestSubscription,
        Rest::ListDeliveries,
        Rest::ListSubscriptionAttempts,
        Rest::RetryFailed,
        Rest::GetDelivery,
        Rest::ListDeliveryAttempts,
        Rest::RetryDelivery,
        Rest::CreateIntegration,
        Rest::ListIntegrations,
        Rest::GetIntegration,
        Rest::PatchIntegration,
        Rest::DeleteIntegration,
        Rest::RotateIntegrationSecret,
        Rest::ListIntegrationAlerts,
        Rest::ListIncidentAlerts,
        Rest::CreatePostmortem,
        Rest::GetPostmortem,
        Rest::PatchPostmortem,
        Rest::TransitionPostmortem,
        Rest::CreateAction,
        Rest::ListIncidentActions,
        Rest::ListActions,
        Rest::GetAction,
        Rest::PatchAction,
        Rest::DeleteAction,
        Rest::MergeIncident,
        Rest::CreateLink,
        Rest::ListLinks,
        Rest::DeleteLink,
        Rest::GetStats,
    ];

    fn need(self) -> Need {
        use Rest::*;
        match self {
            ListIncidents | GetIncident | ListUpdates | ListEvents | StreamEvents | ListIncidentAlerts
            | GetPostmortem | ListIncidentActions | ListActions | GetAction | ListLinks | GetStats => {
                Need::ReadIncidents
            }
            CreatePostmortem | PatchPostmortem | TransitionPostmortem | CreateAction | PatchAction | DeleteAction
            | MergeIncident | CreateLink | DeleteLink => Need::WriteIncidents,
            CreateSubscription
            | ListSubscriptions
            | GetSubscription
            | PatchSubscription
            | DeleteSubscription
            | PauseSubscription
            | ResumeSubscription
            | RotateSecret
            | TestSubscription
            | ListDeliveries
            | ListSubscriptionAttempts
            | RetryFailed
            | GetDelivery
            | ListDeliveryAttempts
            | RetryDelivery
            | ListSubscribers
            | CountSubscribers
            | ExportSubscribers
            | ImportSubscribers
            | GetSubscriber
            | DeleteSubscriber => Need::ManageSubscriptions,
            CreateIncident | PatchIncident | DeleteIncident | Transition | Acknowledge | PostUpdate => {
                Need::WriteIncidents
            }
            ListComponents | GetComponent | ListComponentHistory | GetComponentUptime => Need::ReadComponents,
            CreateComponent | PatchComponent | DeleteComponent => Need::WriteComponents,
            ListMaintenances | GetMaintenance | ListMaintenanceUpdates => Need::ReadMaintenance,
            CreateMaintenance | PatchMaintenance | PostMaintenanceUpdate => Need::WriteMaintenance,
            CreateApiKey | ListApiKeys | GetApiKey | RevokeApiKey | ListAuditEvents => Need::Admin,
            CreateIntegration
            | ListIntegrations
            | GetIntegration
            | PatchIntegration
            | DeleteIntegration
            | RotateIntegrationSecret
            | ListIntegrationAlerts => Need::Admin,
        }
    }

    /// The method and the path template, as /openapi.json names the operation.
    fn route(self) -> (Method, &'static str) {
        use Rest::*;
        match self {
            CreateIncident => (Method::POST, "/v1/incidents"),
            ListIncidents => (Method::GET, "/v1/incidents"),
            GetIncident => (Method::GET, "/v1/incidents/{id}"),
            PatchIncident => (Method::PATCH, "/v1/incidents/{id}"),
            DeleteIncident => (Method::DELETE, "/v1/incidents/{id}"),
            Transition => (Method::POST, "/v1/incidents/{id}/transitions"),
            Acknowledge => (Method::POST, "/v1/incidents/{id}/acknowledge"),
            PostUpdate => (Method::POST, "/v1/incidents/{id}/updates"),
            ListUpdates => (Method::GET, "/v1/incidents/{id}/updates"),
            CreateComponent => (Method::POST, "/v1/components"),
            ListComponents => (Method::GET, "/v1/components"),
            GetComponent => (Method::GET, "/v1/components/{id}"),
            PatchComponent => (Method::PATCH, "/v1/components/{id}"),
            DeleteComponent => (Method::DELETE, "/v1/components/{id}"),
            ListComponentHistory => (Method::GET, "/v1/components/{id}/history"),
            GetComponentUptime => (Method::GET, "/v1/components/{id}/uptime"),
            CreateMaintenance => (Method::POST, "/v1/maintenances"),
            ListMaintenances => (Method::GET, "/v1/maintenances"),
            GetMaintenance => (Method::GET, "/v1/maintenances/{id}"),
            PatchMaintenance => (Method::PATCH, "/v1/maintenances/{id}"),
            PostMaintenanceUpdate => (Method::POST, "/v1/maintenances/{id}/updates"),
            ListMaintenanceUpdates => (Method::GET, "/v1/maintenances/{id}/updates"),
            ListSubscribers => (Method::GET, "/v1/subscribers"),
            CountSubscribers => (Method::GET, "/v1/subscribers/counts"),
            ExportSubscribers => (Method::GET, "/v1/subscribers/export"),
            ImportSubscribers => (Method::POST, "/v1/subscribers/import"),
            GetSubscriber => (Method::GET, "/v1/subscribers/{id}"),
            DeleteSubscriber => (Method::DELETE, "/v1/subscribers/{id}"),
            CreateApiKey => (Method::POST, "/v1/api-keys"),
            ListApiKeys => (Method::GET, "/v1/api-keys"),
            GetApiKey => (Method::GET, "/v1/api-keys/{id}"),
            RevokeApiKey => (Method::DELETE, "/v1/api-keys/{id}"),
            ListAuditEvents => (Method::GET, "/v1/audit-events"),
            ListEvents => (Method::GET, "/v1/events"),
            StreamEvents => (Method::GET, "/v1/events/stream"),
            CreateSubscription => (Method::POST, "/v1/subscriptions"),
            ListSubscriptions => (Method::GET, "/v1/subscriptions"),
            GetSubscription => (Method::GET, "/v1/subscriptions/{id}"),
            PatchSubscription => (Method::PATCH, "/v1/subscriptions/{id}"),
            DeleteSubscription => (Method::DELETE, "/v1/subscriptions/{id}"),
            PauseSubscription => (Method::POST, "/v1/subscriptions/{id}/pause"),
            ResumeSubscription => (Method::POST, "/v1/subscriptions/{id}/resume"),
            RotateSecret => (Method::POST, "/v1/subscriptions/{id}/rotate-secret"),
            TestSubscription => (Method::POST, "/v1/subscriptions/{id}/test"),
            ListDeliveries => (Method::GET, "/v1/subscriptions/{id}/deliveries"),
            ListSubscriptionAttempts => (Method::GET, "/v1/subscriptions/{id}/attempts"),
            RetryFailed => (Method::POST, "/v1/subscriptions/{id}/retry-failed"),
            GetDelivery => (Method::GET, "/v1/deliveries/{id}"),
            ListDeliveryAttempts => (Method::GET, "/v1/deliveries/{id}/attempts"),
            RetryDelivery => (Method::POST, "/v1/deliveries/{id}/retry"),
            CreateIntegration => (Method::POST, "/v1/integrations"),
            ListIntegrations => (Method::GET, "/v1/integrations"),
            GetIntegration => (Method::GET, "/v1/integrations/{id}"),
            PatchIntegration => (Method::PATCH, "/v1/integrations/{id}"),
            DeleteIntegration => (Method::DELETE, "/v1/integrations/{id}"),
            RotateIntegrationSecret => (Method::POST, "/v1/integrations/{id}/rotate-secret"),
            ListIntegrationAlerts => (Method::GET, "/v1/integrations/{id}/alerts"),
            ListIncidentAlerts => (Method::GET, "/v1/incidents/{id}/alerts"),
            CreatePostmortem => (Method::POST, "/v1/incidents/{id}/postmortem"),
            GetPostmortem => (Method::GET, "/v1/incidents/{id}/postmortem"),
            PatchPostmortem => (Method::PATCH, "/v1/incidents/{id}/postmortem"),
            TransitionPostmortem => (Method::POST, "/v1/incidents/{id}/postmortem/transitions"),
            CreateAction => (Method::POST, "/v1/incidents/{id}/actions"),
            ListIncidentActions => (Method::GET, "/v1/incidents/{id}/actions"),
            ListActions => (Method::GET, "/v1/actions"),
            GetAction => (Method::GET, "/v1/actions/{id}"),
            PatchAction => (Method::PATCH, "/v1/actions/{id}"),
            DeleteAction => (Method::DELETE, "/v1/actions/{id}"),
            MergeIncident => (Method::POST, "/v1/incidents/{id}/merge"),
            CreateLink => (Method::POST, "/v1/incidents/{id}/links"),
            ListLinks => (Method::GET, "/v1/incidents/{id}/links"),
            DeleteLink => (Method::DELETE, "/v1/incidents/{id}/links/{link_id}"),
            GetStats => (Method::GET, "/v1/stats"),
        }
    }

    /// A request that succeeds for a caller allowed to make it (fresh resources where the
    /// call consumes them), made with the admin token.
    async fn request(self, app: &TestApp) -> (Method, String, Option<Value>) {
        use Rest::*;
        let incident = || async { app.incident("matrix").await["id"].as_str().unwrap().to_string() };
        let component = || async {
            app.create_component(&format!("c-{}", uuid::Uuid::new_v4().simple())).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        match self {
            CreateIncident => (Method::POST, "/v1/incidents".into(), Some(json!({"title": "m", "severity": "sev3"}))),
            ListIncidents => (Method::GET, "/v1/incidents".into(), None),
            GetIncident => (Method::GET, format!("/v1/incidents/{}", incident().await), None),
            PatchIncident => {
                (Method::PATCH, format!("/v1/incidents/{}", incident().await), Some(json!({"summary": "s"})))
            }
            DeleteIncident => (Method::DELETE, format!("/v1/incidents/{}", incident().await), None),
            Transition => (
                Method::POST,
                format!("/v1/incidents/{}/transitions", incident().await),
                Some(json!({"to": "identified"})),
            ),
            Acknowledge => (Method::POST, format!("/v1/incidents/{}/acknowledge", incident().await), Some(json!({}))),
            PostUpdate => {
                (Method::POST, format!("/v1/incidents/{}/updates", incident().await), Some(json!({"body": "b"})))
            }
            ListUpdates => (Method::GET, format!("/v1/incidents/{}/updates", incident().await), None),
            CreateComponent => (
                Method::POST,
                "/v1/components".into(),
                Some(json!({"name": format!("n-{}", uuid::Uuid::new_v4().simple())})),
            ),
            ListComponents => (Method::GET, "/v1/components".into(), None),
            GetComponent => (Method::GET, format!("/v1/components/{}", component().await), None),
            PatchComponent => {
                (Method::PATCH, format!("/v1/components/{}", component().await), Some(json!({"position": 3})))
            }
            DeleteComponent => (Method::DELETE, format!("/v1/components/{}", component().await), None),
            ListComponentHistory => (Method::GET, format!("/v1/components/{}/history", component().await), None),
            GetComponentUptime => (Method::GET, format!("/v1/components/{}/uptime", component().await), None),
            CreateMaintenance => (Method::POST, "/v1/maintenances".into(), Some(maintenance_body())),
            ListMaintenances => (Method::GET, "/v1/maintenances".into(), None),
            GetMaintenance => (Method::GET, format!("/v1/maintenances/{}", maintenance(app).await), None),
            PatchMaintenance => {
                (Method::PATCH, format!("/v1/maintenances/{}", maintenance(app).await), Some(json!({"body": "b"})))
            }
            PostMaintenanceUpdate => (
                Method::POST,
                format!("/v1/maintenances/{}/updates", maintenance(app).await),
                Some(json!({"body": "b"})),
            ),
            ListMaintenanceUpdates => {
                (Method::GET, format!("/v1/maintenances/{}/updates", maintenance(app).await), None)
            }
            ListSubscribers => (Method::GET, "/v1/subscribers".into(), None),
            CountSubscribers => (Method::GET, "/v1/subscribers/counts".into(), None),
            ExportSubscribers => (Method::GET, "/v1/subscribers/export".into(), None),
            ImportSubscribers => (
                Method::POST,
                "/v1/subscribers/import".into(),
                Some(json!({"csv": format!("email\n{}@example.com\n", uuid::Uuid::new_v4().simple())})),
            ),
            GetSubscriber => (Method::GET, format!("/v1/subscribers/{}", subscriber(app).await), None),
            DeleteSubscriber => (Method::DELETE, format!("/v1/subscribers/{}", subscriber(app).await), None),
            CreateApiKey => {
                (Method::POST, "/v1/api-keys".into(), Some(json!({"name": "k", "scopes": ["incidents:read"]})))
            }
            ListApiKeys => (Method::GET, "/v1/api-keys".into(), None),
            GetApiKey => (Method::GET, format!("/v1/api-keys/{}", app.api_key("g", &["incidents:read"]).await.0), None),
            RevokeApiKey => {
                (Method::DELETE, format!("/v1/api-keys/{}", app.api_key("r", &["incidents:read"]).await.0), None)
            }
            ListAuditEvents => (Method::GET, "/v1/audit-events".into(), None),
            ListEvents => (Method::GET, "/v1/events".into(), None),
            StreamEvents => (Method::GET, "/v1/events/stream".into(), None),
            CreateSubscription => (
                Method::POST,
                "/v1/subscriptions".into(),
                Some(json!({"channel": "webhook", "target": "http://127.0.0.1:9/x"})),
            ),
            ListSubscriptions => (Method::GET, "/v1/subscriptions".into(), None),
            GetSubscription => (Method::GET, format!("/v1/subscriptions/{}", subscription(app).await), None),
            PatchSubscription => (
                Method::PATCH,
                format!("/v1/subscriptions/{}", subscription(app).await),
                Some(json!({"include_internal": true})),
            ),
            DeleteSubscription => (Method::DELETE, format!("/v1/subscriptions/{}", subscription(app).await), None),
            PauseSubscription => (Method::POST, format!("/v1/subscriptions/{}/pause", subscription(app).await), None),
            ResumeSubscription => (Method::POST, format!("/v1/subscriptions/{}/resume", subscription(app).await), None),
            RotateSecret => {
                (Method::POST, format!("/v1/subscriptions/{}/rotate-secret", subscription(app).await), None)
            }
            TestSubscription => (Method::POST, format!("/v1/subscriptions/{}/test", subscription(app).await), None),
            ListDeliveries => (Method::GET, format!("/v1/subscriptions/{}/deliveries", subscription(app).await), None),
            ListSubscriptionAttempts => {
                (Method::GET, format!("/v1/subscriptions/{}/attempts", subscription(app).await), None)
            }
            RetryFailed => (Method::POST, format!("/v1/subscriptions/{}/retry-failed", subscription(app).await), None),
            GetDelivery => (Method::GET, format!("/v1/deliveries/{}", delivered(app).await), None),
            ListDeliveryAttempts => (Method::GET, format!("/v1/deliveries/{}/attempts", delivered(app).await), None),
            RetryDelivery => (Method::POST, format!("/v1/deliveries/{}/retry", delivered(app).await), None),
            CreateIntegration => {
                (Method::POST, "/v1/integrations".into(), Some(json!({"name": "m", "kind": "alertmanager"})))
            }
            ListIntegrations => (Method::GET, "/v1/integrations".into(), None),
            GetIntegration => (Method::GET, format!("/v1/integrations/{}", integration(app).await), None),
            PatchIntegration => {
                (Method::PATCH, format!("/v1/integrations/{}", integration(app).await), Some(json!({"name": "n"})))
            }
            DeleteIntegration => (Method::DELETE, format!("/v1/integrations/{}", integration(app).await), None),
            RotateIntegrationSecret => {
                (Method::POST, format!("/v1/integrations/{}/rotate-secret", integration(app).await), None)
            }
            ListIntegrationAlerts => (Method::GET, format!("/v1/integrations/{}/alerts", integration(app).await), None),
            ListIncidentAlerts => (Method::GET, format!("/v1/incidents/{}/alerts", incident().await), None),
            CreatePostmortem => {
                (Method::POST, format!("/v1/incidents/{}/postmortem", incident().await), Some(json!({})))
            }
            GetPostmortem => (Method::GET, format!("/v1/incidents/{}/postmortem", postmortem(app).await), None),
            PatchPostmortem => (
                Method::PATCH,
                format!("/v1/incidents/{}/postmortem", postmortem(app).await),
                Some(json!({"body": "b"})),
            ),
            TransitionPostmortem => (
                Method::POST,
                format!("/v1/incidents/{}/postmortem/transitions", postmortem(app).await),
                Some(json!({"to": "in_review"})),
            ),
            CreateAction => {
                (Method::POST, format!("/v1/incidents/{}/actions", incident().await), Some(json!({"title": "t"})))
            }
            ListIncidentActions => (Method::GET, format!("/v1/incidents/{}/actions", incident().await), None),
            ListActions => (Method::GET, "/v1/actions".into(), None),
            GetAction => (Method::GET, format!("/v1/actions/{}", action(app).await), None),
            PatchAction => {
                (Method::PATCH, format!("/v1/actions/{}", action(app).await), Some(json!({"status": "done"})))
            }
            DeleteAction => (Method::DELETE, format!("/v1/actions/{}", action(app).await), None),
            MergeIncident => (
                Method::POST,
                format!("/v1/incidents/{}/merge", incident().await),
                Some(json!({"into": incident().await})),
            ),
            CreateLink => (
                Method::POST,
                format!("/v1/incidents/{}/links", incident().await),
                Some(json!({"kind": "related", "incident": incident().await})),
            ),
            ListLinks => (Method::GET, format!("/v1/incidents/{}/links", incident().await), None),
            DeleteLink => {
                let (incident, link) = link(app).await;
                (Method::DELETE, format!("/v1/incidents/{incident}/links/{link}"), None)
            }
            GetStats => (Method::GET, "/v1/stats".into(), None),
        }
    }
}

/// An incident with a postmortem draft (made as admin).
async fn postmortem(app: &TestApp) -> String {
    let id = app.incident("with a postmortem").await["id"].as_str().unwrap().to_string();
    let res = app.post(&format!("/v1/incidents/{id}/postmortem"), json!({})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    id
}

/// A follow-up action (made as admin).
async fn action(app: &TestApp) -> String {
    let id = app.incident("with an action").await["id"].as_str().unwrap().to_string();
    let res = app.post(&format!("/v1/incidents/{id}/actions"), json!({"title": "a"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_string()
}

/// Two incidents linked (made as admin): the first, and the link.
async fn link(app: &TestApp) -> (String, String) {
    let a = app.incident("linked").await["id"].as_str().unwrap().to_string();
    let b = app.incident("linked too").await["id"].as_str().unwrap().to_string();
    let res = app.post(&format!("/v1/incidents/{a}/links"), json!({"kind": "caused_by", "incident": b})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    (a, res.body["id"].as_str().unwrap().to_string())
}

/// A maintenance an hour from now.
fn maintenance_body() -> Value {
    let at = |h: i64| (chrono::Utc::now() + chrono::Duration::hours(h)).to_rfc3339();
    json!({"title": "m", "scheduled_for": at(1), "scheduled_until": at(2)})
}

/// An Alertmanager integration (made as admin).
async fn integration(app: &TestApp) -> String {
    let res = app.post("/v1/integrations", json!({"name": "i", "kind": "alertmanager"})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_string()
}

/// A scheduled maintenance (made as admin).
async fn maintenance(app: &TestApp) -> String {
    let res = app.post("/v1/maintenances", maintenance_body()).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    res.body["id"].as_str().unwrap().to_string()
}

/// A customer subscriber, imported (as admin).
async fn subscriber(app: &TestApp) -> String {
    let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
    let res = app.post("/v1/subscribers/import", json!({"csv": format!("email\n{email}\n")})).await;
    assert_eq!((res.status, &res.body["imported"]), (StatusCode::OK, &json!(1)), "{}", res.body);
    let found = app.get(&format!("/v1/subscribers?q={email}")).await;
    found.body["subscribers"][0]["id"].as_str().unwrap().to_string()
}

/// A webhook subscription to a receiver that answers 204 (made as admin).
async fn subscription(app: &TestApp) -> String {
    let receiver = crate::receivers::Receiver::start().await;
    let res = app.post("/v1/subscriptions", json!({"channel": "webhook", "target": receiver.url})).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.body);
    std::mem::forget(receiver);
    res.body["id"].as_str().unwrap().to_string()
}

/// A delivered delivery (made as admin).
async fn delivered(app: &TestApp) -> String {
    let sub = subscription(app).await;
    app.incident("for a delivery").await;
    loop {
        app.service.sequence_all().await.unwrap();
        let list = app.get(&format!("/v1/subscriptions/{sub}/deliveries?status=delivered")).await.body;
        if let Some(d) = list["deliveries"].as_array().unwrap().first() {
            return d["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `path` is `template` with each `{param}` filled in by one path segment.
fn fills(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len() && t.iter().zip(&p).all(|(t, p)| if t.starts_with('{') { !p.is_empty() } else { t == p })
}

/// The matrix covers every authenticated operation /openapi.json documents, and no other: a
/// new route cannot go untested for scopes.
#[tokio::test]
async fn the_rest_matrix_covers_every_documented_operation() {
    let doc = serde_json::to_value(incidentd::api::rest::openapi()).unwrap();
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| path.starts_with("/v1/"))
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .iter()
                // The alert receivers take the integration's own secret, not an API key.
                .filter(|(_, op)| op["security"][0].get("integration_secret").is_none())
                .map(move |(m, _)| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    let mut tested: Vec<String> = Rest::ALL
        .iter()
        .map(|op| {
            let (method, template) = op.route();
            format!("{method} {template}")
        })
        .collect();
    documented.sort();
    tested.sort();
    assert_eq!(tested, documented, "Rest::ALL (left) against the /v1 operations of /openapi.json (right)");
}

/// The matrix covers every method of every incidentd service in the descriptor set the server
/// reflects, and no other: a new method cannot go untested for scopes.
#[tokio::test]
async fn the_grpc_matrix_covers_every_method_of_every_service() {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut described: Vec<String> = set
        .file
        .iter()
        .filter(|f| f.package() == "incidentd.v1")
        .flat_map(|f| f.service.iter().map(move |s| (f.package(), s)))
        .flat_map(|(package, s)| s.method.iter().map(move |m| format!("{package}.{}/{}", s.name(), m.name())))
        .collect();
    let mut tested: Vec<String> = Grpc::ALL.iter().map(|op| op.full_name()).collect();
    described.sort();
    tested.sort();
    assert_eq!(tested, described, "Grpc::ALL (left) against the descriptor set (right)");
    let services: std::collections::BTreeSet<&str> = described.iter().map(|m| m.split('/').next().unwrap()).collect();
    let served: std::collections::BTreeSet<&str> = incidentd::api::grpc::SERVICE_NAMES.iter().copied().collect();
    assert_eq!(served, services, "every described service is served, and health reports on it");
}

async fn call_rest(
    app: &TestApp,
    spec: &(Method, String, Option<Value>),
    authorization: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = crate::helpers::http_client().request(spec.0.clone(), app.url(&spec.1));
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if let Some(b) = &spec.2 {
        req = req.json(b);
    }
    let res = req.send().await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    if headers.get("content-type").is_some_and(|c| c == "text/event-stream") {
        return (status, Value::Null);
    }
    let body: Value = res.json().await.unwrap_or(Value::Null);
    if status.is_client_error() {
        assert_eq!(headers["content-type"], "application/problem+json");
    }
    if status == StatusCode::UNAUTHORIZED {
        assert_eq!(headers["www-authenticate"], "Bearer realm=\"incidentd\"");
    }
    (status, body)
}

#[tokio::test]
async fn rest_matrix() {
    let app = TestApp::spawn().await;
    let keys = keys(&app).await;
    for op in Rest::ALL {
        let spec = op.request(&app).await;
        let (method, template) = op.route();
        assert!(spec.0 == method && fills(template, &spec.1), "{op:?} requests {} {}, not {template}", spec.0, spec.1);
        for (what, authorization) in &keys.bad {
            let (status, body) = call_rest(&app, &spec, authorization.as_deref()).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{op:?} with {what}: {body}");
            assert_eq!(body["code"], "unauthenticated");
        }
        for (scope, secret) in &keys.scoped {
            let spec = op.request(&app).await;
            let (status, body) = call_rest(&app, &spec, Some(&format!("Bearer {secret}"))).await;
            if allowed(scope, op.need()) {
                assert!(status.is_success(), "{op:?} with {scope} must succeed: {status} {body}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{op:?} with {scope}: {body}");
                assert_eq!(body["code"], "permission_denied");
                assert!(body["detail"].as_str().unwrap().contains("scope"), "{body}");
            }
        }
    }
    // Public surfaces stay open.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        let res = crate::helpers::http_client().get(app.url(path)).send().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
    }
    // The OpenAPI document declares the bearer scheme on every /v1 operation.
    let doc = app.get("/openapi.json").await.body;
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let secured = op.get("security").is_some();
            assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}");
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Grpc {
    CreateIncident,
    GetIncident,
    ListIncidents,
    UpdateIncident,
    DeleteIncident,
    TransitionIncident,
    AcknowledgeIncident,
    CreateIncidentUpdate,
    ListIncidentUpdates,
    CreateComponent,
    GetComponent,
    ListComponents,
    UpdateComponent,
    DeleteComponent,
    ListComponentHistory,
    GetComponentUptime,
    CreateMaintenance,
    GetMaintenance,
    ListMaintenances,
    UpdateMaintenance,
    CreateMaintenanceUpdate,
    ListMaintenanceUpdates,
    ListSubscribers,
    GetSubscriber,
    CountSubscribers,
    DeleteSubscriber,
    ExportSubscribers,
    ImportSubscribers,
    CreateApiKey,
    GetApiKey,
    ListApiKeys,
    RevokeApiKey,
    ListAuditEvents,
    ListEvents,
    WatchEvents,
    CreateSubscription,
    GetSubscription,
    ListSubscriptions,
    UpdateSubscription,
    DeleteSubscription,
    PauseSubscription,
    ResumeSubscription,
    RotateSubscriptionSecret,
    TestSubscription,
    ListDeliveries,
    GetDelivery,
    ListDeliveryAttempts,
    RetryDelivery,
    RetryFailedDeliveries,
    CreateIntegration,
    GetIntegration,
    ListIntegrations,
    UpdateIntegration,
    DeleteIntegration,
    RotateIntegrationSecret,
    ListIntegrationAlerts,
    ListIncidentAlerts,
    GetPostmortem,
    CreatePostmortem,
    UpdatePostmortem,
    TransitionPostmortem,
    CreateAction,
    GetAction,
    ListActions,
    UpdateAction,
    DeleteAction,
    GetStats,
    MergeIncident,
    CreateIncidentLink,
    ListIncidentLinks,
    DeleteIncidentLink,
}

/// Sends `authorization` metadata when given (even malformed), nothing otherwise.
#[derive(Clone)]
struct Creds(Option<String>);

impl tonic::service::Interceptor for Creds {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(a) = &self.0 {
            req.metadata_mut().insert("authorization", MetadataValue::try_from(a.as_str()).unwrap());
        }
        Ok(req)
    }
}

impl Grpc {
    const ALL: [Grpc; 71] = [
        Grpc::CreateIncident,
        Grpc::GetIncident,
        Grpc::ListIncidents,
        Grpc::UpdateIncident,
        Grpc::DeleteIncident,
        Grpc::TransitionIncident,
        Grpc::AcknowledgeIncident,
        Grpc::CreateIncidentUpdate,
        Grpc::ListIncidentUpdates,
        Grpc::CreateComponent,
        Grpc::GetComponent,
        Grpc::ListComponents,
        Grpc::UpdateComponent,
        Grpc::DeleteComponent,
        Grpc::ListComponentHistory,
        Grpc::GetComponentUptime,
        Grpc::CreateMaintenance,
        Grpc::GetMaintenance,
        Grpc::ListMaintenances,
        Grpc::UpdateMaintenance,
        Grpc::CreateMaintenanceUpdate,
        Grpc::ListMaintenanceUpdates,
        Grpc::ListSubscribers,
        Grpc::GetSubscriber,
        Grpc::CountSubscribers,
        Grpc::DeleteSubscriber,
        Grpc::ExportSubscribers,
        Grpc::ImportSubscribers,
        Grpc::CreateApiKey,
        Grpc::GetApiKey,
        Grpc::ListApiKeys,
        Grpc::RevokeApiKey,
        Grpc::ListAuditEvents,
        Grpc::ListEvents,
        Grpc::WatchEvents,
        Grpc::CreateSubscription,
        Grpc::GetSubscription,
        Grpc::ListSubscriptions,
        Grpc::UpdateSubscription,
        Grpc::DeleteSubscription,
        Grpc::PauseSubscription,
        Grpc::ResumeSubscription,
        Grpc::RotateSubscriptionSecret,
        Grpc::TestSubscription,
        Grpc::ListDeliveries,
        Grpc::GetDelivery,
        Grpc::ListDeliveryAttempts,
        Grpc::RetryDelivery,
        Grpc::RetryFailedDeliveries,
        Grpc::CreateIntegration,
        Grpc::GetIntegration,
        Grpc::ListIntegrations,
        Grpc::UpdateIntegration,
        Grpc::DeleteIntegration,
        Grpc::RotateIntegrationSecret,
        Grpc::ListIntegrationAlerts,
        Grpc::ListIncidentAlerts,
        Grpc::GetPostmortem,
        Grpc::CreatePostmortem,
        Grpc::UpdatePostmortem,
        Grpc::TransitionPostmortem,
        Grpc::CreateAction,
        Grpc::GetAction,
        Grpc::ListActions,
        Grpc::UpdateAction,
        Grpc::DeleteAction,
        Grpc::GetStats,
        Grpc::MergeIncident,
        Grpc::CreateIncidentLink,
        Grpc::ListIncidentLinks,
        Grpc::DeleteIncidentLink,
    ];

    fn need(self) -> Need {
        use Grpc::*;
        match self {
            GetIncident | ListIncidents | ListIncidentUpdates | ListEvents | WatchEvents | ListIncidentAlerts
            | GetPostmortem | GetAction | ListActions | GetStats | ListIncidentLinks => Need::ReadIncidents,
            CreatePostmortem | UpdatePostmortem | TransitionPostmortem | CreateAction | UpdateAction | DeleteAction
            | MergeIncident | CreateIncidentLink | DeleteIncidentLink => Need::WriteIncidents,
            CreateSubscription
            | GetSubscription
            | ListSubscriptions
            | UpdateSubscription
            | DeleteSubscription
            | PauseSubscription
            | ResumeSubscription
            | RotateSubscriptionSecret
            | TestSubscription
            | ListDeliveries
            | GetDelivery
            | ListDeliveryAttempts
            | RetryDelivery
            | RetryFailedDeliveries
            | ListSubscribers
            | GetSubscriber
            | CountSubscribers
            | DeleteSubscriber
            | ExportSubscribers
            | ImportSubscribers => Need::ManageSubscriptions,
            CreateIncident | UpdateIncident | DeleteIncident | TransitionIncident | AcknowledgeIncident
            | CreateIncidentUpdate => Need::WriteIncidents,
            GetComponent | ListComponents | ListComponentHistory | GetComponentUptime => Need::ReadComponents,
            CreateComponent | UpdateComponent | DeleteComponent => Need::WriteComponents,
            GetMaintenance | ListMaintenances | ListMaintenanceUpdates => Need::ReadMaintenance,
            CreateMaintenance | UpdateMaintenance | CreateMaintenanceUpdate => Need::WriteMaintenance,
            CreateApiKey | GetApiKey | ListApiKeys | RevokeApiKey | ListAuditEvents => Need::Admin,
            CreateIntegration
            | GetIntegration
            | ListIntegrations
            | UpdateIntegration
            | DeleteIntegration
            | RotateIntegrationSecret
            | ListIntegrationAlerts => Need::Admin,
        }
    }

    /// `incidentd.v1.<Service>/<Method>`: each variant is named after the method it calls.
    fn full_name(self) -> String {
        use Grpc::*;
        let service = match self {
            CreateIncident | GetIncident | ListIncidents | UpdateIncident | DeleteIncident | TransitionIncident
            | AcknowledgeIncident | CreateIncidentUpdate | ListIncidentUpdates | MergeIncident | CreateIncidentLink
            | ListIncidentLinks | DeleteIncidentLink => "IncidentService",
            GetPostmortem | CreatePostmortem | UpdatePostmortem | TransitionPostmortem => "PostmortemService",
            CreateAction | GetAction | ListActions | UpdateAction | DeleteAction => "ActionService",
            GetStats => "StatsService",
            CreateComponent | GetComponent | ListComponents | UpdateComponent | DeleteComponent
            | ListComponentHistory | GetComponentUptime => "ComponentService",
            CreateMaintenance
            | GetMaintenance
            | ListMaintenances
            | UpdateMaintenance
            | CreateMaintenanceUpdate
            | ListMaintenanceUpdates => "MaintenanceService",
            CreateApiKey | GetApiKey | ListApiKeys | RevokeApiKey => "ApiKeyService",
            ListAuditEvents => "AuditService",
            ListEvents | WatchEvents => "EventService",
            CreateSubscription
            | GetSubscription
            | ListSubscriptions
            | UpdateSubscription
            | DeleteSubscription
            | PauseSubscription
            | ResumeSubscription
            | RotateSubscriptionSecret
            | TestSubscription
            | ListDeliveries
            | GetDelivery
            | ListDeliveryAttempts
            | RetryDelivery
            | RetryFailedDeliveries => "SubscriptionService",
            ListSubscribers | GetSubscriber | CountSubscribers | DeleteSubscriber | ExportSubscribers
            | ImportSubscribers => "SubscriberService",
            CreateIntegration
            | GetIntegration
            | ListIntegrations
            | UpdateIntegration
            | DeleteIntegration
            | RotateIntegrationSecret
            | ListIntegrationAlerts
            | ListIncidentAlerts => "IntegrationService",
        };
        format!("incidentd.v1.{service}/{self:?}")
    }

    /// Calls the method with `creds`, on fresh resources made with the admin token.
    async fn call(self, app: &TestApp, creds: Creds) -> Result<(), tonic::Status> {
        use Grpc::*;
        let channel = app.channel().await;
        let mut incidents =
            proto::incident_service_client::IncidentServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut components =
            proto::component_service_client::ComponentServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut keys =
            proto::api_key_service_client::ApiKeyServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut maintenances = proto::maintenance_service_client::MaintenanceServiceClient::with_interceptor(
            channel.clone(),
            creds.clone(),
        );
        let mut audit =
            proto::audit_service_client::AuditServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut events =
            proto::event_service_client::EventServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut subscribers =
            proto::subscriber_service_client::SubscriberServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut integrations = proto::integration_service_client::IntegrationServiceClient::with_interceptor(
            channel.clone(),
            creds.clone(),
        );
        let mut postmortems =
            proto::postmortem_service_client::PostmortemServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut actions =
            proto::action_service_client::ActionServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut stats =
            proto::stats_service_client::StatsServiceClient::with_interceptor(channel.clone(), creds.clone());
        let mut subs = proto::subscription_service_client::SubscriptionServiceClient::with_interceptor(channel, creds);
        let incident = || async { app.incident("matrix").await["id"].as_str().unwrap().to_string() };
        let component = || async {
            app.create_component(&format!("c-{}", uuid::Uuid::new_v4().simple())).await["id"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let new_component =
            || proto::Component { name: format!("g-{}", uuid::Uuid::new_v4().simple()), ..Default::default() };
        match self {
            CreateIncident => incidents
                .create_incident(proto::CreateIncidentRequest {
                    incident: Some(proto::Incident { title: "m".into(), severity: 3, ..Default::default() }),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            GetIncident => incidents.get_incident(proto::GetIncidentRequest { id: incident().await }).await.map(drop),
            ListIncidents => incidents.list_incidents(proto::ListIncidentsRequest::default()).await.map(drop),
            UpdateIncident => incidents
                .update_incident(proto::UpdateIncidentRequest {
                    incident: Some(proto::Incident { id: incident().await, summary: "s".into(), ..Default::default() }),
                    update_mask: None,
                    etag: String::new(),
                })
                .await
                .map(drop),
            DeleteIncident => incidents
                .delete_incident(proto::DeleteIncidentRequest { id: incident().await, etag: String::new() })
                .await
                .map(drop),
            TransitionIncident => incidents
                .transition_incident(proto::TransitionIncidentRequest {
                    id: incident().await,
                    to: proto::IncidentStatus::Identified as i32,
                    ..Default::default()
                })
                .await
                .map(drop),
            AcknowledgeIncident => incidents
                .acknowledge_incident(proto::AcknowledgeIncidentRequest { id: incident().await, by: String::new() })
                .await
                .map(drop),
            CreateIncidentUpdate => incidents
                .create_incident_update(proto::CreateIncidentUpdateRequest {
                    incident_id: incident().await,
                    update: Some(proto::IncidentUpdate { body: "b".into(), ..Default::default() }),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            ListIncidentUpdates => incidents
                .list_incident_updates(proto::ListIncidentUpdatesRequest {
                    incident_id: incident().await,
                    ..Default::default()
                })
                .await
                .map(drop),
            CreateComponent => components
                .create_component(proto::CreateComponentRequest {
                    component: Some(new_component()),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            GetComponent => {
                components.get_component(proto::GetComponentRequest { id: component().await }).await.map(drop)
            }
            ListComponents => components.list_components(proto::ListComponentsRequest::default()).await.map(drop),
            UpdateComponent => components
                .update_component(proto::UpdateComponentRequest {
                    component: Some(proto::Component { id: component().await, position: 4, ..Default::default() }),
                    update_mask: None,
                    etag: String::new(),
                })
                .await
                .map(drop),
            DeleteComponent => components
                .delete_component(proto::DeleteComponentRequest { id: component().await, etag: String::new() })
                .await
                .map(drop),
            ListComponentHistory => components
                .list_component_history(proto::ListComponentHistoryRequest {
                    id: component().await,
                    ..Default::default()
                })
                .await
                .map(drop),
            GetComponentUptime => components
                .get_component_uptime(proto::GetComponentUptimeRequest { id: component().await, ..Default::default() })
                .await
                .map(drop),
            CreateMaintenance => {
                let ts = |h: i64| prost_types::Timestamp {
                    seconds: (chrono::Utc::now() + chrono::Duration::hours(h)).timestamp(),
                    nanos: 0,
                };
                maintenances
                    .create_maintenance(proto::CreateMaintenanceRequest {
                        maintenance: Some(proto::Maintenance {
                            title: "m".into(),
                            scheduled_for: Some(ts(1)),
                            scheduled_until: Some(ts(2)),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await
                    .map(drop)
            }
            GetMaintenance => maintenances
                .get_maintenance(proto::GetMaintenanceRequest { id: maintenance(app).await })
                .await
                .map(drop),
            ListMaintenances => {
                maintenances.list_maintenances(proto::ListMaintenancesRequest::default()).await.map(drop)
            }
            UpdateMaintenance => maintenances
                .update_maintenance(proto::UpdateMaintenanceRequest {
                    maintenance: Some(proto::Maintenance {
                        id: maintenance(app).await,
                        body: "b".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["body".into()] }),
                    etag: String::new(),
                })
                .await
                .map(drop),
            CreateMaintenanceUpdate => maintenances
                .create_maintenance_update(proto::CreateMaintenanceUpdateRequest {
                    maintenance_id: maintenance(app).await,
                    body: "b".into(),
                    ..Default::default()
                })
                .await
                .map(drop),
            ListMaintenanceUpdates => maintenances
                .list_maintenance_updates(proto::ListMaintenanceUpdatesRequest {
                    maintenance_id: maintenance(app).await,
                    ..Default::default()
                })
                .await
                .map(drop),
            CreateApiKey => keys
                .create_api_key(proto::CreateApiKeyRequest {
                    name: "k".into(),
                    scopes: vec![proto::Scope::IncidentsRead as i32],
                    expires_at: None,
                })
                .await
                .map(drop),
            GetApiKey => keys
                .get_api_key(proto::GetApiKeyRequest { id: app.api_key("g", &["incidents:read"]).await.0 })
                .await
                .map(drop),
            ListApiKeys => keys.list_api_keys(proto::ListApiKeysRequest::default()).await.map(drop),
            RevokeApiKey => keys
                .revoke_api_key(proto::RevokeApiKeyRequest { id: app.api_key("r", &["incidents:read"]).await.0 })
                .await
                .map(drop),
            ListAuditEvents => audit.list_audit_events(proto::ListAuditEventsRequest::default()).await.map(drop),
            ListEvents => events.list_events(proto::ListEventsRequest::default()).await.map(drop),
            WatchEvents => events.watch_events(proto::WatchEventsRequest::default()).await.map(drop),
            CreateSubscription => subs
                .create_subscription(proto::CreateSubscriptionRequest {
                    subscription: Some(proto::Subscription {
                        channel: proto::Channel::Webhook as i32,
                        target: "http://127.0.0.1:9/x".into(),
                        ..Default::default()
                    }),
                })
                .await
                .map(drop),
            GetSubscription => {
                subs.get_subscription(proto::GetSubscriptionRequest { id: subscription(app).await }).await.map(drop)
            }
            ListSubscriptions => subs.list_subscriptions(proto::ListSubscriptionsRequest::default()).await.map(drop),
            UpdateSubscription => subs
                .update_subscription(proto::UpdateSubscriptionRequest {
                    subscription: Some(proto::Subscription {
                        id: subscription(app).await,
                        include_internal: true,
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["include_internal".into()] }),
                    etag: String::new(),
                })
                .await
                .map(drop),
            DeleteSubscription => subs
                .delete_subscription(proto::DeleteSubscriptionRequest { id: subscription(app).await })
                .await
                .map(drop),
            PauseSubscription => {
                subs.pause_subscription(proto::PauseSubscriptionRequest { id: subscription(app).await }).await.map(drop)
            }
            ResumeSubscription => subs
                .resume_subscription(proto::ResumeSubscriptionRequest { id: subscription(app).await })
                .await
                .map(drop),
            RotateSubscriptionSecret => subs
                .rotate_subscription_secret(proto::RotateSubscriptionSecretRequest { id: subscription(app).await })
                .await
                .map(drop),
            TestSubscription => {
                subs.test_subscription(proto::TestSubscriptionRequest { id: subscription(app).await }).await.map(drop)
            }
            ListDeliveries => subs
                .list_deliveries(proto::ListDeliveriesRequest {
                    subscription_id: subscription(app).await,
                    ..Default::default()
                })
                .await
                .map(drop),
            GetDelivery => subs.get_delivery(proto::GetDeliveryRequest { id: delivered(app).await }).await.map(drop),
            ListDeliveryAttempts => subs
                .list_delivery_attempts(proto::ListDeliveryAttemptsRequest {
                    delivery_id: delivered(app).await,
                    ..Default::default()
                })
                .await
                .map(drop),
            RetryDelivery => {
                subs.retry_delivery(proto::RetryDeliveryRequest { id: delivered(app).await }).await.map(drop)
            }
            RetryFailedDeliveries => subs
                .retry_failed_deliveries(proto::RetryFailedDeliveriesRequest {
                    subscription_id: subscription(app).await,
                })
                .await
                .map(drop),
            ListSubscribers => subscribers.list_subscribers(proto::ListSubscribersRequest::default()).await.map(drop),
            GetSubscriber => {
                subscribers.get_subscriber(proto::GetSubscriberRequest { id: subscriber(app).await }).await.map(drop)
            }
            CountSubscribers => subscribers.count_subscribers(proto::CountSubscribersRequest {}).await.map(drop),
            DeleteSubscriber => subscribers
                .delete_subscriber(proto::DeleteSubscriberRequest { id: subscriber(app).await })
                .await
                .map(drop),
            ExportSubscribers => {
                subscribers.export_subscribers(proto::ExportSubscribersRequest::default()).await.map(drop)
            }
            ImportSubscribers => subscribers
                .import_subscribers(proto::ImportSubscribersRequest {
                    csv: format!("email\n{}@example.com\n", uuid::Uuid::new_v4().simple()),
                })
                .await
                .map(drop),
            CreateIntegration => integrations
                .create_integration(proto::CreateIntegrationRequest {
                    integration: Some(proto::Integration {
                        name: "m".into(),
                        kind: proto::IntegrationKind::Alertmanager as i32,
                        ..Default::default()
                    }),
                })
                .await
                .map(drop),
            GetIntegration => integrations
                .get_integration(proto::GetIntegrationRequest { id: integration(app).await })
                .await
                .map(drop),
            ListIntegrations => {
                integrations.list_integrations(proto::ListIntegrationsRequest::default()).await.map(drop)
            }
            UpdateIntegration => integrations
                .update_integration(proto::UpdateIntegrationRequest {
                    integration: Some(proto::Integration {
                        id: integration(app).await,
                        name: "n".into(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }),
                    etag: String::new(),
                })
                .await
                .map(drop),
            DeleteIntegration => integrations
                .delete_integration(proto::DeleteIntegrationRequest { id: integration(app).await, etag: String::new() })
                .await
                .map(drop),
            RotateIntegrationSecret => integrations
                .rotate_integration_secret(proto::RotateIntegrationSecretRequest { id: integration(app).await })
                .await
                .map(drop),
            ListIntegrationAlerts => integrations
                .list_integration_alerts(proto::ListIntegrationAlertsRequest {
                    integration_id: integration(app).await,
                    ..Default::default()
                })
                .await
                .map(drop),
            ListIncidentAlerts => integrations
                .list_incident_alerts(proto::ListIncidentAlertsRequest {
                    incident_id: incident().await,
                    ..Default::default()
                })
                .await
                .map(drop),
            GetPostmortem => postmortems
                .get_postmortem(proto::GetPostmortemRequest { incident_id: postmortem(app).await })
                .await
                .map(drop),
            CreatePostmortem => postmortems
                .create_postmortem(proto::CreatePostmortemRequest {
                    incident_id: incident().await,
                    ..Default::default()
                })
                .await
                .map(drop),
            UpdatePostmortem => postmortems
                .update_postmortem(proto::UpdatePostmortemRequest {
                    incident_id: postmortem(app).await,
                    postmortem: Some(proto::Postmortem { body: "b".into(), ..Default::default() }),
                    ..Default::default()
                })
                .await
                .map(drop),
            TransitionPostmortem => postmortems
                .transition_postmortem(proto::TransitionPostmortemRequest {
                    incident_id: postmortem(app).await,
                    to: proto::PostmortemStatus::InReview as i32,
                    etag: String::new(),
                })
                .await
                .map(drop),
            CreateAction => actions
                .create_action(proto::CreateActionRequest {
                    action: Some(proto::Action {
                        incident_id: incident().await,
                        title: "t".into(),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await
                .map(drop),
            GetAction => actions.get_action(proto::GetActionRequest { id: action(app).await }).await.map(drop),
            ListActions => actions.list_actions(proto::ListActionsRequest::default()).await.map(drop),
            UpdateAction => actions
                .update_action(proto::UpdateActionRequest {
                    action: Some(proto::Action {
                        id: action(app).await,
                        status: proto::ActionStatus::Done as i32,
                        ..Default::default()
                    }),
                    update_mask: None,
                    etag: String::new(),
                })
                .await
                .map(drop),
            DeleteAction => actions
                .delete_action(proto::DeleteActionRequest { id: action(app).await, etag: String::new() })
                .await
                .map(drop),
            GetStats => stats.get_stats(proto::GetStatsRequest::default()).await.map(drop),
            MergeIncident => incidents
                .merge_incident(proto::MergeIncidentRequest {
                    id: incident().await,
                    into: incident().await,
                    actor: String::new(),
                })
                .await
                .map(drop),
            CreateIncidentLink => incidents
                .create_incident_link(proto::CreateIncidentLinkRequest {
                    incident_id: incident().await,
                    kind: proto::LinkKind::Related as i32,
                    other_incident_id: incident().await,
                })
                .await
                .map(drop),
            ListIncidentLinks => incidents
                .list_incident_links(proto::ListIncidentLinksRequest { incident_id: incident().await })
                .await
                .map(drop),
            DeleteIncidentLink => {
                let (incident_id, link_id) = link(app).await;
                incidents
                    .delete_incident_link(proto::DeleteIncidentLinkRequest { incident_id, link_id })
                    .await
                    .map(drop)
            }
        }
    }
}

#[tokio::test]
async fn grpc_matrix() {
    let app = TestApp::spawn().await;
    let keys = keys(&app).await;
    for op in Grpc::ALL {
        for (what, authorization) in &keys.bad {
            let err = op.call(&app, Creds(authorization.clone())).await.expect_err(&format!("{op:?} with {what}"));
            assert_eq!(err.code(), tonic::Code::Unauthenticated, "{op:?} with {what}: {err:?}");
            assert!(!err.message().is_empty());
        }
        for (scope, secret) in &keys.scoped {
            let result = op.call(&app, Creds(Some(format!("Bearer {secret}")))).await;
            if allowed(scope, op.need()) {
                result.unwrap_or_else(|e| panic!("{op:?} with {scope} must succeed: {e:?}"));
            } else {
                let err = result.expect_err(&format!("{op:?} with {scope} must be refused"));
                assert_eq!(err.code(), tonic::Code::PermissionDenied, "{op:?} with {scope}: {err:?}");
                assert_eq!(err.get_error_details().error_info().unwrap().reason, "PERMISSION_DENIED");
            }
        }
    }
    // Health and reflection stay open.
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    let res = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(res.into_inner().status, 1);
}

#[tokio::test]
async fn secrets_are_shown_once_and_only_their_hashes_are_stored() {
    let app = TestApp::spawn().await;
    let res = app.post("/v1/api-keys", json!({"name": "ci", "scopes": ["incidents:write", "incidents:read"]})).await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.header("cache-control"), Some("no-store"));
    let secret = res.body["secret"].as_str().unwrap().to_string();
    let key = &res.body["api_key"];
    assert!(secret.starts_with("ind_") && secret.len() == 54, "{secret}");
    assert!(secret.starts_with(key["prefix"].as_str().unwrap()), "the prefix identifies the key");
    assert_eq!(key["scopes"], json!(["incidents:read", "incidents:write"]));
    assert!(key.get("secret").is_none());
    let id = key["id"].as_str().unwrap();
    for listed in [app.get(&format!("/v1/api-keys/{id}")).await.body, app.get("/v1/api-keys").await.body] {
        assert!(!listed.to_string().contains(&secret[16..]), "a listing shows no secret: {listed}");
    }
    // Use it, so last_used_at, the audit trail and logs have had their chance to see it.
    let used = app.send(crate::helpers::http_client().get(app.url("/v1/incidents")).bearer_auth(&secret)).await;
    assert_eq!(used.status, StatusCode::OK);
    let db = app.db().await;
    for table in ["api_keys", "audit_events", "idempotency_keys"] {
        for row in db.rows_as_text(table).await {
            assert!(!row.contains(&secret[16..]), "{table} holds the secret: {row}");
        }
    }
    let stored_hash = db.rows_as_text("api_keys").await.concat().to_lowercase();
    let hash: String = incidentd::domain::access::hash_secret(&secret).iter().map(|b| format!("{b:02x}")).collect();
    assert!(stored_hash.contains(&hash), "the SHA-256 of the secret is what is stored");
    db.close().await;
    let tokio_time = tokio::time::Instant::now();
    loop {
        let key = app.get(&format!("/v1/api-keys/{id}")).await.body;
        if key["last_used_at"].is_string() {
            break;
        }
        assert!(tokio_time.elapsed() < Duration::from_secs(5), "last_used_at is recorded: {key}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Bad inputs are field errors.
    for (body, field) in [
        (json!({"scopes": ["admin"]}), "name"),
        (json!({"name": "x", "scopes": []}), "scopes"),
        (json!({"name": "x", "scopes": ["root"]}), "scopes[0]"),
        (json!({"name": "x", "scopes": ["admin"], "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
    ] {
        let res = app.post("/v1/api-keys", body.clone()).await;
        res.problem(400);
        assert_eq!(res.error_fields(), [field], "{body}");
    }
}

#[tokio::test]
async fn the_audit_trail_says_who_changed_what() {
    let app = TestApp::spawn().await;
    let (key_id, secret) = app.api_key("deploy-bot", &["incidents:write", "components:write"]).await;
    let bot = crate::helpers::http_client();
    let send = |method: Method, path: &str, body: Value| {
        app.send(bot.request(method, app.url(path)).bearer_auth(&secret).json(&body))
    };
    let created = send(Method::POST, "/v1/incidents", json!({"title": "Deploy broke login", "severity": "sev2"})).await;
    let id = created.body["id"].as_str().unwrap().to_string();
    send(Method::POST, &format!("/v1/incidents/{id}/transitions"), json!({"to": "identified"})).await;
    send(Method::PATCH, &format!("/v1/incidents/{id}"), json!({"impact": "major", "summary": "x"})).await;
    let update = send(Method::POST, &format!("/v1/incidents/{id}/updates"), json!({"body": "Rolling back"})).await;
    assert_eq!(update.body["update"]["author"], "deploy-bot", "authors default to the key's name");
    let ack = send(Method::POST, &format!("/v1/incidents/{id}/acknowledge"), json!({})).await;
    assert_eq!(ack.body["acknowledged_by"], "deploy-bot");
    let c = send(Method::POST, "/v1/components", json!({"name": "Login"})).await;
    let cid = c.body["id"].as_str().unwrap().to_string();
    send(Method::DELETE, &format!("/v1/components/{cid}"), Value::Null).await;

    let events = app.get(&format!("/v1/audit-events?actor_key_id={key_id}")).await.body;
    let actions: Vec<&str> =
        events["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "component.delete",
            "component.create",
            "incident.acknowledge",
            "incident.update_posted",
            "incident.update",
            "incident.transition",
            "incident.create"
        ],
        "newest first"
    );
    for e in events["events"].as_array().unwrap() {
        assert_eq!(e["actor_name"], "deploy-bot");
        assert_eq!(e["actor_key_id"], key_id.as_str());
        assert!(e["occurred_at"].is_string());
    }
    let transition = &events["events"][5];
    assert_eq!(transition["resource_type"], "incident");
    assert_eq!(transition["resource_id"], id.as_str());
    assert_eq!(transition["details"], json!({"from": "investigating", "to": "identified", "reopened": false}));
    assert_eq!(events["events"][4]["details"]["fields"], json!(["summary", "impact"]));

    // Filters and paging.
    let about = app.get(&format!("/v1/audit-events?resource_type=incident&resource_id={id}&page_size=2")).await.body;
    assert_eq!(about["events"].as_array().unwrap().len(), 2);
    let token = about["next_page_token"].as_str().unwrap();
    let next = app
        .get(&format!("/v1/audit-events?resource_type=incident&resource_id={id}&page_size=2&page_token={token}"))
        .await
        .body;
    assert_eq!(next["events"][0]["action"], "incident.update");
    let creates = app.get("/v1/audit-events?action=api_key.create").await.body;
    let first = &creates["events"][0];
    assert_eq!(first["actor_name"], "admin", "the admin token acts as \"admin\"");
    assert!(first["actor_key_id"].is_null());
    assert_eq!(first["details"]["scopes"], json!(["incidents:write", "components:write"]));

    // The same over gRPC.
    let mut audit =
        proto::audit_service_client::AuditServiceClient::with_interceptor(app.channel().await, app.bearer());
    let listed = audit
        .list_audit_events(proto::ListAuditEventsRequest { actor_key_id: key_id.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.events.len(), 7);
    assert_eq!(listed.events[6].action, "incident.create");
    assert_eq!(listed.events[6].actor_name, "deploy-bot");
}

#[tokio::test]
async fn rate_limits_are_per_key_with_retry_after() {
    // One request a second after a burst of three: a slow machine cannot refill the bucket
    // between requests sent back to back, so the limit shows however loaded the box is.
    let app = TestApp::spawn_with(|c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await;
    let a = app.api_key("a", &["incidents:read"]).await.1;
    let b = app.api_key("b", &["incidents:read"]).await.1;
    let get = |secret: &str| app.send(crate::helpers::http_client().get(app.url("/v1/incidents")).bearer_auth(secret));
    for _ in 0..3 {
        assert_eq!(get(&a).await.status, StatusCode::OK, "the burst is allowed");
    }
    // The next is refused, unless the box was so slow that a token came back meanwhile.
    let mut limited = get(&a).await;
    for _ in 0..5 {
        if limited.status != StatusCode::OK {
            break;
        }
        limited = get(&a).await;
    }
    limited.problem(429);
    assert_eq!(limited.body["code"], "rate_limited");
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=1).contains(&retry_after), "Retry-After in whole seconds: {retry_after}");
    assert_eq!(get(&b).await.status, StatusCode::OK, "another key has its own bucket");

    let mut client =
        proto::incident_service_client::IncidentServiceClient::with_interceptor(app.channel().await, Bearer::new(&a));
    let mut refused = None;
    for _ in 0..5 {
        if let Err(e) = client.list_incidents(proto::ListIncidentsRequest::default()).await {
            refused = Some(e);
            break;
        }
    }
    let err = refused.expect("gRPC shares the key's bucket and is refused too");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert_eq!(err.metadata().get("retry-after").unwrap(), "1");
    assert!(err.get_error_details().retry_info().is_some());

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&a).await.status, StatusCode::OK, "the bucket refills");
}

#[tokio::test]
async fn request_size_is_limited_on_both_transports() {
    let app = TestApp::spawn_with(|c| c.max_request_bytes = 4096).await;
    let big = "x".repeat(5000);
    let res = app.post("/v1/incidents", json!({"title": "big", "severity": "sev3", "summary": big})).await;
    res.problem(413);
    let fits =
        app.post("/v1/incidents", json!({"title": "fits", "severity": "sev3", "summary": "x".repeat(3000)})).await;
    assert_eq!(fits.status, StatusCode::CREATED);
    let mut client = app.incidents_grpc().await;
    let err = client
        .create_incident(proto::CreateIncidentRequest {
            incident: Some(proto::Incident { title: "big".into(), severity: 3, summary: big, ..Default::default() }),
            request_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange, "{err:?}");
    assert_eq!(app.get("/v1/incidents").await.body["incidents"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn cors_is_off_by_default_and_configurable() {
    let preflight = |app: &TestApp| {
        crate::helpers::http_client()
            .request(Method::OPTIONS, app.url("/v1/incidents"))
            .header("origin", "https://dash.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let off = TestApp::spawn().await;
    let res = preflight(&off).await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());

    let on = TestApp::spawn_with(|c| c.cors_allowed_origins = vec!["https://dash.example.com".into()]).await;
    let res = preflight(&on).await.unwrap();
    assert!(res.status().is_success());
    assert_eq!(res.headers()["access-control-allow-origin"], "https://dash.example.com");
    let allowed = res.headers()["access-control-allow-headers"].to_str().unwrap().to_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("idempotency-key"), "{allowed}");
    let other = crate::helpers::http_client()
        .request(Method::OPTIONS, on.url("/v1/incidents"))
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    let get = on.send(on.client.get(on.url("/v1/incidents")).header("origin", "https://dash.example.com")).await;
    assert_eq!(get.header("access-control-allow-origin"), Some("https://dash.example.com"));
}
