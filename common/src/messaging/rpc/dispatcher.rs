//! Endpoints and the dispatch rules of oslo.messaging.
//!
//! An [`Endpoint`] is a namespace, a version and a set of methods with typed
//! arguments. A request goes to the first endpoint whose namespace matches
//! and whose version can serve the requested one (same major, requested
//! minor not newer); if that endpoint lacks the method the caller gets
//! `NoSuchMethod`, if no endpoint is compatible, `UnsupportedVersion`.
//! Method names starting with `_` are never dispatched, as oslo's default
//! access policy.

// Endpoint methods fail with a `RemoteError`, the exception sent to the
// caller: it is the error of this module's results by design.
#![allow(clippy::result_large_err)]
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::messaging::context::RequestContext;
use crate::messaging::failure::{DISPATCHER_MODULE, RemoteError};
use crate::messaging::version::Version;
use crate::messaging::wire::{IncomingRequest, Payload};

/// A method's result, type-erased so the server can encode it in the
/// request's codec.
pub(crate) type MethodResult = Result<Box<dyn erased_serde::Serialize + Send + Sync>, RemoteError>;

type Handler =
    Arc<dyn Fn(RequestContext, &Payload) -> BoxFuture<'static, MethodResult> + Send + Sync>;

/// The name of oslo's optional ping method.
pub const PING_METHOD: &str = "oslo_rpc_server_ping";

/// A set of RPC methods under one namespace and version.
///
/// ```
/// # use faafo_common::messaging::*;
/// #[derive(serde::Deserialize)]
/// struct EchoArgs { value: String }
///
/// let endpoint = Endpoint::new()
///     .version(Version::new(1, 2))
///     .method("echo", |_ctx: RequestContext, args: EchoArgs| async move {
///         Ok::<_, RemoteError>(args.value)
///     });
/// ```
#[derive(Clone, Default)]
pub struct Endpoint {
    namespace: Option<String>,
    version: Version,
    methods: HashMap<String, Handler>,
}

impl Endpoint {
    /// An endpoint in the default namespace at version 1.0.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves requests of this namespace only.
    #[must_use]
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// The API version this endpoint implements.
    #[must_use]
    pub fn version(mut self, version: Version) -> Self {
        self.version = version;
        self
    }

    /// Adds a method. `A` is the type of the keyword arguments (a struct
    /// whose fields are the argument names); arguments that do not fit it
    /// are answered with a `TypeError` without calling `f`.
    #[must_use]
    pub fn method<A, R, F, Fut>(mut self, name: &str, f: F) -> Self
    where
        A: DeserializeOwned + Send + 'static,
        R: Serialize + Send + Sync + 'static,
        F: Fn(RequestContext, A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RemoteError>> + Send + 'static,
    {
        let method = name.to_string();
        let handler: Handler = Arc::new(move |ctx, payload| match payload.decode_args::<A>() {
            Ok(args) => {
                let fut = f(ctx, args);
                Box::pin(async move {
                    fut.await
                        .map(|r| Box::new(r) as Box<dyn erased_serde::Serialize + Send + Sync>)
                })
            }
            Err(e) => {
                let error =
                    RemoteError::type_error(format!("{method}() got invalid arguments: {e}"));
                // The method never runs, so nothing else would say so: a
                // peer of another version, or a bug, its operator must see.
                // Cut short: the error quotes the peer's value, which
                // can be megabytes.
                tracing::warn!(
                    %method,
                    error = %crate::fractal::truncate(&error.message, 300),
                    "refused a request whose arguments do not fit its method"
                );
                Box::pin(async move { Err(error) })
            }
        });
        self.methods.insert(name.to_string(), handler);
        self
    }
}

/// Finds the method for a request.
pub(crate) struct Dispatcher {
    endpoints: Vec<Endpoint>,
    ping: bool,
}

impl Dispatcher {
    pub(crate) fn new(endpoints: Vec<Endpoint>, ping: bool) -> Self {
        Self { endpoints, ping }
    }

    /// Starts the method the request names, or explains why it cannot run.
    pub(crate) fn dispatch(&self, request: &IncomingRequest) -> BoxFuture<'static, MethodResult> {
        match self.find(request) {
            Ok(handler) => handler(request.context.clone(), &request.args),
            Err(error) => Box::pin(async move { Err(error) }),
        }
    }

    fn find(&self, request: &IncomingRequest) -> Result<Handler, RemoteError> {
        let method = request.method.as_str();
        if self.ping && method == PING_METHOD {
            return Ok(Arc::new(|_, _| {
                Box::pin(async {
                    Ok(Box::new("pong") as Box<dyn erased_serde::Serialize + Send + Sync>)
                })
            }));
        }
        let mut compatible = false;
        for endpoint in &self.endpoints {
            if endpoint.namespace != request.namespace
                || !endpoint.version.can_serve(&request.version)
            {
                continue;
            }
            if !method.starts_with('_')
                && let Some(handler) = endpoint.methods.get(method)
            {
                return Ok(handler.clone());
            }
            compatible = true;
        }
        if compatible {
            Err(RemoteError::new(
                "NoSuchMethod",
                DISPATCHER_MODULE,
                format!("Endpoint does not support RPC method {method}"),
            ))
        } else {
            Err(RemoteError::new(
                "UnsupportedVersion",
                DISPATCHER_MODULE,
                format!(
                    "Endpoint does not support RPC version {}. Attempted method: {method}",
                    request.version
                ),
            ))
        }
    }
}
