//! Decoding what the scripts and commands answer.

use latchkey_core::{Record, StoreError};
use redis::Value;

use crate::layout::StoredSession;
use crate::transport::backend;

/// A script's reply: an integer status, or a list of values on success.
pub(crate) enum Reply {
    Status(i64),
    List(Vec<Value>),
}

pub(crate) fn reply(value: Option<Value>) -> Result<Reply, StoreError> {
    match value {
        Some(Value::Int(n)) => Ok(Reply::Status(n)),
        Some(Value::Array(values)) => Ok(Reply::List(values)),
        Some(Value::ServerError(err)) => Err(backend(err.into())),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply {other:?}"
        ))),
    }
}

/// A text element of a script's list reply.
pub(crate) fn text(value: &Value) -> Result<String, StoreError> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).map_err(StoreError::corrupt),
        Value::SimpleString(text) => Ok(text.clone()),
        Value::Nil => Ok(String::new()),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply element {other:?}"
        ))),
    }
}

/// An integer element of a script's list reply.
pub(crate) fn number(value: Option<&Value>) -> Result<i64, StoreError> {
    match value {
        Some(Value::Int(n)) => Ok(*n),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply element {other:?}"
        ))),
    }
}

/// The integer a script returned, or the error it raised.
pub(crate) fn integer(value: Option<Value>) -> Result<i64, StoreError> {
    match value {
        Some(Value::Int(n)) => Ok(n),
        Some(Value::ServerError(err)) => Err(backend(err.into())),
        other => Err(StoreError::corrupt(format!(
            "unexpected script reply {other:?}"
        ))),
    }
}

/// The record in a session value; `None` for an absent key.
pub(crate) fn decode(value: Option<Vec<u8>>) -> Result<Option<Record>, StoreError> {
    value
        .map(|bytes| StoredSession::decode(&bytes).map(|stored| stored.record))
        .transpose()
}
