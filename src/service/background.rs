//! Every background loop of a process, started in one place and stopped together: the
//! listener for other processes' notices, the sequencer, the dispatcher, the maintenance
//! schedule, the mail outbox, acknowledgement deadlines, overdue follow-up actions, the
//! customer mails and retention (worker role), the hourly upkeep and the memory trim; the
//! application adds the ones that belong to a transport (gRPC health) through
//! [`Background::spawn`]. Stopping cancels them all and waits for each (the dispatcher after
//! handing back or recording what it holds).

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Service;
use crate::domain::Result;
use crate::store::Notice;

/// How often the upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(3600);
/// How often the workers look for maintenance due to start, complete or be announced, and
/// for queued mails.
const EVERY_SECOND: Duration = Duration::from_secs(1);
/// How often memory freed since is given back to the system.
const TRIM_EVERY: Duration = Duration::from_secs(30);

/// The running background loops of a process.
pub struct Background {
    stop: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Background {
    fn new() -> Self {
        Background { stop: CancellationToken::new(), tasks: Vec::new() }
    }

    /// Runs a loop until the background stops: `task` gets the token that says so, and must
    /// return soon after it fires.
    pub fn spawn<F>(&mut self, name: &'static str, task: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push((name, tokio::spawn(task(self.stop.clone()))));
    }

    /// Stops every loop and waits until each has finished.
    pub async fn stop(self) {
        self.stop.cancel();
        for (name, task) in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(task = name, error = %e, "a background task ended abnormally");
            }
        }
    }
}

impl Service {
    /// Starts the background work of this process: on a shared database the listener for
    /// other processes' notices, the sequencer, with `worker` the dispatcher and retention, and
    /// the upkeep.
    pub async fn start_background(&self, worker: bool) -> Result<Background> {
        self.signals.note_sequenced(self.store.latest_event_seq().await?);
        let mut background = Background::new();
        if let Some(notices) = self.store.notifications().await? {
            let service = self.clone();
            background.spawn("notices", |stop| service.follow_notices(notices, stop));
        }
        let dispatcher = self.dispatcher.clone();
        background.spawn("sequencer", |stop| dispatcher.run_sequencer(stop));
        if worker {
            let dispatcher = self.dispatcher.clone();
            background.spawn("dispatcher", |stop| dispatcher.run(stop));
            // Starts, completes and announces the maintenance due (what fell due while no
            // process ran is done at once), and sends the queued mails (confirmations).
            let service = self.clone();
            background.spawn("maintenance", |stop| {
                Self::every(EVERY_SECOND, stop, "moving scheduled maintenance", move || {
                    let service = service.clone();
                    async move { service.run_due_maintenance(crate::domain::now()).await }
                })
            });
            let service = self.clone();
            background.spawn("mail", |stop| {
                Self::every(EVERY_SECOND, stop, "sending queued mails", move || {
                    let service = service.clone();
                    async move { service.send_due_mails().await }
                })
            });
            // Reminds of open incidents nobody acknowledged in time (`incident.ack_overdue`).
            let service = self.clone();
            background.spawn("ack deadlines", |stop| {
                Self::every(EVERY_SECOND, stop, "checking acknowledgement deadlines", move || {
                    let service = service.clone();
                    async move { service.send_due_ack_reminders(crate::domain::now()).await }
                })
            });
            // Announces follow-up actions whose due date passed (`action.overdue`), once each.
            let service = self.clone();
            background.spawn("overdue actions", |stop| {
                Self::every(EVERY_SECOND, stop, "checking follow-up action due dates", move || {
                    let service = service.clone();
                    async move { service.send_overdue_actions(crate::domain::now()).await }
                })
            });
            // The customers' mails about incidents and maintenance, apart from the
            // confirmations so that a big send does not hold a confirmation back.
            let service = self.clone();
            background.spawn("customer mail", |stop| {
                Self::every(EVERY_SECOND, stop, "sending customer mails", move || {
                    let service = service.clone();
                    async move { service.send_due_customer_mails().await }
                })
            });
            // Deletes what is older than it is kept, in small batches (`retention.rs`).
            let service = self.clone();
            background.spawn("retention", |stop| service.run_retention(stop));
        }
        let service = self.clone();
        background.spawn("upkeep", |stop| service.run_upkeep(stop));
        background.spawn("memory", release_memory_now_and_then);
        Ok(background)
    }

    /// Reacts to what other processes sharing the database announce.
    async fn follow_notices(self, mut notices: tokio::sync::mpsc::Receiver<Notice>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                notice = notices.recv() => match notice {
                    Some(n) => self.notice(n),
                    None => return,
                },
            }
        }
    }

    /// Runs `step` now and then every `period` until `stop`; a failed step is logged as
    /// `what` failing and tried again at the next.
    async fn every<F, Fut, T>(period: Duration, stop: CancellationToken, what: &'static str, mut step: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        loop {
            match step().await {
                Err(e) if e.is_outage() => tracing::debug!(error = %e, "{what} failed; trying again"),
                Err(e) => tracing::warn!(error = %e, "{what} failed; trying again"),
                Ok(_) => {}
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(period) => {}
            }
        }
    }

    /// At start and then every hour: refreshes the planner's statistics (a database opened
    /// for the first time gets them now). Expired records go in the workers' retention loop.
    async fn run_upkeep(self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.store.refresh_statistics().await {
                tracing::warn!(error = %e, "refreshing the query planner's statistics failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(UPKEEP_EVERY) => {}
            }
        }
    }
}

/// Every 30 s: gives memory freed since to the system (see `crate::alloc`), so the process
/// shrinks back after a load spike.
async fn release_memory_now_and_then(stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(TRIM_EVERY) => {}
        }
        crate::alloc::release_free_memory();
    }
}
