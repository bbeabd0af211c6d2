//! Analytics: the numbers over time, computed by the database.

use chrono::{DateTime, Utc};

use super::Service;
use crate::domain::stats::{Stats, StatsWindow};
use crate::domain::{Caller, Permission, Result, now};

impl Service {
    /// The analytics of the incidents declared in `[from, to)` (default: the last 30 days),
    /// with months in the status page's time zone.
    pub async fn stats(
        &self,
        caller: &Caller,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<Stats> {
        caller.require(Permission::ReadIncidents)?;
        let window = StatsWindow::new(from, to, &self.time_zone, now())?;
        let figures = self.store.incident_stats(&window).await?;
        let names = self.component_names().await?.into_iter().collect();
        Ok(Stats::new(&window, figures, &names))
    }
}
