//! The API as the producer needs it: every call retried with backoff while
//! the API is down or slow, so no result is lost and nothing crashes.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use faafo_common::api_client::{ApiClient, ApiError};
use faafo_common::fractal::{Fractal, FractalUpdate};
use faafo_common::messaging::Backoff;
use std::time::Duration;
use tracing::{debug, warn};

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
    /// at `revision`, when given ([`ApiClient::update_at_revision`]), so
    /// that a request that hung on a host the client left cannot apply
    /// once the fractal moved on.
    ///
    /// A try that may have been applied (its answer lost: a timeout, a
    /// broken connection, any 5xx, an unreadable answer, a host left for
    /// the next) makes the API refuse the next one (412): the fractal has
    /// moved on, by this very write. It is then read back, and taken as
    /// this write's doing if it is one revision on and says what the write
    /// said. Only another client's identical
    /// change at the same moment could be mistaken for it (two producers
    /// taking a task over at once, one of which lost an answer): both then
    /// dispatch it, and its duplicate result is ignored.
    pub async fn update(
        &self,
        what: &str,
        uuid: &str,
        update: &FractalUpdate,
        revision: Option<u64>,
    ) -> Result<Fractal, ApiError> {
        let uncertain = AtomicBool::new(false);
        let uncertain = &uncertain;
        // Through 401/403 too, as `get`.
        let written = self
            .retry_until_let_in(what, |c| async move {
                c.update_at_revision(uuid, update, revision)
                    .await
                    .inspect_err(|e| {
                        if e.may_have_applied() {
                            uncertain.store(true, Ordering::Relaxed);
                        }
                    })
            })
            .await;
        let (Err(refused), Some(revision)) = (&written, revision) else {
            return written;
        };
        if !(refused.is_stale() && uncertain.load(Ordering::Relaxed)) {
            return written;
        }
        let current = self.get(what, uuid).await;
        match current {
            Ok(current)
                if revision
                    .checked_add(1)
                    .is_some_and(|next| current.revision == Some(next))
                    && update.is_reflected_in(&current) =>
            {
                debug!("{what}: task {uuid}: an earlier try whose answer was lost had done it");
                Ok(current)
            }
            _ => written,
        }
    }

    /// `GET /v1/fractal/<uuid>`, retried as [`Self::retry_until_let_in`]
    /// does (`what` names it in the warnings): a task's state is read and
    /// written through a change of tokens, as its result is stored, or the
    /// task would be left running, nobody's, until the next scan.
    pub async fn get(&self, what: &str, uuid: &str) -> Result<Fractal, ApiError> {
        self.retry_until_let_in(what, |c| async move { c.get(uuid).await })
            .await
    }

    /// Runs `call` until it succeeds or fails permanently. Only
    /// cancellation (dropping the future) stops it while the API is away.
    /// With several API hosts, a failure that moved the client to the
    /// next host is retried there at once, each host once in a row; then
    /// the retries wait as with one.
    pub async fn retry<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ApiError>
    where
        F: FnMut(ApiClient) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.retry_while(what, ApiError::is_transient, call).await
    }

    /// As [`Self::retry`], and through refusals of this producer's token
    /// too (401, 403: the API's `auth_tokens` being changed, a proxy in
    /// front of it set up wrong), which an operator fixes while the call
    /// waits. For a rendered result: kept until the API takes it, rather
    /// than dropped and rendered again.
    pub async fn retry_until_let_in<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ApiError>
    where
        F: FnMut(ApiClient) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        self.retry_while(what, |e| e.is_transient() || e.is_access_refused(), call)
            .await
    }

    async fn retry_while<T, F, Fut>(
        &self,
        what: &str,
        worth_retrying: impl Fn(&ApiError) -> bool,
        mut call: F,
    ) -> Result<T, ApiError>
    where
        F: FnMut(ApiClient) -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let mut attempt = 0u32;
        let hosts = u32::try_from(self.client.endpoint_count()).unwrap_or(u32::MAX);
        loop {
            match call(self.client.clone()).await {
                Ok(value) => return Ok(value),
                Err(error) if worth_retrying(&error) => {
                    attempt += 1;
                    if attempt == 1 || attempt.is_power_of_two() {
                        if error.is_access_refused() {
                            warn!(
                                "{what}: {error}; the API does not let this producer in (check [DEFAULT] auth_token against the API's auth_tokens); retrying (attempt {attempt})"
                            );
                        } else {
                            warn!("{what}: {error}; retrying (attempt {attempt})");
                        }
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
