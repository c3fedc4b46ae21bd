//! The whole producer program, for `faafo-producer` and `faafo producer`.

use faafo_common::api_client::ApiClient;
use faafo_common::configuration::FaafoConfig;
use faafo_common::messaging::{RpcClient, Target, Transport};
use faafo_common::shutdown::Shutdown;
use tracing::info;

use crate::{Producer, ProducerSettings, ResilientApi};

/// Connects and produces until `shutdown` triggers (or, with `one_shot`,
/// until one batch is finished). Returns whether every task of a one-shot
/// batch is done (always `true` otherwise).
pub async fn serve(
    config: &FaafoConfig,
    one_shot: bool,
    shutdown: Shutdown,
) -> Result<bool, Box<dyn std::error::Error>> {
    let settings = ProducerSettings::from_config(config);
    let grace = settings.shutdown_grace;
    // The API may have limits of its own (its host's file): a warning.
    for over in crate::settings::tasks_over_limits(config) {
        tracing::warn!("{over}: an API with that limit refuses the larger tasks");
    }
    let api = ApiClient::new(
        &config.default.endpoint_url,
        Some(config.default.auth_token.clone()),
    )?;
    let transport = Transport::builder(&config.default.transport_url)
        .control_exchange(&config.default.control_exchange)
        .codec(config.codec())
        .connection_name("faafo-producer")
        .connect()
        .await?;
    let rpc = RpcClient::new(&transport, Target::topic(&settings.topic));
    let producer = Producer::new(ResilientApi::new(api), rpc, settings, shutdown.clone());
    let success = if one_shot {
        let mut batch = std::pin::pin!(producer.one_batch());
        let report = tokio::select! {
            report = &mut batch => Some(report),
            // Tasks not yet called are abandoned; calls in flight get up
            // to the grace period to finish and have their results stored.
            _ = shutdown.wait() => {
                info!("stopping: waiting up to {grace:?} for the calls in flight");
                match tokio::time::timeout(grace, batch).await {
                    Ok(report) => Some(report),
                    Err(_) => {
                        producer.give_up_in_flight().await;
                        None
                    }
                }
            }
        };
        match &report {
            Some(report) => info!(
                "one-shot batch finished: {} done, {} failed, {} other",
                report.done, report.failed, report.other
            ),
            None => info!("one-shot batch given up: calls were still in flight after {grace:?}"),
        }
        // An empty batch (min_tasks = 0) did all it had to.
        report.is_some_and(|report| report.all_done())
    } else {
        producer.run().await;
        true
    };
    transport.close().await;
    info!("faafo-producer stopped");
    Ok(success)
}
