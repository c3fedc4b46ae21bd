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
        let report = tokio::select! {
            report = producer.one_batch() => report,
            _ = shutdown.wait() => Default::default(),
        };
        info!(
            "one-shot batch finished: {} done, {} failed, {} other",
            report.done, report.failed, report.other
        );
        report.all_done() && report.done > 0
    } else {
        producer.run().await;
        true
    };
    transport.close().await;
    Ok(success)
}
