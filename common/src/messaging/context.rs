//! The request context that travels with every message.
//!
//! oslo.messaging flattens the caller's context into the message as
//! `_context_<key>` entries; the server rebuilds it. faafo uses it to carry
//! the request id from the API through the producer into the worker's logs.

use std::collections::BTreeMap;

use serde_json::Value;

/// Key of the request id, as oslo.context names it.
pub const REQUEST_ID: &str = "request_id";

/// A request context: string keys to JSON values, sent as `_context_*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestContext {
    values: BTreeMap<String, Value>,
}

impl RequestContext {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// A context carrying a fresh `req-<uuid>` request id, as oslo.context makes.
    pub fn with_new_request_id() -> Self {
        Self::new().with_request_id(new_request_id())
    }

    /// Sets the request id.
    #[must_use]
    pub fn with_request_id(self, id: impl Into<String>) -> Self {
        self.with(REQUEST_ID, Value::String(id.into()))
    }

    /// Sets any key.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.values.insert(key.into(), value.into());
        self
    }

    /// Inserts or replaces a key.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        self.values.insert(key.into(), value.into());
    }

    /// The request id, when the caller sent one.
    pub fn request_id(&self) -> Option<&str> {
        self.values.get(REQUEST_ID).and_then(Value::as_str)
    }

    /// Any value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.values.get(key)
    }

    /// All entries, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.values.iter()
    }

    /// Whether the context has no entries.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The request id for log lines: the id, or `-` as oslo.log prints.
    pub fn log_id(&self) -> &str {
        self.request_id().unwrap_or("-")
    }
}

impl FromIterator<(String, Value)> for RequestContext {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        Self {
            values: iter.into_iter().collect(),
        }
    }
}

/// A new `req-<uuid4>` request id.
pub fn new_request_id() -> String {
    format!("req-{}", uuid::Uuid::new_v4())
}
