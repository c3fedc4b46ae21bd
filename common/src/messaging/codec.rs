//! Message body encodings: JSON (oslo's, the default) or MessagePack.

use std::fmt;
use std::str::FromStr;

/// MIME type of JSON bodies, the only one a Python oslo.messaging peer reads.
pub const JSON_CONTENT_TYPE: &str = "application/json";
/// MIME type of MessagePack bodies (kombu's name for it).
pub const MSGPACK_CONTENT_TYPE: &str = "application/x-msgpack";

/// How message bodies are serialized.
///
/// JSON is oslo.messaging's format and works with Python peers. MessagePack
/// is for Rust-to-Rust traffic: smaller, faster, and byte strings travel raw
/// instead of base64. A server always answers in the codec of the request,
/// so servers need no setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Codec {
    /// `application/json` inside the `oslo.version` 2.0 envelope.
    #[default]
    Json,
    /// `application/x-msgpack`, the same envelope as a MessagePack map.
    MsgPack,
}

impl Codec {
    /// The AMQP `content_type` of bodies in this codec.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Json => JSON_CONTENT_TYPE,
            Codec::MsgPack => MSGPACK_CONTENT_TYPE,
        }
    }

    /// The codec of a received message. A missing content type is read as
    /// JSON, as kombu's default; anything else is refused.
    pub fn from_content_type(content_type: Option<&str>) -> Result<Self, String> {
        match content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
            None | Some("") | Some(JSON_CONTENT_TYPE) => Ok(Codec::Json),
            Some(MSGPACK_CONTENT_TYPE) | Some("application/msgpack") => Ok(Codec::MsgPack),
            Some(other) => Err(format!(
                "unsupported content type '{other}' (expected {JSON_CONTENT_TYPE} or {MSGPACK_CONTENT_TYPE})"
            )),
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Json => "json",
            Codec::MsgPack => "msgpack",
        })
    }
}

impl FromStr for Codec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Codec::Json),
            "msgpack" | "messagepack" => Ok(Codec::MsgPack),
            other => Err(format!("unknown codec '{other}': expected json or msgpack")),
        }
    }
}

/// Serde helper for byte strings: base64 text in JSON, raw bytes in
/// MessagePack. Use as `#[serde(with = "faafo_common::messaging::bytes")]`.
pub mod bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserializer, Serializer, de};

    /// Serializes `bytes` as base64 for human-readable formats, raw otherwise.
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&STANDARD.encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    /// Reads what [`serialize`] wrote (and, leniently, raw bytes or an
    /// array of numbers in either format).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("base64 text or a byte string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                STANDARD
                    .decode(v)
                    .map_err(|e| E::custom(format!("invalid base64: {e}")))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1 << 20));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(Visitor)
        } else {
            deserializer.deserialize_byte_buf(Visitor)
        }
    }

    /// The same for `Option<Vec<u8>>` fields.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        /// Serializes `Some(bytes)` like [`super::serialize`], `None` as null.
        pub fn serialize<S: Serializer>(
            bytes: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(b) => super::serialize(b, serializer),
                None => serializer.serialize_none(),
            }
        }

        /// Reads an optional byte string.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapper(#[serde(with = "super")] Vec<u8>);
            Ok(Option::<Wrapper>::deserialize(deserializer)?.map(|w| w.0))
        }
    }
}
