//! Whether a call's or cast's arguments are keyword arguments.
//!
//! oslo.messaging sends a method's arguments as a map of keyword arguments
//! (`**kwargs` in Python), and every server, ours included, refuses
//! anything else as a malformed message. Sending a tuple or a number would
//! only come back as the server's `MalformedMessage`, after a round trip,
//! so the client checks first. Nothing (`()`, `None`) is sent as no
//! keyword arguments, `{}`, as Python's `client.call(ctxt, "method")`
//! sends it. The check looks at the outermost shape alone: [`ShapeProbe`]
//! stops at the first thing the value serializes, so a large argument
//! costs nothing.

use serde::Serialize;
use serde::ser::{self, Impossible};

/// What a value serializes to, at its outermost level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A map or a struct: keyword arguments.
    Map,
    /// `()`, `None` or a unit struct: no arguments.
    Nothing,
    /// Anything else, named for messages ("a sequence", "a number"...).
    Other(&'static str),
}

/// Whether `value` serializes to a map or a struct, and if not, what.
pub(crate) fn shape_of<T: Serialize + ?Sized>(value: &T) -> Shape {
    match value.serialize(ShapeProbe) {
        Err(Found(shape)) => shape,
        Ok(never) => match never {},
    }
}

/// The probe's answer, carried as its "error" so that serialization stops
/// at once.
#[derive(Debug)]
struct Found(Shape);

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl std::error::Error for Found {}

impl ser::Error for Found {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Found(Shape::Other("a value that cannot be serialized"))
    }
}

/// Never produced: the probe always answers through [`Found`].
enum Never {}

/// A serializer that answers what it is given first.
struct ShapeProbe;

fn other(what: &'static str) -> Result<Never, Found> {
    Err(Found(Shape::Other(what)))
}

impl ser::Serializer for ShapeProbe {
    type Ok = Never;
    type Error = Found;
    type SerializeSeq = Impossible<Never, Found>;
    type SerializeTuple = Impossible<Never, Found>;
    type SerializeTupleStruct = Impossible<Never, Found>;
    type SerializeTupleVariant = Impossible<Never, Found>;
    type SerializeMap = Impossible<Never, Found>;
    type SerializeStruct = Impossible<Never, Found>;
    type SerializeStructVariant = Impossible<Never, Found>;

    fn serialize_bool(self, _: bool) -> Result<Never, Found> {
        other("a boolean")
    }
    fn serialize_i8(self, _: i8) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_i16(self, _: i16) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_i32(self, _: i32) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_i64(self, _: i64) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_u8(self, _: u8) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_u16(self, _: u16) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_u32(self, _: u32) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_u64(self, _: u64) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_f32(self, _: f32) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_f64(self, _: f64) -> Result<Never, Found> {
        other("a number")
    }
    fn serialize_char(self, _: char) -> Result<Never, Found> {
        other("a string")
    }
    fn serialize_str(self, _: &str) -> Result<Never, Found> {
        other("a string")
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Never, Found> {
        other("bytes")
    }
    fn serialize_none(self) -> Result<Never, Found> {
        Err(Found(Shape::Nothing))
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Never, Found> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Never, Found> {
        Err(Found(Shape::Nothing))
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Never, Found> {
        Err(Found(Shape::Nothing))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<Never, Found> {
        other("a string (an enum's variant)")
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Never, Found> {
        value.serialize(self)
    }
    // Externally tagged, `{"Variant": value}`: a map of one key.
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Never, Found> {
        Err(Found(Shape::Map))
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Found> {
        Err(Found(Shape::Other("a sequence")))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Found> {
        Err(Found(Shape::Other("a sequence (a tuple)")))
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Found> {
        Err(Found(Shape::Other("a sequence (a tuple struct)")))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Found> {
        Err(Found(Shape::Map))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Found> {
        Err(Found(Shape::Map))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Found> {
        Err(Found(Shape::Map))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Found> {
        Err(Found(Shape::Map))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Serialize;
    use serde_json::json;

    use super::{Shape, shape_of};

    #[derive(Serialize)]
    struct Args {
        width: u32,
    }

    #[derive(Serialize)]
    struct Empty {}

    #[derive(Serialize)]
    struct Wrapper(Args);

    #[derive(Serialize)]
    struct Flattened {
        #[serde(flatten)]
        inner: BTreeMap<String, u32>,
    }

    #[test]
    fn maps_and_structs_are_keyword_arguments() {
        assert_eq!(shape_of(&Args { width: 2 }), Shape::Map);
        assert_eq!(shape_of(&Empty {}), Shape::Map);
        assert_eq!(shape_of(&Wrapper(Args { width: 2 })), Shape::Map);
        assert_eq!(
            shape_of(&Flattened {
                inner: BTreeMap::new()
            }),
            Shape::Map
        );
        assert_eq!(shape_of(&json!({"a": 1})), Shape::Map);
        assert_eq!(shape_of(&json!({})), Shape::Map);
        assert_eq!(shape_of(&BTreeMap::<String, u8>::new()), Shape::Map);
        assert_eq!(shape_of(&Some(Args { width: 2 })), Shape::Map);
    }

    #[test]
    fn everything_else_is_named() {
        assert_eq!(shape_of(&(1, 2)), Shape::Other("a sequence (a tuple)"));
        assert_eq!(shape_of(&5), Shape::Other("a number"));
        assert_eq!(shape_of(&json!(5)), Shape::Other("a number"));
        assert_eq!(shape_of(&vec![1]), Shape::Other("a sequence"));
        assert_eq!(shape_of(&json!([1])), Shape::Other("a sequence"));
        assert_eq!(shape_of("x"), Shape::Other("a string"));
    }

    #[test]
    fn nothing_is_no_arguments() {
        assert_eq!(shape_of(&()), Shape::Nothing);
        assert_eq!(shape_of(&json!(null)), Shape::Nothing);
        assert_eq!(shape_of(&None::<Args>), Shape::Nothing);
    }
}
