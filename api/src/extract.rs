//! Extractors whose rejections are [`ApiError`]s, so malformed input gets
//! the same JSON errors as everything else.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header::{CONTENT_TYPE, IF_MATCH};
use axum::http::request::Parts;
use faafo_common::api_client::IF_CREATED_AT_HEADER;
use faafo_common::fractal::FractalStatus;
use headers::Header;
use serde::de::DeserializeOwned;

use crate::domain::{FractalId, FractalRecord, Timestamp};
use crate::error::ApiError;

/// The largest JSON body read, whatever `max_body_size` (which is for
/// images): a fractal or an update is a few kilobytes (an error text is cut
/// at 10,000 characters), and a body of 64 MiB would be held, then copied
/// by serde, before it is refused.
pub const MAX_JSON_BODY: usize = 1 << 20;

/// A JSON body: `Content-Type: application/json` (else 415), within
/// [`MAX_JSON_BODY`] and the body limit (else 413), syntactically JSON
/// (else 400) and of the expected shape (else 422: unknown fields, wrong
/// types, missing fields).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not text)").to_string());
        if !content_type.as_deref().is_some_and(is_json) {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected Content-Type: application/json, got {}",
                content_type.map_or("none".to_string(), |c| crate::domain::fractal_id::shorten(
                    &c
                ))
            )));
        }
        let req = req
            .map(|body| axum::body::Body::new(http_body_util::Limited::new(body, MAX_JSON_BODY)));
        let bytes = body_bytes(req, state).await?;
        let malformed = |e: serde_json::Error| ApiError::BadRequest(format!("malformed JSON: {e}"));
        // serde would take an array for a struct (fields by position): only
        // an object is a body.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).map_err(malformed)?;
            return Err(ApiError::Unprocessable(
                "invalid body: expected a JSON object".into(),
            ));
        }
        let value = serde_json::from_slice(&bytes).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                ApiError::Unprocessable(format!("invalid body: {e}"))
            }
            _ => malformed(e),
        })?;
        Ok(JsonBody(value))
    }
}

/// Whether a Content-Type is JSON (`application/json`, `application/x+json`,
/// with or without parameters).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The whole body, 413 past the limit, 408 when it stops arriving.
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state)
        .await
        .map_err(|rejection| match rejection {
            BytesRejection::FailedToBufferBody(e) if is_length_limit(&e) => {
                ApiError::PayloadTooLarge(
                    "the request body is larger than the API accepts (max_body_size; 1 MiB for JSON)"
                        .into(),
                )
            }
            BytesRejection::FailedToBufferBody(e) if is_timeout(&e) => {
                ApiError::RequestTimeout(format!(
                    "the request body stopped arriving for {} s",
                    crate::startup::BODY_READ_TIMEOUT.as_secs()
                ))
            }
            other => ApiError::BadRequest(format!(
                "cannot read the request body: {}",
                other.body_text()
            )),
        })
}

fn is_length_limit(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    matches!(
        e,
        axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)
    )
}

/// Whether the body was given up on by the connection's
/// [`BODY_READ_TIMEOUT`](crate::startup::BODY_READ_TIMEOUT).
fn is_timeout(e: &axum::extract::rejection::FailedToBufferBody) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = source {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = error.source();
    }
    false
}

/// The `{uuid}` of a path, parsed (400 when it is not a UUID).
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub FractalId);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        FractalId::parse(&text)
            .map(PathId)
            .map_err(|e| ApiError::BadRequest(e.0))
    }
}

/// A query string of the expected shape: the collection's filters
/// ([`crate::domain::list::ListParams`]), or the update sent with an
/// image ([`faafo_common::fractal::FractalUpdate`]). Unknown or repeated keys and bad values: 400.
#[derive(Debug, Clone)]
pub struct QueryString<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryString<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| QueryString(value))
            .map_err(|e| {
                // In the API's words, not axum's ("Failed to deserialize
                // query string: ...").
                let text = e.body_text();
                let reason = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text);
                ApiError::BadRequest(format!("bad query string: {reason}"))
            })
    }
}

/// A request's `If-Match` precondition (RFC 9110): a `PUT` that applies
/// only while the fractal is at a revision the header names (the `ETag`
/// `"<revision>"` of `GET /v1/fractal/<uuid>`, or its `revision` field).
/// It lets a client that must not act on a stale state say so: a request
/// that hung on one API host while the client went on through another
/// cannot undo, when it finally runs, what came after it. `*` matches any
/// revision; a weak tag (`W/"..."`) never matches, nor does an empty list.
/// Without the header every revision is admitted. A malformed header is a
/// 400.
#[derive(Debug, Clone, Default)]
pub struct IfMatch(Option<Precondition>);

/// The header as received: its tags (`None`: an empty list, which
/// matches nothing), and its text for messages.
#[derive(Debug, Clone)]
struct Precondition {
    tags: Option<headers::IfMatch>,
    text: String,
}

impl IfMatch {
    /// Whether `record` is at a revision the header names.
    fn admits(&self, record: &FractalRecord) -> bool {
        self.0.as_ref().is_none_or(|p| {
            p.tags
                .as_ref()
                .is_some_and(|tags| tags.precondition_passes(&revision_tag(record)))
        })
    }

    /// Whether a request may go on with `record` (a 412 if not): when the
    /// header admits its revision, or when the request `changes_nothing`
    /// on a `done` fractal (a result delivered again), which succeeds as it
    /// does without the header. The precondition comes first (RFC 9110
    /// section 13.2.2), and any other change already made is refused: it
    /// may be another client's alike (two producers taking a task over at
    /// once), which this one must not take for its own.
    pub fn check(&self, record: &FractalRecord, changes_nothing: bool) -> Result<(), ApiError> {
        if self.admits(record) || (changes_nothing && record.status == FractalStatus::Done) {
            Ok(())
        } else {
            Err(self.refusal(record))
        }
    }

    /// The 412 for `record`, which the header does not admit.
    fn refusal(&self, record: &FractalRecord) -> ApiError {
        let named = self.0.as_ref().map_or("", |p| p.text.as_str());
        ApiError::PreconditionFailed(format!(
            "fractal {} changed since the revision If-Match names ({}): it is at revision {} ({}); read it again",
            record.uuid,
            crate::domain::fractal_id::shorten(named),
            record.revision,
            record.status
        ))
    }
}

/// The `Faafo-If-Created-At` precondition of a change: it applies only to
/// the fractal created at that time (its `created_at`, as the API gave it),
/// else 412. A uuid deleted and created again is another fractal, whose
/// revisions a client cannot know beforehand: a producer storing a render
/// of the deleted one names its creation time, so that the render is never
/// taken for the new fractal's (an unconditional result, which `If-Match`
/// cannot guard, is welcome whatever else changed meanwhile). Without the
/// header every fractal is admitted. A malformed time is a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct IfCreatedAt(Option<Timestamp>);

impl IfCreatedAt {
    /// Whether a change may go on with `record` (a 412 if not).
    pub fn check(&self, record: &FractalRecord) -> Result<(), ApiError> {
        match self.0 {
            Some(named) if named != record.created_at => {
                Err(ApiError::PreconditionFailed(format!(
                    "fractal {} was created at {}, not at {named} as {IF_CREATED_AT_HEADER} names: \
                     the fractal that header means was deleted, and the uuid created again",
                    record.uuid, record.created_at
                )))
            }
            _ => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IfCreatedAt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let mut values = parts.headers.get_all(IF_CREATED_AT_HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(IfCreatedAt(None));
        };
        let malformed = |why: String| {
            ApiError::BadRequest(format!(
                "{IF_CREATED_AT_HEADER} must be one RFC 3339 time, a fractal's created_at: {why}"
            ))
        };
        if values.next().is_some() {
            return Err(malformed("it is given more than once".into()));
        }
        let text = value
            .to_str()
            .map_err(|_| malformed("it is not text".into()))?;
        Timestamp::parse_rfc3339(text.trim())
            .map(|time| IfCreatedAt(Some(time)))
            .map_err(|e| malformed(e.0))
    }
}

/// Whether `tag` is an entity tag: `"..."` or `W/"..."`, of visible
/// characters other than `"` (RFC 9110 section 8.8.3: `etagc`). Checked
/// before the headers crate parses it, which only asserts that, in debug
/// builds (a panic), and takes a space or a tab in release builds.
fn is_entity_tag(tag: &str) -> bool {
    let quoted = tag.strip_prefix("W/").unwrap_or(tag);
    quoted
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
        .is_some_and(|inside| {
            inside
                .chars()
                .all(|c| c == '!' || ('#'..='~').contains(&c) || c >= '\u{80}')
        })
}

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let values = parts.headers.get_all(IF_MATCH);
        if values.iter().next().is_none() {
            return Ok(IfMatch(None));
        }
        let text = values
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        let malformed = || {
            ApiError::BadRequest(format!(
                "If-Match must be * or a list of entity tags such as \"7\", got {}",
                crate::domain::fractal_id::shorten(&text)
            ))
        };
        // headers' matching skips what it cannot parse; a malformed header
        // is refused here instead. An entity tag is a quoted string (which
        // may hold commas), possibly W/-prefixed (RFC 9110 section 8.8.3),
        // and empty list elements are ignored (section 5.6.1.2).
        let elements = list_elements(&text);
        if elements == ["*"] {
            return Ok(IfMatch(Some(Precondition {
                tags: Some(headers::IfMatch::any()),
                text,
            })));
        }
        let well_formed = elements
            .iter()
            .all(|tag| is_entity_tag(tag) && tag.parse::<headers::ETag>().is_ok());
        if !well_formed {
            return Err(malformed());
        }
        let tags = if elements.is_empty() {
            None
        } else {
            Some(headers::IfMatch::decode(&mut values.iter()).map_err(|_| malformed())?)
        };
        Ok(IfMatch(Some(Precondition { tags, text })))
    }
}

/// The non-empty elements of a comma-separated header list, trimmed; a
/// comma inside a quoted string does not separate.
fn list_elements(text: &str) -> Vec<&str> {
    let mut elements = Vec::new();
    let (mut start, mut quoted) = (0, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                elements.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    elements.push(&text[start..]);
    elements
        .into_iter()
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect()
}

/// The entity tag of a fractal's record, as sent in `ETag`: its
/// revision, quoted.
pub fn revision_etag(record: &FractalRecord) -> String {
    format!("\"{}\"", record.revision)
}

fn revision_tag(record: &FractalRecord) -> headers::ETag {
    revision_etag(record)
        .parse()
        .unwrap_or_else(|_| unreachable!("a quoted integer is an entity tag"))
}

#[cfg(test)]
mod tests {
    use super::{is_json, list_elements};

    #[test]
    fn header_lists_split_outside_quotes() {
        assert_eq!(
            list_elements(r#" "a,b" ,, W/"c",	"d" "#),
            [r#""a,b""#, r#"W/"c""#, r#""d""#]
        );
        assert!(list_elements(" , ").is_empty());
        assert_eq!(list_elements("*"), ["*"]);
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonp"));
    }
}
