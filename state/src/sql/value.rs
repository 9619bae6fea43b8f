//! Values bound to statements and read from rows, the same for every backend.

use std::sync::Arc;

use super::{Error, Result};
use crate::error::UnreadableCell;

/// A value bound to a statement or read from a row.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn type_name(&self) -> &'static str {
        match self {
            Self::Null => "NULL",
            Self::Int(_) => "an integer",
            Self::Real(_) => "a real",
            Self::Text(_) => "text",
            Self::Blob(_) => "a blob",
        }
    }
}

/// One row of a query's result.
#[derive(Clone, Debug)]
pub(crate) struct Row {
    columns: Arc<[String]>,
    values: Vec<Value>,
}

impl Row {
    pub(crate) fn new(columns: Arc<[String]>, values: Vec<Value>) -> Self {
        Self { columns, values }
    }

    /// The value of column `idx`, converted to `T`.
    pub(crate) fn get<T: FromValue>(&self, idx: usize) -> Result<T> {
        let value = self.value(idx)?;
        T::from_value(value).ok_or_else(|| Error::Conversion {
            column: self.column_name(idx).to_owned(),
            found: value.type_name(),
            expected: T::NAME,
        })
    }

    /// The raw value of column `idx`.
    pub(crate) fn value(&self, idx: usize) -> Result<&Value> {
        self.values.get(idx).ok_or_else(|| Error::Conversion {
            column: format!("#{idx}"),
            found: "no such column",
            expected: "a column",
        })
    }

    /// The name of column `idx` (`?` when there is none).
    pub(crate) fn column_name(&self, idx: usize) -> &str {
        self.columns.get(idx).map_or("?", String::as_str)
    }

    /// A text column (NULL as `None`) whose bytes may not be valid UTF-8 (a backend keeps
    /// such text as a blob): fails with [`Error::Unreadable`] naming `row` and the column.
    pub(crate) fn opt_text(&self, idx: usize, row: &dyn Fn() -> String) -> Result<Option<String>> {
        match self.value(idx)? {
            Value::Null => Ok(None),
            Value::Text(s) => Ok(Some(s.clone())),
            Value::Blob(b) => match std::str::from_utf8(b) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(_) => Err(Error::Unreadable(UnreadableCell(format!(
                    "{}, column {}",
                    row(),
                    self.column_name(idx)
                )))),
            },
            // Numbers are not text, as `get::<String>` would say.
            _ => self.get(idx),
        }
    }

    /// As [`Row::opt_text`], for a column that is never NULL.
    pub(crate) fn text(&self, idx: usize, row: &dyn Fn() -> String) -> Result<String> {
        self.opt_text(idx, row)?.ok_or_else(|| Error::Conversion {
            column: self.column_name(idx).to_owned(),
            found: "NULL",
            expected: "text",
        })
    }
}

/// A Rust value a column can be read as.
pub(crate) trait FromValue: Sized {
    /// What the type is called in an error.
    const NAME: &'static str;
    fn from_value(v: &Value) -> Option<Self>;
}

impl FromValue for i64 {
    const NAME: &'static str = "an integer";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl FromValue for $t {
            const NAME: &'static str = "an integer in range";
            fn from_value(v: &Value) -> Option<Self> {
                match v {
                    Value::Int(i) => <$t>::try_from(*i).ok(),
                    _ => None,
                }
            }
        }
    )*};
}
from_int!(i32, u32, u64, usize);

impl FromValue for bool {
    const NAME: &'static str = "a boolean (integer)";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }
}

impl FromValue for f64 {
    const NAME: &'static str = "a real";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Real(r) => Some(*r),
            #[allow(clippy::cast_precision_loss, reason = "as SQLite converts an integer to a real")]
            Value::Int(i) => Some(*i as f64),
            _ => None,
        }
    }
}

impl FromValue for String {
    const NAME: &'static str = "text";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromValue for Vec<u8> {
    const NAME: &'static str = "a blob";
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Blob(b) => Some(b.clone()),
            Value::Text(s) => Some(s.clone().into_bytes()),
            _ => None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    const NAME: &'static str = T::NAME;
    fn from_value(v: &Value) -> Option<Self> {
        match v {
            Value::Null => Some(None),
            v => T::from_value(v).map(Some),
        }
    }
}

/// A Rust value that can be bound to a statement.
pub(crate) trait ToValue {
    fn to_value(&self) -> Value;
}

impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::Text(self.to_owned())
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::Text(self.clone())
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Value {
        Value::Blob(self.to_vec())
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Value {
        Value::Blob(self.clone())
    }
}

impl ToValue for i64 {
    fn to_value(&self) -> Value {
        Value::Int(*self)
    }
}

macro_rules! to_int {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                Value::Int(i64::from(*self))
            }
        }
    )*};
}
to_int!(i32, u32, bool);

impl ToValue for u64 {
    fn to_value(&self) -> Value {
        // As rusqlite: a value past i64::MAX is out of range; saturate (the store never
        // binds one).
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for usize {
    fn to_value(&self) -> Value {
        Value::Int(i64::try_from(*self).unwrap_or(i64::MAX))
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Real(*self)
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        self.as_ref().map_or(Value::Null, ToValue::to_value)
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}
