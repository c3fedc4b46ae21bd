//! Remote exceptions, serialized as oslo.messaging serializes them.
//!
//! When an endpoint fails, the reply carries a `failure`: a JSON string of
//! `{"class", "module", "message", "tb", "args", "kwargs"}`. A Python client
//! rebuilds `builtins` exceptions (ValueError, TypeError...) and raises
//! `RemoteError` for the rest; a Rust client gets a [`RemoteError`] value.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Module of the dispatcher's own exceptions, as a Python peer expects them.
pub const DISPATCHER_MODULE: &str = "oslo_messaging.rpc.dispatcher";
/// Python's module for built-in exceptions, which Python clients rebuild.
pub const BUILTINS_MODULE: &str = "builtins";

const REMOTE_POSTFIX: &str = "_Remote";

/// An exception raised by a remote endpoint (or to be sent to a caller).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteError {
    /// Exception class name, e.g. `ValueError`.
    #[serde(rename = "class", default = "default_class")]
    pub class: String,
    /// Module of the class, e.g. `builtins`.
    #[serde(default)]
    pub module: String,
    /// The exception's message.
    #[serde(default)]
    pub message: String,
    /// Traceback lines, as Python's `traceback.format_exception` gives.
    #[serde(rename = "tb", default)]
    pub traceback: Vec<String>,
    /// Positional arguments of the exception.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments of the exception.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
}

fn default_class() -> String {
    "Exception".into()
}

impl RemoteError {
    /// An error of any class and module; `args` is `[message]`, so a Python
    /// client that rebuilds the class gets the message back.
    pub fn new(
        class: impl Into<String>,
        module: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        Self {
            class: class.into(),
            module: module.into(),
            args: vec![Value::String(message.clone())],
            message,
            traceback: Vec::new(),
            kwargs: Map::new(),
        }
    }

    /// `builtins.ValueError`: the caller sent a value the endpoint refuses.
    pub fn value_error(message: impl Into<String>) -> Self {
        Self::new("ValueError", BUILTINS_MODULE, message)
    }

    /// `builtins.TypeError`: the arguments do not fit the method.
    pub fn type_error(message: impl Into<String>) -> Self {
        Self::new("TypeError", BUILTINS_MODULE, message)
    }

    /// `builtins.RuntimeError`: the endpoint failed for its own reasons.
    pub fn runtime_error(message: impl Into<String>) -> Self {
        Self::new("RuntimeError", BUILTINS_MODULE, message)
    }

    /// `builtins.TimeoutError`: the endpoint gave up on its work.
    pub fn timeout_error(message: impl Into<String>) -> Self {
        Self::new("TimeoutError", BUILTINS_MODULE, message)
    }

    /// Adds a traceback line (Rust endpoints usually have none).
    #[must_use]
    pub fn with_traceback_line(mut self, line: impl Into<String>) -> Self {
        self.traceback.push(line.into());
        self
    }

    /// The JSON string that goes into a reply's `failure` key.
    pub fn to_failure_json(&self) -> String {
        let mut copy = self.clone();
        if copy.class.ends_with(REMOTE_POSTFIX) && copy.module.ends_with(REMOTE_POSTFIX) {
            copy.class.truncate(copy.class.len() - REMOTE_POSTFIX.len());
            copy.module
                .truncate(copy.module.len() - REMOTE_POSTFIX.len());
        }
        // A struct of strings, vectors and JSON values always serializes.
        serde_json::to_string(&copy).unwrap_or_else(|_| {
            format!(
                r#"{{"class":"Exception","module":"builtins","message":{:?},"tb":[],"args":[],"kwargs":{{}}}}"#,
                copy.message
            )
        })
    }

    /// Parses a reply's `failure` string; a peer's malformed failure still
    /// becomes an error the caller can read.
    pub fn from_failure_json(failure: &str) -> Self {
        match serde_json::from_str::<RemoteError>(failure) {
            Ok(e) => e,
            Err(_) => Self::new(
                "MalformedFailure",
                "faafo",
                format!("the server sent an unreadable failure: {failure}"),
            ),
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.module.is_empty() {
            write!(f, "{}: {}", self.class, self.message)
        } else {
            write!(f, "{}.{}: {}", self.module, self.class, self.message)
        }
    }
}

impl std::error::Error for RemoteError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_oslo_format() {
        let e = RemoteError::value_error("bad width");
        let json = e.to_failure_json();
        let v: Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["class"], "ValueError");
        assert_eq!(v["module"], "builtins");
        assert_eq!(v["message"], "bad width");
        assert_eq!(v["tb"], Value::Array(vec![]));
        assert_eq!(v["args"], serde_json::json!(["bad width"]));
        assert_eq!(v["kwargs"], serde_json::json!({}));
        assert_eq!(RemoteError::from_failure_json(&json), e);
    }

    #[test]
    fn strips_the_remote_postfix_like_oslo() {
        let e = RemoteError::new("NotFound_Remote", "nova.exception_Remote", "gone");
        let v: Value = serde_json::from_str(&e.to_failure_json()).expect("json");
        assert_eq!(v["class"], "NotFound");
        assert_eq!(v["module"], "nova.exception");
    }

    #[test]
    fn reads_a_python_failure() {
        let py = r#"{"class": "ValueError", "module": "builtins", "message": "boom", "tb": ["Traceback (most recent call last):\n", "ValueError: boom\n"], "args": ["boom"], "kwargs": {}}"#;
        let e = RemoteError::from_failure_json(py);
        assert_eq!(e.class, "ValueError");
        assert_eq!(e.traceback.len(), 2);
        assert_eq!(e.to_string(), "builtins.ValueError: boom");
    }

    #[test]
    fn malformed_failures_still_explain_themselves() {
        let e = RemoteError::from_failure_json("not json");
        assert_eq!(e.class, "MalformedFailure");
        assert!(e.message.contains("not json"));
    }
}
