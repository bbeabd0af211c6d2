//! Analytics: the figures the database computes for a window.

use async_trait::async_trait;

use crate::domain::Result;
use crate::domain::stats::{StatsFigures, StatsWindow};

#[async_trait]
pub trait StatsStore {
    /// MTTA and MTTR (count, mean, p50, p90) overall, by severity, by month and by component;
    /// reopenings; causes; root-cause categories; follow-up actions; of the incidents declared
    /// in the window (merged ones left out).
    async fn incident_stats(&self, window: &StatsWindow) -> Result<StatsFigures>;
}
