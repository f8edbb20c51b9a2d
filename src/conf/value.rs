//! The parsed configuration tree.

use super::error::Pos;

/// An ordered map of keys to items. Keys keep the case written in the file; a key that
/// appears twice in one map keeps only its last value, moved to the later position.
pub type Map = Vec<(String, Item)>;

/// A configuration value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Array(Vec<Item>),
    Map(Map),
}

impl Value {
    /// The name of the value's type as used in error messages ("string", "integer", ...).
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }
}

/// A value and where it was written. For a map entry the position is the entry's key,
/// as nats-server reports it; for an array element it is the element itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub value: Value,
    pub pos: Pos,
    /// True when a `$name` reference elsewhere resolved to this entry: such keys are
    /// variables rather than options, and the options layer does not call them unknown.
    pub referenced: bool,
}

impl Item {
    pub fn new(value: Value, pos: Pos) -> Item {
        Item {
            value,
            pos,
            referenced: false,
        }
    }
}

/// The last item stored under `key` (exact, case-sensitive match).
pub fn get<'a>(map: &'a Map, key: &str) -> Option<&'a Item> {
    map.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, item)| item)
}

/// The last item stored under `key`, comparing keys case-insensitively as nats-server's
/// options layer does.
pub fn get_ignore_case<'a>(map: &'a Map, key: &str) -> Option<&'a Item> {
    map.iter()
        .rev()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, item)| item)
}

/// Stores `item` under `key`, dropping an earlier entry with exactly the same key.
pub fn insert(map: &mut Map, key: String, item: Item) {
    map.retain(|(k, _)| *k != key);
    map.push((key, item));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(v: i64) -> Item {
        Item::new(Value::Int(v), Pos::default())
    }

    #[test]
    fn insert_replaces_and_moves_to_end() {
        let mut map = Map::new();
        insert(&mut map, "a".into(), item(1));
        insert(&mut map, "b".into(), item(2));
        insert(&mut map, "a".into(), item(3));
        let keys: Vec<&str> = map.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(get(&map, "a").unwrap().value, Value::Int(3));
    }

    #[test]
    fn lookup_ignoring_case_finds_last() {
        let mut map = Map::new();
        insert(&mut map, "Port".into(), item(1));
        insert(&mut map, "port".into(), item(2));
        assert_eq!(get_ignore_case(&map, "PORT").unwrap().value, Value::Int(2));
        assert!(get(&map, "PORT").is_none());
    }

    #[test]
    fn type_names() {
        assert_eq!(Value::Str(String::new()).type_name(), "string");
        assert_eq!(Value::Array(vec![]).type_name(), "array");
        assert_eq!(Value::Map(vec![]).type_name(), "map");
    }
}
