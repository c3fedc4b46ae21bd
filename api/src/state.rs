//! What every handler shares.

use std::sync::Arc;

use crate::db::Database;
use crate::images::ImageStore;
use crate::metrics::Metrics;
use crate::settings::ApiSettings;

/// The application state (cheap to clone).
#[derive(Debug, Clone)]
pub struct AppState {
    /// The database.
    pub db: Database,
    /// Where images are kept.
    pub images: ImageStore,
    /// The parsed configuration.
    pub settings: Arc<ApiSettings>,
    /// Request counters and latencies.
    pub metrics: Arc<Metrics>,
}
