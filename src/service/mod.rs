//! The use cases. Both transports call these and nothing else; each use case runs in one
//! store transaction, so a change and everything it records commit together. One file per
//! feature (incidents, components, access, subscriptions, events), the delivery engine in
//! `dispatch/`, and every background loop started in `background.rs`.

mod access;
mod actions;
mod alerts;
mod background;
mod components;
mod customer_mails;
mod dispatch;
mod events;
mod history;
mod idempotency;
mod incidents;
mod integrations;
mod links;
mod maintenance;
mod metrics;
mod postmortems;
mod public;
mod retention;
mod stats;
mod subscriber_list;
mod subscribers;
mod subscriptions;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use crate::store::Notice;
pub use access::{AccessSettings, KEY_CACHE_TTL, RateLimit};
pub use actions::ActionQuery;
pub use alerts::GroupOutcome;
pub use background::Background;
pub use dispatch::{Clock, DispatchSettings, ManualClock, SystemClock};
pub use history::{DEFAULT_UPTIME_WINDOW, MAX_UPTIME_WINDOW, backfill_component_history};
pub use integrations::IntegrationWithSecret;
pub use metrics::Metrics;
pub use public::HISTORY_DAYS;
pub use retention::Pruned;
pub use subscribers::SubscribeRequest;
pub use subscriptions::{SubscriptionWithSecret, delivery_status};

use idempotency::{claim, fingerprint, save_response};

use crate::domain::{Error, Result};
use crate::notify::{Sender, SenderSettings};
use crate::store::DynStore;

/// What the service is built from (see `Config::service_settings`).
#[derive(Clone, Default)]
pub struct ServiceSettings {
    pub access: AccessSettings,
    /// How notifications are sent, and where the API is reached from outside
    /// (`sender.public_url`: the CloudEvents `source`, links in messages).
    pub sender: SenderSettings,
    pub dispatch: DispatchSettings,
    /// The status page's time zone: uptime days are its calendar days.
    pub time_zone: chrono_tz::Tz,
    /// How long before a maintenance starts its `maintenance.reminder` goes out.
    pub maintenance_reminder: chrono::Duration,
    /// The status page's name, in the mails customers get.
    pub page_name: String,
    /// Acknowledgement deadlines per severity, and how often the reminder repeats.
    pub ack_policy: crate::domain::alert::AckPolicy,
    /// Whether publishing a resolved incident's postmortem closes the incident.
    pub postmortem_closes_incident: bool,
    /// How long what piles up is kept, and how the workers prune it.
    pub retention: crate::domain::retention::RetentionPolicy,
}

/// The service every transport calls. Cheap to clone: one reference count (every request
/// clones it, into each handler and middleware that takes it as state).
#[derive(Clone)]
pub struct Service(Arc<Parts>);

/// What a [`Service`] holds; its fields read through the service (`self.store`).
pub struct Parts {
    store: DynStore,
    authenticator: Arc<access::Authenticator>,
    signals: Arc<events::Signals>,
    public_url: Arc<str>,
    dispatcher: Arc<dispatch::Dispatcher>,
    metrics: Arc<Metrics>,
    time_zone: chrono_tz::Tz,
    maintenance_reminder: chrono::Duration,
    page_name: String,
    ack_policy: crate::domain::alert::AckPolicy,
    postmortem_closes_incident: bool,
    retention: crate::domain::retention::RetentionPolicy,
    /// The key customers' links are signed with, read from the database on first use.
    link_key: tokio::sync::OnceCell<crate::domain::subscriber::LinkKey>,
    /// Set at shutdown: readiness fails from then on.
    draining: Arc<AtomicBool>,
    /// Cancelled when the process stops taking work: live event streams end.
    closing: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for Service {
    type Target = Parts;
    fn deref(&self) -> &Parts {
        &self.0
    }
}

/// The result of a create: the resource, and whether it is a replay of an earlier request
/// with the same idempotency key.
#[derive(Debug, Clone)]
pub struct Created<T> {
    pub value: T,
    pub replayed: bool,
}

impl Service {
    pub fn new(store: DynStore, settings: ServiceSettings) -> anyhow::Result<Self> {
        let ServiceSettings {
            access,
            sender,
            dispatch,
            time_zone,
            maintenance_reminder,
            page_name,
            ack_policy,
            postmortem_closes_incident,
            retention,
        } = settings;
        let public_url = sender.public_url.trim_end_matches('/').to_string();
        let sender = Sender::new(SenderSettings { public_url: public_url.clone(), ..sender })?;
        let metrics = Arc::new(Metrics::default());
        let signals = Arc::new(events::Signals::new());
        let dispatcher = dispatch::Dispatcher::new(store.clone(), sender, dispatch, metrics.clone(), signals.clone());
        Ok(Self(Arc::new(Parts {
            store,
            authenticator: Arc::new(access::Authenticator::new(access)),
            signals,
            public_url: public_url.into(),
            dispatcher: Arc::new(dispatcher),
            metrics,
            time_zone,
            maintenance_reminder,
            page_name,
            ack_policy,
            postmortem_closes_incident,
            retention,
            link_key: Default::default(),
            draining: Default::default(),
            closing: Default::default(),
        })))
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The status page's time zone.
    pub fn time_zone(&self) -> chrono_tz::Tz {
        self.time_zone
    }

    /// Today in the status page's time zone (follow-up actions are due by its dates).
    pub fn today(&self) -> chrono::NaiveDate {
        crate::domain::now().with_timezone(&self.time_zone).date_naive()
    }

    /// Whether this process takes traffic: the database answers and it is not shutting down.
    pub async fn ready(&self) -> Result<()> {
        if self.is_draining() {
            return Err(Error::Unavailable("shutting down".into()));
        }
        self.store.ping().await
    }

    /// Whether the database answers, draining or not.
    pub async fn ping_database(&self) -> Result<()> {
        self.store.ping().await
    }

    /// Starts the shutdown: readiness fails from now on, so load balancers stop sending
    /// traffic while requests already routed here are still served.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Ends live event streams (their clients resume elsewhere from their last event id).
    pub fn end_streams(&self) {
        self.closing.cancel();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The metrics the transports record into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The Prometheus text exposition, with the figures read from the database now.
    pub async fn render_metrics(&self) -> String {
        let observed = tokio::time::timeout(std::time::Duration::from_secs(5), self.store.observe())
            .await
            .unwrap_or_else(|_| Err(Error::Unavailable("reading the metrics timed out".into())));
        self.metrics.render(observed)
    }

    /// Sequences every committed event not yet sequenced, and fans them out (tests and tools
    /// that do not wait for the background sequencer).
    pub async fn sequence_all(&self) -> Result<usize> {
        self.dispatcher.sequence_all().await
    }

    /// Wakes the dispatcher (after moving a test clock, say).
    pub fn wake_dispatcher(&self) {
        self.dispatcher.wake();
    }
}
