//! Session changes kept as operations, so they can be replayed on a fresher copy.
//!
//! The merge rule after a compare-and-set conflict: this request's operations are
//! replayed, in the order they were made, on the session as another request left
//! it. `Insert` overwrites, `Remove` removes, `Take` removes only the value it
//! took (a newer one another request wrote stays), `Update` runs its function
//! again on the fresh value, `Clear` empties the fresh values (including keys
//! the other request wrote), `SetOwner` overwrites the owner (and, when it
//! changes it, drops the last proof of identity), `Consume` removes
//! from a list the items this request read (items another request added stay,
//! and the key goes once the list is empty). Keys this request did not touch
//! keep the other request's values.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use latchkey_core::SessionData;

use crate::error::Error;

type UpdateFn = Arc<dyn Fn(Option<&Value>) -> Result<Value, Error> + Send + Sync>;

/// One change a request made to its session.
#[derive(Clone)]
pub(crate) enum Op {
    Insert(String, Value),
    Remove(String),
    Take(String, Value),
    Update(String, UpdateFn),
    Clear,
    SetOwner(Option<String>),
    Consume(String, Vec<Value>),
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Insert(key, _) => write!(f, "Insert({key:?})"),
            Op::Remove(key) => write!(f, "Remove({key:?})"),
            Op::Take(key, _) => write!(f, "Take({key:?})"),
            Op::Update(key, _) => write!(f, "Update({key:?})"),
            Op::Clear => f.write_str("Clear"),
            Op::SetOwner(_) => f.write_str("SetOwner"),
            Op::Consume(key, items) => write!(f, "Consume({key:?}, {} items)", items.len()),
        }
    }
}

impl Op {
    /// Wraps a typed update function as one on JSON values.
    pub(crate) fn update<T, F>(key: String, f: F) -> Op
    where
        T: Serialize + DeserializeOwned,
        F: Fn(Option<T>) -> T + Send + Sync + 'static,
    {
        let name = key.clone();
        Op::Update(
            key,
            Arc::new(move |current: Option<&Value>| {
                let typed = current
                    .map(|value| T::deserialize(value))
                    .transpose()
                    .map_err(|source| Error::Deserialize {
                        key: name.clone(),
                        source,
                    })?;
                serde_json::to_value(f(typed)).map_err(|source| Error::Serialize {
                    key: name.clone(),
                    source,
                })
            }),
        )
    }

    /// Whether the operation can make the session larger.
    pub(crate) fn can_grow(&self) -> bool {
        matches!(self, Op::Insert(..) | Op::Update(..))
    }

    /// Applies the change, returning the key's previous value for `Remove` and
    /// its new value for `Update`.
    pub(crate) fn apply(
        &self,
        data: &mut SessionData,
        owner: &mut Option<String>,
    ) -> Result<Option<Value>, Error> {
        Ok(match self {
            Op::Insert(key, value) => {
                data.insert(key.clone(), value.clone());
                None
            }
            Op::Remove(key) => data.remove(key),
            Op::Take(key, taken) => {
                if data.get(key) == Some(taken) {
                    data.remove(key)
                } else {
                    None
                }
            }
            Op::Update(key, f) => {
                let next = f(data.get(key))?;
                data.insert(key.clone(), next.clone());
                Some(next)
            }
            Op::Clear => {
                // The device description is the session's, not a value.
                data.retain(|key, _| key == crate::device::DEVICE_KEY);
                None
            }
            Op::SetOwner(new) => {
                // A proof of identity belongs to the user who gave it.
                if owner != new {
                    data.remove(crate::step_up::AUTHENTICATED_AT_KEY);
                }
                owner.clone_from(new);
                None
            }
            Op::Consume(key, items) => {
                if let Some(Value::Array(list)) = data.get_mut(key) {
                    for item in items {
                        if let Some(at) = list.iter().position(|held| held == item) {
                            list.remove(at);
                        }
                    }
                    if list.is_empty() {
                        data.remove(key);
                    }
                }
                None
            }
        })
    }
}

/// Replays `ops` on a fresh copy of the values and owner.
pub(crate) fn replay(
    ops: &[Op],
    mut data: SessionData,
    mut owner: Option<String>,
) -> Result<(SessionData, Option<String>), Error> {
    for op in ops {
        op.apply(&mut data, &mut owner)?;
    }
    Ok((data, owner))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_removes_only_the_items_read() {
        let mut data = SessionData::new();
        data.insert("list".into(), serde_json::json!(["a", "b", "a"]));
        let mut owner = None;
        let read = Op::Consume("list".into(), vec!["a".into(), "b".into()]);
        // Another request appended "c" before the replay.
        if let Some(Value::Array(list)) = data.get_mut("list") {
            list.push("c".into());
        }
        read.apply(&mut data, &mut owner).unwrap();
        assert_eq!(data["list"], serde_json::json!(["a", "c"]));
        Op::Consume("list".into(), vec!["a".into(), "c".into()])
            .apply(&mut data, &mut owner)
            .unwrap();
        assert!(!data.contains_key("list"), "an emptied list goes");
    }
    use serde_json::json;

    fn data(value: Value) -> SessionData {
        match value {
            Value::Object(map) => map,
            _ => SessionData::new(),
        }
    }

    #[test]
    fn replay_keeps_other_keys_and_reruns_updates() {
        let ops = vec![
            Op::Insert("mine".into(), json!("a")),
            Op::update("n".into(), |n: Option<u64>| n.unwrap_or(0) + 1),
        ];
        let fresh = data(json!({"theirs": "b", "n": 10}));
        let (merged, _) = replay(&ops, fresh, None).unwrap();
        assert_eq!(
            Value::Object(merged),
            json!({"theirs": "b", "mine": "a", "n": 11})
        );
    }

    #[test]
    fn replay_applies_remove_clear_and_owner_in_order() {
        let ops = vec![
            Op::Remove("gone".into()),
            Op::SetOwner(Some("ann".into())),
            Op::Clear,
            Op::Insert("after".into(), json!(1)),
        ];
        let (merged, owner) = replay(
            &ops,
            data(json!({"gone": 1, "theirs": 2})),
            Some("bob".into()),
        )
        .unwrap();
        assert_eq!(Value::Object(merged), json!({"after": 1}));
        assert_eq!(owner.as_deref(), Some("ann"));
    }

    #[test]
    fn update_on_a_value_of_the_wrong_type_is_an_error() {
        let op = Op::update("n".into(), |n: Option<u64>| n.unwrap_or(0) + 1);
        let mut values = data(json!({"n": "not a number"}));
        assert!(matches!(
            op.apply(&mut values, &mut None),
            Err(Error::Deserialize { .. })
        ));
        assert_eq!(values["n"], json!("not a number"));
    }
}
