//! The API as the producer needs it: every call retried with backoff while
//! the API is down or slow, so no result is lost and nothing crashes.

use std::future::Future;

use faafo_common::api_client::{ApiClient, ApiError};
use faafo_common::fractal::{Fractal, FractalUpdate};
use faafo_common::messaging::Backoff;
use std::time::Duration;
use tracing::warn;

/// Retries an API call while its failure is transient (unreachable, 5xx,
/// 429), with jittered backoff; permanent errors (4xx) are returned.
#[derive(Clone)]
pub struct ResilientApi {
    client: ApiClient,
    backoff: Backoff,
}

impl ResilientApi {
    /// Wraps `client`.
    pub fn new(client: ApiClient) -> Self {
        Self {
            client,
            backoff: Backoff {
                initial: Duration::from_millis(200),
                step: Duration::from_millis(500),
                max: Duration::from_secs(10),
            },
        }
    }

    /// The same, sending `request_id` with every call.
    pub fn with_request_id(&self, request_id: &str) -> Self {
        Self {
            client: self.client.with_request_id(request_id),
            backoff: self.backoff,
        }
    }

    /// The plain client.
    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// `PUT /v1/fractal/<uuid>` with `update`, retried as [`Self::retry`]
    /// does (`what` names it in the warnings); only while the fractal is
    /// at `revision`, when given ([`ApiClient::update_at_revision`]: a
    /// retry of a request that did apply succeeds, and one that hung on a
    /// host the client left cannot apply once the fractal moved on).
    pub async fn update(
        &self,
        what: &str,
        uuid: &str,
        update: &FractalUpdate,
        revision: Option<u64>,
    ) -> Result<Fractal, ApiError> {
        self.retry(what, |c| async move {
            c.update_at_revision(uuid, update, revision).await
        })
        .await
    }

    /// Runs `call` until it succeeds or fails permanently. Only
    /// cancellation (dropping the future) stops it while the API is away.
    /// With several API hosts, a failure that moved the client to the
    /// next host is retried there at once, each host once in a row; then
    /// the retries wait as with one.
    pub async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, ApiError>
    where
        F: FnMut(ApiClient) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0u32;
        let hosts = u32::try_from(self.client.endpoint_count()).unwrap_or(u32::MAX);
        loop {
            match call(self.client.clone()).await {
                Ok(value) => return Ok(value),
                Err(error) if error.is_transient() => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_power_of_two() {
                        warn!("{what}: {error}; retrying (attempt {attempt})");
                    }
                    // (With every host down, each attempt has already tried
                    // them all, so this is up to N x N connections before the
                    // first wait: a handful for the few hosts an API has.)
                    if attempt < hosts && error.moves_to_another_host() {
                        continue;
                    }
                    tokio::time::sleep(self.backoff.delay(attempt)).await;
                }
                Err(error) => return Err(error),
            }
        }
    }
}
