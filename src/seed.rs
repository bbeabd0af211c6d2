//! `incidentd seed`: a realistic dataset for benchmarks and demos, written through the service
//! layer (so every incident has its timeline, events and audit records, as if made over the API).
//!
//! The data is deterministic for a given count: 20 components in 4 groups; incidents of every
//! severity with team and region labels, one or two affected components, an ETA and a
//! workaround, two timeline updates (one public, one internal); four in five are resolved.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use tokio::task::JoinSet;
use uuid::Uuid;

use crate::domain::{
    AffectedComponent, Caller, ComponentStatus, Impact, IncidentKey, NewComponent, NewIncident, NewUpdate, PageRequest,
    Severity, Status, TransitionInput, Visibility, Workaround, WorkaroundAvailability,
};
use crate::service::Service;

const GROUPS: [&str; 4] = ["Edge", "API", "Data", "Billing"];
const TEAMS: [&str; 6] = ["payments", "identity", "search", "platform", "storage", "mobile"];
const REGIONS: [&str; 4] = ["eu-west-1", "us-east-1", "us-west-2", "ap-southeast-1"];

/// What was written.
#[derive(Debug)]
pub struct Seeded {
    pub components: usize,
    pub incidents: usize,
    pub seconds: f64,
}

/// Writes `incidents` incidents (and the components they affect, when missing), `concurrency`
/// at a time.
pub async fn seed(service: &Service, incidents: usize, concurrency: usize) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let caller = Caller::system();
    let components = components(service, &caller).await?;
    let components = Arc::new(components);
    let mut running = JoinSet::new();
    let mut written: usize = 0;
    for n in 0..incidents {
        if running.len() >= concurrency.max(1) {
            running.join_next().await.expect("a task is running")??;
            written += 1;
            if written.is_multiple_of(10_000) {
                tracing::info!(written, "seeding");
            }
        }
        let (service, caller, components) = (service.clone(), caller.clone(), components.clone());
        running.spawn(async move { incident(&service, &caller, &components, n).await });
    }
    while let Some(result) = running.join_next().await {
        result??;
        written += 1;
    }
    Ok(Seeded { components: components.len(), incidents: written, seconds: started.elapsed().as_secs_f64() })
}

/// The 20 seed components, created unless a component of that name exists.
async fn components(service: &Service, caller: &Caller) -> anyhow::Result<Vec<Uuid>> {
    let mut existing: BTreeMap<String, Uuid> = BTreeMap::new();
    let mut token: Option<String> = None;
    loop {
        let page = PageRequest::new(Some(500), token.as_deref()).map_err(|e| anyhow::anyhow!("{e}"))?;
        let page = service.list_components(caller, None, page).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        existing.extend(page.items.into_iter().map(|c| (c.name, c.id)));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut ids = Vec::new();
    for (g, group) in GROUPS.iter().enumerate() {
        for n in 1..=5 {
            let name = format!("{group} {n}");
            if let Some(id) = existing.get(&name) {
                ids.push(*id);
                continue;
            }
            let input = NewComponent {
                name: Some(name),
                description: Some(format!("{group} service, part {n}")),
                group: Some(group.to_string()),
                position: Some((g * 10 + n) as i32),
                status: None,
            };
            let created = service.create_component(caller, input, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            ids.push(created.value.id);
        }
    }
    Ok(ids)
}

async fn incident(service: &Service, caller: &Caller, components: &[Uuid], n: usize) -> anyhow::Result<()> {
    let severity =
        [Severity::Sev1, Severity::Sev2, Severity::Sev2, Severity::Sev3, Severity::Sev3, Severity::Sev4][n % 6];
    let team = TEAMS[n % TEAMS.len()];
    let region = REGIONS[(n / 7) % REGIONS.len()];
    // Spread components independently of severity and labels, so every filter combination
    // has matches.
    let spread = |salt: usize| (n.wrapping_mul(2_654_435_761).wrapping_add(salt) >> 5) % components.len();
    let first = components[spread(0)];
    let mut affected = vec![AffectedComponent { component_id: first, status: ComponentStatus::PartialOutage }];
    if n.is_multiple_of(3) {
        let second = components[spread(0x9e37)];
        if second != first {
            affected.push(AffectedComponent { component_id: second, status: ComponentStatus::DegradedPerformance });
        }
    }
    let now = crate::domain::now();
    let input = NewIncident {
        title: Some(format!("Elevated error rate on {team} in {region} (#{n})")),
        summary: Some(format!("Requests to {team} in {region} fail intermittently; retries mostly succeed.")),
        severity: Some(severity),
        impact: Some([Impact::Minor, Impact::Major, Impact::Critical][n % 3]),
        affected_components: affected,
        affected_customers: Some(((n * 37) % 5000) as i64),
        eta: Some(now + chrono::Duration::minutes(30 + (n % 90) as i64)),
        workaround: Some(Workaround {
            availability: WorkaroundAvailability::Available,
            text: Some("Retry with exponential backoff.".into()),
        }),
        commander: Some(format!("oncall-{team}")),
        labels: BTreeMap::from([("team".into(), team.into()), ("region".into(), region.into())]),
        started_at: Some(now - chrono::Duration::minutes((n % 600) as i64)),
        ..NewIncident::default()
    };
    let created = service.create_incident(caller, input, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let key = IncidentKey::Id(created.value.id);
    for (body, visibility) in [
        ("We are investigating elevated error rates.", Visibility::Public),
        ("Correlates with the 14:02 deploy; rolling back.", Visibility::Internal),
    ] {
        let update = NewUpdate { body: Some(body.into()), visibility: Some(visibility), ..NewUpdate::default() };
        service.post_update(caller, key, update, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    // Someone is on every incident (an open one left unacknowledged would set off its
    // acknowledgement reminders as soon as the service runs).
    let oncall = format!("oncall-{team}");
    service.acknowledge_incident(caller, key, Some(&oncall)).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    if !n.is_multiple_of(5) {
        let resolve = TransitionInput {
            to: Some(Status::Resolved),
            message: Some("Error rates are back to normal.".into()),
            ..TransitionInput::default()
        };
        service.transition_incident(caller, key, resolve).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
