//! oslo.messaging's wire format: the `oslo.version` 2.0 envelope and the
//! request, reply and notification messages inside it.
//!
//! In JSON (the default, and what a Python peer speaks) the body is
//! `{"oslo.version": "2.0", "oslo.message": "<inner message as a JSON string>"}`.
//! In MessagePack (Rust-to-Rust) it is the same envelope as a map whose
//! `oslo.message` is the inner map itself.
//!
//! Decoding never panics and never trusts the peer: every malformed body
//! becomes a [`DecodeFailure`] that says what is wrong and, when the body
//! still names a reply queue, where to send the error.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::{DeserializeOwned, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use super::broker::MAX_NAME_BYTES;
use super::codec::Codec;
use super::context::RequestContext;
use super::error::MessagingError;
use super::version::Version;

const ENVELOPE_VERSION: &str = "2.0";
const CONTEXT_PREFIX: &str = "_context_";

/// A new oslo-style id: a uuid4 as 32 lowercase hex digits.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

// ---------------------------------------------------------------- encoding

#[derive(Serialize)]
struct EnvelopeOut<'a, M: ?Sized> {
    #[serde(rename = "oslo.version")]
    version: &'a str,
    #[serde(rename = "oslo.message")]
    message: &'a M,
}

/// Serializes an inner message and wraps it in the 2.0 envelope.
pub(crate) fn encode<M: Serialize + ?Sized>(
    codec: Codec,
    inner: &M,
) -> Result<Vec<u8>, MessagingError> {
    match codec {
        Codec::Json => {
            let text =
                serde_json::to_string(inner).map_err(|e| MessagingError::Encode(e.to_string()))?;
            serde_json::to_vec(&EnvelopeOut {
                version: ENVELOPE_VERSION,
                message: text.as_str(),
            })
            .map_err(|e| MessagingError::Encode(e.to_string()))
        }
        Codec::MsgPack => rmp_serde::to_vec_named(&EnvelopeOut {
            version: ENVELOPE_VERSION,
            message: inner,
        })
        .map_err(|e| MessagingError::Encode(e.to_string())),
    }
}

/// The fields a call adds to a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallFields<'a> {
    pub msg_id: &'a str,
    pub reply_q: &'a str,
    /// The call-monitor timeout in seconds (`_timeout`), `None` for null.
    pub monitor_timeout: Option<u64>,
}

/// A call or cast request, serialized with `_context_*` keys flattened in.
pub(crate) struct OutgoingRequest<'a, A: ?Sized> {
    pub method: &'a str,
    pub args: &'a A,
    pub namespace: Option<&'a str>,
    pub version: Option<Version>,
    pub call: Option<CallFields<'a>>,
    pub unique_id: &'a str,
    pub context: &'a RequestContext,
}

impl<A: Serialize + ?Sized> Serialize for OutgoingRequest<'_, A> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", self.method)?;
        map.serialize_entry("args", self.args)?;
        if let Some(ns) = self.namespace {
            map.serialize_entry("namespace", ns)?;
        }
        if let Some(v) = self.version {
            map.serialize_entry("version", &v.to_string())?;
        }
        if let Some(call) = &self.call {
            map.serialize_entry("_msg_id", call.msg_id)?;
            map.serialize_entry("_reply_q", call.reply_q)?;
            map.serialize_entry("_timeout", &call.monitor_timeout)?;
        }
        map.serialize_entry("_unique_id", self.unique_id)?;
        serialize_context(&mut map, self.context)?;
        map.end()
    }
}

fn serialize_context<M: SerializeMap>(
    map: &mut M,
    context: &RequestContext,
) -> Result<(), M::Error> {
    let mut key = String::with_capacity(32);
    for (k, v) in context.iter() {
        key.clear();
        key.push_str(CONTEXT_PREFIX);
        key.push_str(k);
        map.serialize_entry(key.as_str(), v)?;
    }
    Ok(())
}

/// A reply (or call-monitor heartbeat) to a call.
pub(crate) struct OutgoingReply<'a> {
    pub result: Option<&'a (dyn erased_serde::Serialize + Send + Sync)>,
    pub failure: Option<&'a str>,
    pub ending: bool,
    pub msg_id: &'a str,
    pub unique_id: &'a str,
}

impl Serialize for OutgoingReply<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(5))?;
        match self.result {
            Some(r) => map.serialize_entry("result", r)?,
            None => map.serialize_entry("result", &())?,
        }
        map.serialize_entry("failure", &self.failure)?;
        map.serialize_entry("ending", &self.ending)?;
        map.serialize_entry("_msg_id", self.msg_id)?;
        map.serialize_entry("_unique_id", self.unique_id)?;
        map.end()
    }
}

/// A messagingv2 notification.
pub(crate) struct OutgoingNotification<'a, P: ?Sized> {
    pub message_id: &'a str,
    pub publisher_id: &'a str,
    pub event_type: &'a str,
    pub priority: &'a str,
    pub payload: &'a P,
    pub timestamp: &'a str,
    pub unique_id: &'a str,
    pub context: &'a RequestContext,
}

impl<P: Serialize + ?Sized> Serialize for OutgoingNotification<'_, P> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("message_id", self.message_id)?;
        map.serialize_entry("publisher_id", self.publisher_id)?;
        map.serialize_entry("event_type", self.event_type)?;
        map.serialize_entry("priority", self.priority)?;
        map.serialize_entry("payload", self.payload)?;
        map.serialize_entry("timestamp", self.timestamp)?;
        map.serialize_entry("_unique_id", self.unique_id)?;
        serialize_context(&mut map, self.context)?;
        map.end()
    }
}

// ---------------------------------------------------------------- decoding

/// Where to send the reply of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplyAddress {
    pub msg_id: String,
    pub reply_q: String,
}

/// Why a request could not be read, and whom to tell.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodeFailure {
    pub reason: String,
    pub reply_to: Option<ReplyAddress>,
}

impl fmt::Display for DecodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A decoded request. The arguments stay encoded until the endpoint's
/// method says which type they must be.
#[derive(Debug)]
pub(crate) struct IncomingRequest {
    pub codec: Codec,
    pub method: String,
    pub args: Payload,
    pub namespace: Option<String>,
    pub version: Version,
    pub reply_to: Option<ReplyAddress>,
    /// `_timeout`: the caller's call-monitor timeout in whole seconds.
    pub monitor_timeout: Option<u64>,
    /// `_unique_id`, for duplicate detection; `None` when longer than
    /// [`MAX_UNIQUE_ID_LEN`].
    pub unique_id: Option<String>,
    pub context: RequestContext,
}

/// The longest `_unique_id` kept for duplicate detection. oslo's are 32
/// hex digits; the ids of the last requests are remembered, so a peer's
/// megabyte-long ones would hold gigabytes: such a request is served
/// without duplicate detection instead.
pub const MAX_UNIQUE_ID_LEN: usize = 128;

/// A decoded reply.
#[derive(Debug)]
pub(crate) struct IncomingReply {
    pub msg_id: String,
    pub result: Payload,
    pub failure: Option<String>,
    pub ending: Option<bool>,
}

/// A value (`args` of a request, `result` of a reply) still in its codec.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    /// The JSON text of the value; `None` when absent or null.
    Json(Option<Box<RawValue>>),
    /// The whole MessagePack body; the value is read out of it on demand.
    MsgPack(Arc<[u8]>),
}

#[derive(Deserialize)]
struct MsgPackEnvelope<T> {
    #[serde(rename = "oslo.version")]
    version: String,
    #[serde(rename = "oslo.message")]
    message: T,
}

#[derive(Deserialize)]
struct ArgsOnly<T> {
    args: Option<T>,
}

#[derive(Deserialize)]
struct ResultOnly<T> {
    result: T,
}

impl Payload {
    /// Reads a request's `args` as `T` (a missing `args` reads as `{}`).
    /// No arguments (`{}`, what oslo sends for a method called without
    /// any) also read as `()`, or as a unit struct, for a method that takes
    /// none. serde_json's "at line 1 column 10" is left out of errors: the
    /// caller never wrote that text.
    pub(crate) fn decode_args<T: DeserializeOwned>(&self) -> Result<T, String> {
        match self {
            Payload::Json(raw) => {
                let text = raw.as_deref().map_or("{}", RawValue::get);
                serde_json::from_str(text).or_else(|e| {
                    let empty = text
                        .trim()
                        .strip_prefix('{')
                        .and_then(|t| t.strip_suffix('}'));
                    match empty {
                        Some(inside) if inside.trim().is_empty() => {
                            serde_json::from_str("null").map_err(|_| json_error(&e))
                        }
                        _ => Err(json_error(&e)),
                    }
                })
            }
            Payload::MsgPack(body) => {
                let env: Result<MsgPackEnvelope<ArgsOnly<T>>, _> = rmp_serde::from_slice(body);
                match env {
                    Ok(env) => match env.message.args {
                        Some(args) => Ok(args),
                        None => rmp_serde::from_slice(&[0x80])
                            .or_else(|e| rmp_serde::from_slice(&[0xc0]).map_err(|_| e))
                            .map_err(|e| e.to_string()),
                    },
                    Err(e) => {
                        let none = rmp_serde::from_slice::<
                            MsgPackEnvelope<
                                ArgsOnly<std::collections::HashMap<String, IgnoredAny>>,
                            >,
                        >(body)
                        .is_ok_and(|env| env.message.args.is_none_or(|args| args.is_empty()));
                        if none {
                            rmp_serde::from_slice(&[0xc0]).map_err(|_| e.to_string())
                        } else {
                            Err(e.to_string())
                        }
                    }
                }
            }
        }
    }

    /// Reads a reply's `result` as `T` (a missing result reads as null).
    pub(crate) fn decode_result<T: DeserializeOwned>(&self) -> Result<T, String> {
        match self {
            Payload::Json(raw) => {
                let text = raw.as_deref().map_or("null", RawValue::get);
                serde_json::from_str(text).map_err(|e| e.to_string())
            }
            Payload::MsgPack(body) => rmp_serde::from_slice::<MsgPackEnvelope<ResultOnly<T>>>(body)
                .map(|env| env.message.result)
                .map_err(|e| e.to_string()),
        }
    }
}

/// A serde_json error without its position ("at line 1 column 10"), which
/// is in text the peer's library wrote, not its caller.
fn json_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) if text[at..].contains(" column ") => text[..at].to_string(),
        _ => text,
    }
}

/// Opens a JSON envelope: the inner message's text. A body that is an object
/// without both envelope keys is an un-enveloped (v1) message, as oslo reads it.
fn open_json_envelope(body: &[u8]) -> Result<Cow<'_, str>, String> {
    #[derive(Deserialize)]
    struct EnvelopeIn<'a> {
        #[serde(rename = "oslo.version", default)]
        version: Option<Value>,
        #[serde(rename = "oslo.message", borrow, default)]
        message: Option<Cow<'a, str>>,
    }
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    if !text.trim_start().starts_with('{') {
        return Err("body is not a JSON object".into());
    }
    let env: EnvelopeIn<'_> =
        serde_json::from_str(text).map_err(|e| format!("body is not valid JSON: {e}"))?;
    match (env.version, env.message) {
        (Some(version), Some(message)) => {
            check_envelope_version(version.as_str().unwrap_or_default())?;
            Ok(message)
        }
        (Some(version), None) if version.is_string() => {
            Err("envelope has oslo.version but no oslo.message".into())
        }
        _ => Ok(Cow::Borrowed(text)),
    }
}

fn check_envelope_version(version: &str) -> Result<(), String> {
    let major = version.split('.').next().unwrap_or_default();
    if major == "2" {
        Ok(())
    } else {
        Err(format!(
            "unsupported envelope version '{version}' (this peer speaks oslo.version 2.x)"
        ))
    }
}

/// The request's fields before validation; `_context_*` keys are collected.
struct RequestFields<P> {
    method: Option<String>,
    args: Option<P>,
    namespace: Option<String>,
    version: Option<String>,
    msg_id: Option<String>,
    reply_q: Option<String>,
    timeout: Option<Value>,
    unique_id: Option<String>,
    context: Vec<(String, Value)>,
}

impl<'de, P: Deserialize<'de>> Deserialize<'de> for RequestFields<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<P>(std::marker::PhantomData<P>);
        impl<'de, P: Deserialize<'de>> Visitor<'de> for FieldsVisitor<P> {
            type Value = RequestFields<P>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an oslo.messaging request (a map)")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
                let mut out = RequestFields {
                    method: None,
                    args: None,
                    namespace: None,
                    version: None,
                    msg_id: None,
                    reply_q: None,
                    timeout: None,
                    unique_id: None,
                    context: Vec::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "method" => out.method = map.next_value()?,
                        "args" => out.args = map.next_value()?,
                        "namespace" => out.namespace = map.next_value()?,
                        "version" => out.version = map.next_value()?,
                        "_msg_id" => out.msg_id = map.next_value()?,
                        "_reply_q" => out.reply_q = map.next_value()?,
                        "_timeout" => out.timeout = map.next_value()?,
                        "_unique_id" => out.unique_id = map.next_value()?,
                        k if k.starts_with(CONTEXT_PREFIX) => {
                            let value: Value = map.next_value()?;
                            out.context
                                .push((k[CONTEXT_PREFIX.len()..].to_string(), value));
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        deserializer.deserialize_map(FieldsVisitor(std::marker::PhantomData))
    }
}

#[derive(Deserialize, Default)]
struct AddressFields {
    #[serde(rename = "_msg_id", default)]
    msg_id: Option<String>,
    #[serde(rename = "_reply_q", default)]
    reply_q: Option<String>,
}

impl AddressFields {
    /// Where to answer: none without both fields, nor to a `_reply_q` no
    /// AMQP queue can be named (more than 255 bytes).
    fn address(self) -> Option<ReplyAddress> {
        match (self.msg_id, self.reply_q) {
            (Some(msg_id), Some(reply_q))
                if !msg_id.is_empty() && !reply_q.is_empty() && reply_q.len() <= MAX_NAME_BYTES =>
            {
                Some(ReplyAddress { msg_id, reply_q })
            }
            _ => None,
        }
    }
}

/// Where to answer a request that is not JSON at all, read off its text:
/// Python's `json.dumps` (oslo's `jsonutils`) writes `NaN` and `Infinity`,
/// which no JSON parser takes, so a call with such a number would go
/// unanswered, its caller waiting out its timeout. The first
/// `"_msg_id": "..."` and `"_reply_q": "..."` found (a key inside a string
/// value could be taken first: the error then goes to no call).
fn scanned_address(text: &str) -> Option<ReplyAddress> {
    AddressFields {
        msg_id: string_after(text, "\"_msg_id\""),
        reply_q: string_after(text, "\"_reply_q\""),
    }
    .address()
}

/// The string value of the first `key` (a quoted JSON key) in `text`
/// that has one, read off the text of a message no parser takes.
fn string_after(text: &str, key: &str) -> Option<String> {
    text.match_indices(key).find_map(|(at, _)| {
        let value = text[at + key.len()..].trim_start().strip_prefix(':')?;
        serde_json::Deserializer::from_str(value.trim_start())
            .into_iter::<String>()
            .next()?
            .ok()
    })
}

/// Where to answer a request that is refused before it is read (larger
/// than `max_message_size`, of a content type no codec reads: then taken
/// as JSON, oslo's): its `_msg_id` and `_reply_q`, when the body has them.
pub(crate) fn reply_address(codec: Codec, body: &[u8]) -> Option<ReplyAddress> {
    match codec {
        Codec::Json => json_address(&open_json_envelope(body).ok()?),
        Codec::MsgPack => msgpack_address(body),
    }
}

/// Where to answer the JSON request `inner` (the envelope opened), read
/// as fields, or off its text when no parser takes it.
fn json_address(inner: &str) -> Option<ReplyAddress> {
    serde_json::from_str::<AddressFields>(inner)
        .ok()
        .and_then(AddressFields::address)
        .or_else(|| scanned_address(inner))
}

/// Where to answer the MessagePack request `body`.
fn msgpack_address(body: &[u8]) -> Option<ReplyAddress> {
    rmp_serde::from_slice::<MsgPackEnvelope<AddressFields>>(body)
        .ok()
        .and_then(|e| e.message.address())
}

/// Decodes a request body of the given codec.
pub(crate) fn decode_request(
    codec: Codec,
    body: Vec<u8>,
) -> Result<IncomingRequest, DecodeFailure> {
    match codec {
        Codec::Json => {
            let inner = open_json_envelope(&body).map_err(|reason| DecodeFailure {
                reason,
                reply_to: None,
            })?;
            let parsed: Result<RequestFields<Box<RawValue>>, _> = serde_json::from_str(&inner);
            match parsed {
                Ok(fields) => validate_request(
                    codec,
                    fields,
                    |raw| Payload::Json(Some(raw)),
                    || Payload::Json(None),
                ),
                Err(e) => Err(DecodeFailure {
                    reason: format!("malformed request: {e}"),
                    reply_to: json_address(&inner),
                }),
            }
        }
        Codec::MsgPack => {
            let body: Arc<[u8]> = body.into();
            let parsed: Result<MsgPackEnvelope<RequestFields<IgnoredAny>>, _> =
                rmp_serde::from_slice(&body);
            match parsed {
                Ok(env) => {
                    check_envelope_version(&env.version).map_err(|reason| DecodeFailure {
                        reason,
                        reply_to: msgpack_address(&body),
                    })?;
                    let payload = Payload::MsgPack(body.clone());
                    validate_request(codec, env.message, |_| payload.clone(), || payload.clone())
                }
                Err(e) => Err(DecodeFailure {
                    reason: format!("malformed MessagePack request: {e}"),
                    reply_to: msgpack_address(&body),
                }),
            }
        }
    }
}

fn validate_request<P>(
    codec: Codec,
    fields: RequestFields<P>,
    present_args: impl FnOnce(P) -> Payload,
    absent_args: impl FnOnce() -> Payload,
) -> Result<IncomingRequest, DecodeFailure> {
    // A call whose reply queue cannot exist: malformed, not a cast (it
    // would be run and its answer lost), and answered nowhere.
    if let Some(reply_q) = fields
        .reply_q
        .as_deref()
        .filter(|q| q.len() > MAX_NAME_BYTES)
    {
        return Err(DecodeFailure {
            reason: format!(
                "'_reply_q' has {} bytes, more than the {MAX_NAME_BYTES} of an AMQP queue name",
                reply_q.len()
            ),
            reply_to: None,
        });
    }
    let reply_to = AddressFields {
        msg_id: fields.msg_id,
        reply_q: fields.reply_q,
    }
    .address();
    let fail = |reason: String| DecodeFailure {
        reason,
        reply_to: reply_to.clone(),
    };
    let method = match fields.method {
        Some(m) if !m.is_empty() => m,
        Some(_) => return Err(fail("request has an empty method name".into())),
        None => return Err(fail("request has no 'method'".into())),
    };
    let version = match fields.version.as_deref() {
        None | Some("") => Version::DEFAULT,
        Some(v) => v
            .parse()
            .map_err(|e: super::version::InvalidVersion| fail(e.to_string()))?,
    };
    let args = match fields.args {
        Some(a) => present_args(a),
        None => absent_args(),
    };
    if let Payload::Json(Some(raw)) = &args
        && !raw.get().trim_start().starts_with('{')
    {
        return Err(fail(format!(
            "'args' of method '{method}' must be a JSON object of keyword arguments"
        )));
    }
    let monitor_timeout = match fields.timeout {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)),
        _ => None,
    }
    .map(|seconds| seconds.min(super::MAX_TIMEOUT.as_secs()));
    Ok(IncomingRequest {
        codec,
        method,
        args,
        namespace: fields.namespace,
        version,
        reply_to,
        monitor_timeout,
        unique_id: fields.unique_id.filter(|id| id.len() <= MAX_UNIQUE_ID_LEN),
        context: fields.context.into_iter().collect(),
    })
}

#[derive(Deserialize)]
struct ReplyFields<P> {
    #[serde(default)]
    result: Option<P>,
    #[serde(default)]
    failure: Option<Value>,
    #[serde(default)]
    ending: Option<bool>,
    #[serde(rename = "_msg_id", default)]
    msg_id: Option<String>,
}

/// Decodes a reply body of the given codec.
pub(crate) fn decode_reply(
    codec: Codec,
    body: Vec<u8>,
) -> Result<IncomingReply, ReplyDecodeFailure> {
    let (msg_id, failure, ending, result) = match codec {
        Codec::Json => {
            let inner = open_json_envelope(&body)?;
            let fields: ReplyFields<Box<RawValue>> =
                serde_json::from_str(&inner).map_err(|e| ReplyDecodeFailure {
                    reason: format!("malformed reply: {e}"),
                    // Python's NaN or Infinity in a result: its call is
                    // told at once, not left to time out.
                    msg_id: string_after(&inner, "\"_msg_id\""),
                })?;
            (
                fields.msg_id,
                fields.failure,
                fields.ending,
                Payload::Json(fields.result),
            )
        }
        Codec::MsgPack => {
            let body: Arc<[u8]> = body.into();
            let env: MsgPackEnvelope<ReplyFields<IgnoredAny>> =
                rmp_serde::from_slice(&body).map_err(|e| format!("malformed reply: {e}"))?;
            check_envelope_version(&env.version)?;
            let f = env.message;
            (f.msg_id, f.failure, f.ending, Payload::MsgPack(body))
        }
    };
    let msg_id = msg_id.ok_or("reply has no _msg_id")?;
    let failure = match failure {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    Ok(IncomingReply {
        msg_id,
        result,
        failure,
        ending,
    })
}

/// Why a reply could not be read, and whose it is when that can be told.
#[derive(Debug)]
pub(crate) struct ReplyDecodeFailure {
    /// What is wrong with it.
    pub reason: String,
    /// The `_msg_id` read off a reply no parser takes, if it has one.
    pub msg_id: Option<String>,
}

impl From<String> for ReplyDecodeFailure {
    fn from(reason: String) -> Self {
        Self {
            reason,
            msg_id: None,
        }
    }
}

impl From<&str> for ReplyDecodeFailure {
    fn from(reason: &str) -> Self {
        reason.to_string().into()
    }
}

/// A notification as a listener receives it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Notification {
    /// Unique id of the notification (a uuid with dashes).
    #[serde(default, deserialize_with = "string_or_null")]
    pub message_id: String,
    /// Who sent it, e.g. `faafo.worker.host1`.
    #[serde(default, deserialize_with = "string_or_null")]
    pub publisher_id: String,
    /// What happened, e.g. `fractal.rendered`.
    #[serde(default, deserialize_with = "string_or_null")]
    pub event_type: String,
    /// Priority as sent, upper case (`INFO`, `ERROR`...).
    #[serde(default, deserialize_with = "string_or_null")]
    pub priority: String,
    /// The event's data.
    #[serde(default)]
    pub payload: Value,
    /// When it was sent, `YYYY-MM-DD HH:MM:SS.ffffff` UTC (as faafo sends
    /// it; Python's leaves `.ffffff` out when the microseconds are 0).
    #[serde(default, deserialize_with = "string_or_null")]
    pub timestamp: String,
    /// The sender's request context.
    #[serde(skip)]
    pub context: RequestContext,
}

/// A string that may be `null` (oslo's `Notifier` without a publisher id
/// sends `"publisher_id": null`): empty then.
fn string_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Decodes a notification body of the given codec.
pub(crate) fn decode_notification(codec: Codec, body: &[u8]) -> Result<Notification, String> {
    #[derive(Deserialize)]
    struct WithRest {
        #[serde(flatten)]
        notification: Notification,
        #[serde(flatten)]
        rest: serde_json::Map<String, Value>,
    }
    let with_rest: WithRest = match codec {
        Codec::Json => {
            let inner = open_json_envelope(body)?;
            serde_json::from_str(&inner).map_err(|e| format!("malformed notification: {e}"))?
        }
        Codec::MsgPack => {
            let env: MsgPackEnvelope<WithRest> =
                rmp_serde::from_slice(body).map_err(|e| format!("malformed notification: {e}"))?;
            check_envelope_version(&env.version)?;
            env.message
        }
    };
    let mut notification = with_rest.notification;
    notification.context = with_rest
        .rest
        .into_iter()
        .filter_map(|(k, v)| k.strip_prefix(CONTEXT_PREFIX).map(|k| (k.to_string(), v)))
        .collect();
    Ok(notification)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> RequestContext {
        RequestContext::new()
            .with_request_id("req-1")
            .with("user", "alice")
    }

    fn call_body(codec: Codec) -> Vec<u8> {
        let args = json!({"value": [1, "x"]});
        let req = OutgoingRequest {
            method: "echo",
            args: &args,
            namespace: Some("ns1"),
            version: Some(Version::new(1, 2)),
            call: Some(CallFields {
                msg_id: "m1",
                reply_q: "reply_q1",
                monitor_timeout: None,
            }),
            unique_id: "u1",
            context: &ctx(),
        };
        encode(codec, &req).expect("encode")
    }

    #[test]
    fn json_call_matches_oslo_layout() {
        let body = call_body(Codec::Json);
        let outer: Value = serde_json::from_slice(&body).expect("outer json");
        assert_eq!(outer["oslo.version"], "2.0");
        let inner: Value =
            serde_json::from_str(outer["oslo.message"].as_str().expect("string")).expect("inner");
        assert_eq!(
            inner,
            json!({"method": "echo", "args": {"value": [1, "x"]}, "namespace": "ns1",
                   "version": "1.2", "_msg_id": "m1", "_reply_q": "reply_q1", "_timeout": null,
                   "_unique_id": "u1", "_context_request_id": "req-1", "_context_user": "alice"})
        );
    }

    #[test]
    fn requests_round_trip_in_both_codecs() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let req = decode_request(codec, call_body(codec)).expect("decode");
            assert_eq!(req.method, "echo");
            assert_eq!(req.namespace.as_deref(), Some("ns1"));
            assert_eq!(req.version, Version::new(1, 2));
            assert_eq!(
                req.reply_to,
                Some(ReplyAddress {
                    msg_id: "m1".into(),
                    reply_q: "reply_q1".into()
                })
            );
            assert_eq!(req.unique_id.as_deref(), Some("u1"));
            assert_eq!(req.context, ctx());
            #[derive(Deserialize, PartialEq, Debug)]
            struct Args {
                value: (u32, String),
            }
            let args: Args = req.args.decode_args().expect("args");
            assert_eq!(args.value, (1, "x".into()));
        }
    }

    #[test]
    fn cast_from_python_without_call_fields() {
        let inner = json!({"method": "ping", "args": {}, "_unique_id": "abc",
                           "_context_request_id": "req-9"});
        let body = json!({"oslo.version": "2.0", "oslo.message": inner.to_string()}).to_string();
        let req = decode_request(Codec::Json, body.into_bytes()).expect("decode");
        assert_eq!(req.method, "ping");
        assert_eq!(req.version, Version::DEFAULT);
        assert!(req.reply_to.is_none());
        assert_eq!(req.context.request_id(), Some("req-9"));
    }

    #[test]
    fn a_call_with_python_s_nan_is_answered_malformed() {
        let inner = r#"{"method": "process", "args": {"xa": NaN, "xb": Infinity}, "_msg_id": "m\u0031", "_reply_q": "reply_q1", "_unique_id": "u"}"#;
        let body = json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
        let failure = decode_request(Codec::Json, body.into_bytes()).expect_err("not JSON");
        assert!(
            failure.reason.contains("malformed request"),
            "{}",
            failure.reason
        );
        let address = failure.reply_to.expect("where to answer");
        assert_eq!(
            (address.msg_id.as_str(), address.reply_q.as_str()),
            ("m1", "reply_q1")
        );
        // Without both, nowhere.
        let inner = r#"{"method": "process", "args": {"xa": NaN}, "_msg_id": "m1"}"#;
        let body = json!({"oslo.version": "2.0", "oslo.message": inner}).to_string();
        let failure = decode_request(Codec::Json, body.into_bytes()).expect_err("not JSON");
        assert!(failure.reply_to.is_none());
    }

    #[test]
    fn unique_ids_too_long_to_remember_are_left_out() {
        for (len, kept) in [
            (32, true),
            (MAX_UNIQUE_ID_LEN, true),
            (MAX_UNIQUE_ID_LEN + 1, false),
        ] {
            let inner = json!({"method": "ping", "args": {}, "_unique_id": "u".repeat(len)});
            let body =
                json!({"oslo.version": "2.0", "oslo.message": inner.to_string()}).to_string();
            let req = decode_request(Codec::Json, body.into_bytes()).expect("decode");
            assert_eq!(req.unique_id.is_some(), kept, "{len}");
        }
    }

    #[test]
    fn unenveloped_v1_messages_are_read() {
        let body = json!({"method": "ping", "args": {"a": 1}}).to_string();
        let req = decode_request(Codec::Json, body.into_bytes()).expect("decode");
        assert_eq!(req.method, "ping");
    }

    #[test]
    fn malformed_requests_are_explained() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"\xff\xfe".to_vec(), "not UTF-8"),
            (b"not json".to_vec(), "not a JSON object"),
            (b"[1,2]".to_vec(), "not a JSON object"),
            (b"{\"method\": ".to_vec(), "not valid JSON"),
            (
                json!({"oslo.version": "3.0", "oslo.message": "{}"})
                    .to_string()
                    .into_bytes(),
                "unsupported envelope version '3.0'",
            ),
            (
                json!({"oslo.version": "2.0", "oslo.message": "[]"})
                    .to_string()
                    .into_bytes(),
                "malformed request",
            ),
            (
                json!({"oslo.version": "2.0", "oslo.message": "{\"args\": {}}"})
                    .to_string()
                    .into_bytes(),
                "no 'method'",
            ),
            (
                json!({"oslo.version": "2.0", "oslo.message": "{\"method\": 5}"})
                    .to_string()
                    .into_bytes(),
                "malformed request",
            ),
            (
                json!({"method": "m", "args": [1]}).to_string().into_bytes(),
                "must be a JSON object",
            ),
            (
                json!({"method": "m", "version": "x.y"})
                    .to_string()
                    .into_bytes(),
                "invalid version",
            ),
        ];
        for (body, expected) in cases {
            let shown = String::from_utf8_lossy(&body).into_owned();
            match decode_request(Codec::Json, body) {
                Ok(r) => panic!("{shown} decoded as {r:?}"),
                Err(e) => assert!(e.reason.contains(expected), "{shown}: {}", e.reason),
            }
        }
        assert!(decode_request(Codec::MsgPack, b"\xc1garbage".to_vec()).is_err());
    }

    #[test]
    fn malformed_calls_still_name_their_reply_queue() {
        let inner = json!({"method": 42, "_msg_id": "m7", "_reply_q": "reply_x"});
        let body = json!({"oslo.version": "2.0", "oslo.message": inner.to_string()}).to_string();
        let err = decode_request(Codec::Json, body.into_bytes()).expect_err("must fail");
        assert_eq!(
            err.reply_to,
            Some(ReplyAddress {
                msg_id: "m7".into(),
                reply_q: "reply_x".into()
            })
        );
        let inner = json!({"method": "m", "args": "nope", "_msg_id": "m8", "_reply_q": "r"});
        let err = decode_request(Codec::Json, inner.to_string().into_bytes()).expect_err("fail");
        assert_eq!(err.reply_to.map(|a| a.msg_id), Some("m8".into()));
    }

    #[test]
    fn a_reply_queue_no_amqp_queue_can_have_is_malformed_and_answered_nowhere() {
        for (method, reply_q) in [("echo", "r".repeat(256)), ("echo", "r".repeat(1000))] {
            for envelope in [false, true] {
                let inner =
                    json!({"method": method, "args": {}, "_msg_id": "m9", "_reply_q": reply_q});
                let body = if envelope {
                    json!({"oslo.version": "2.0", "oslo.message": inner.to_string()}).to_string()
                } else {
                    inner.to_string()
                };
                let err = decode_request(Codec::Json, body.into_bytes()).expect_err("malformed");
                assert!(err.reason.contains("'_reply_q' has"), "{}", err.reason);
                assert_eq!(err.reply_to, None, "nowhere to answer");
            }
        }
        // A malformed call with such a queue is not answered either.
        let inner = json!({"method": 42, "_msg_id": "m7", "_reply_q": "r".repeat(256)});
        let err = decode_request(Codec::Json, inner.to_string().into_bytes()).expect_err("fail");
        assert_eq!(err.reply_to, None);
        // 255 bytes is a name AMQP allows.
        let inner =
            json!({"method": "m", "args": {}, "_msg_id": "m8", "_reply_q": "r".repeat(255)});
        let req = decode_request(Codec::Json, inner.to_string().into_bytes()).expect("valid");
        assert_eq!(req.reply_to.map(|a| a.reply_q.len()), Some(255));
    }

    #[test]
    fn replies_round_trip_and_match_oslo_keys() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let result = json!({"checksum": "abc", "size": 3});
            let body = encode(
                codec,
                &OutgoingReply {
                    result: Some(&result),
                    failure: None,
                    ending: true,
                    msg_id: "m1",
                    unique_id: "u2",
                },
            )
            .expect("encode");
            if codec == Codec::Json {
                let outer: Value = serde_json::from_slice(&body).expect("json");
                let inner: Value =
                    serde_json::from_str(outer["oslo.message"].as_str().expect("str"))
                        .expect("inner");
                assert_eq!(
                    inner,
                    json!({"result": {"checksum": "abc", "size": 3}, "failure": null,
                           "ending": true, "_msg_id": "m1", "_unique_id": "u2"})
                );
            }
            let reply = decode_reply(codec, body).expect("decode");
            assert_eq!(reply.msg_id, "m1");
            assert_eq!(reply.ending, Some(true));
            assert!(reply.failure.is_none());
            let value: Value = reply.result.decode_result().expect("result");
            assert_eq!(value, result);
        }
    }

    #[test]
    fn heartbeats_and_failures_decode() {
        let hb = json!({"result": null, "failure": null, "ending": false, "_msg_id": "m"});
        let reply = decode_reply(Codec::Json, hb.to_string().into_bytes()).expect("hb");
        assert_eq!(reply.ending, Some(false));
        assert!(matches!(reply.result, Payload::Json(None)));
        let f = json!({"result": null, "failure": "{\"class\": \"ValueError\"}", "ending": true, "_msg_id": "m"});
        let reply = decode_reply(Codec::Json, f.to_string().into_bytes()).expect("failure");
        assert_eq!(
            reply.failure.as_deref(),
            Some("{\"class\": \"ValueError\"}")
        );
        assert!(decode_reply(Codec::Json, b"{}".to_vec()).is_err());
    }

    #[test]
    fn bytes_travel_as_base64_in_json_and_raw_in_msgpack() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Image {
            #[serde(with = "crate::messaging::codec::bytes")]
            png: Vec<u8>,
        }
        let image = Image {
            png: vec![0, 1, 2, 255],
        };
        for codec in [Codec::Json, Codec::MsgPack] {
            let body = encode(
                codec,
                &OutgoingReply {
                    result: Some(&image),
                    failure: None,
                    ending: true,
                    msg_id: "m",
                    unique_id: "u",
                },
            )
            .expect("encode");
            if codec == Codec::Json {
                assert!(String::from_utf8_lossy(&body).contains("AAEC/w=="));
            } else {
                assert!(body.windows(4).any(|w| w == [0, 1, 2, 255]));
            }
            let back: Image = decode_reply(codec, body)
                .expect("decode")
                .result
                .decode_result()
                .expect("image");
            assert_eq!(back, image);
        }
    }

    #[test]
    fn notifications_round_trip() {
        for codec in [Codec::Json, Codec::MsgPack] {
            let payload = json!({"uuid": "x"});
            let body = encode(
                codec,
                &OutgoingNotification {
                    message_id: "6c5b2d4e-0000-0000-0000-000000000000",
                    publisher_id: "faafo.worker.h1",
                    event_type: "fractal.rendered",
                    priority: "INFO",
                    payload: &payload,
                    timestamp: "2026-11-22 20:52:48.757735",
                    unique_id: "u",
                    context: &ctx(),
                },
            )
            .expect("encode");
            let n = decode_notification(codec, &body).expect("decode");
            assert_eq!(n.event_type, "fractal.rendered");
            assert_eq!(n.priority, "INFO");
            assert_eq!(n.payload, payload);
            assert_eq!(n.context, ctx());
        }
    }
}
