//! The file and the environment as one serde input, typed by the fields they fill.
//!
//! Values from the TOML file keep the types TOML gave them. Values from `STUDIO_*` variables are
//! text until a field asks for a type: `STUDIO_DATA_DIR=2024` is a path, a password of digits
//! stays text (leading zeros included), `STUDIO_WEBHOOKS__TIMEOUT_MS=250` is a number because
//! the field is one. Nothing is guessed from what the text looks like.
//!
//! A deployment's environment holds variables that are not ours although they share the prefix
//! (Kubernetes injects `STUDIO_SERVICE_HOST`, `STUDIO_PORT_8080_TCP`, ... for a Service named
//! `studio`). A variable whose path names no field is set aside and reported by name, never by
//! value: values may be secrets. Unknown keys in the file stay errors (a typo there is ours to
//! fix).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::StringDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// One node of the merged configuration tree.
pub(super) enum Node {
    /// A value from the file, typed by TOML.
    File(toml::Value),
    /// The text of the variable `var`.
    Env { var: String, text: String },
    /// A section: entries from the file, the environment, or both.
    Table(BTreeMap<String, Node>),
}

impl Node {
    /// The file's document, with its sections as tables the environment can merge into.
    pub(super) fn from_file(table: toml::Table) -> Node {
        Node::Table(
            table
                .into_iter()
                .map(|(key, value)| {
                    let node = match value {
                        toml::Value::Table(table) => Node::from_file(table),
                        other => Node::File(other),
                    };
                    (key, node)
                })
                .collect(),
        )
    }

    /// Sets the value at `path` to the text of `var`, replacing what the file said there.
    pub(super) fn set(&mut self, path: &[String], var: &str, text: &str) {
        let Node::Table(entries) = self else {
            return;
        };
        match path {
            [] => {}
            [last] => {
                entries.insert(
                    last.clone(),
                    Node::Env {
                        var: var.to_string(),
                        text: text.to_string(),
                    },
                );
            }
            [first, rest @ ..] => {
                let entry = entries
                    .entry(first.clone())
                    .or_insert_with(|| Node::Table(BTreeMap::new()));
                if !matches!(entry, Node::Table(_)) {
                    *entry = Node::Table(BTreeMap::new());
                }
                entry.set(rest, var, text);
            }
        }
    }

    /// Removes every value that came from a variable, appending the variables' names to
    /// `names`; what the file said stays. `None` when nothing is left.
    fn without_env(self, names: &mut Vec<String>) -> Option<Node> {
        match self {
            Node::Env { var, .. } => {
                names.push(var);
                None
            }
            Node::File(value) => Some(Node::File(value)),
            Node::Table(entries) => {
                let mut kept = BTreeMap::new();
                let mut had_entries = false;
                for (key, node) in entries {
                    had_entries = true;
                    if let Some(node) = node.without_env(names) {
                        kept.insert(key, node);
                    }
                }
                // An empty table from the file is still the file's (and still unknown).
                (!had_entries || !kept.is_empty()).then_some(Node::Table(kept))
            }
        }
    }
}

/// An error while reading the configuration. Messages about a variable's value never repeat the
/// value.
#[derive(Debug)]
pub(super) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// A node being deserialized, with where to report variables that name no setting.
pub(super) struct Layer<'a> {
    pub(super) node: Node,
    pub(super) ignored: &'a RefCell<Vec<String>>,
}

fn from_toml(err: toml::de::Error) -> Error {
    Error(err.message().to_string())
}

/// Forwards to TOML's own deserializer for a value from the file.
macro_rules! forward_file {
    ($value:expr, $method:ident, $visitor:expr $(, $arg:expr)*) => {
        $value.$method($($arg,)* $visitor).map_err(from_toml)
    };
}

/// Parses a variable's text as a number of type `$ty` for `visit_$ty`.
macro_rules! number {
    ($($method:ident => $ty:ty, $visit:ident, $what:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                match self.node {
                    Node::Env { text, .. } => match text.trim().parse::<$ty>() {
                        Ok(n) => visitor.$visit(n),
                        Err(_) => Err(Error(concat!("expected ", $what).into())),
                    },
                    Node::File(value) => forward_file!(value, $method, visitor),
                    Node::Table(_) => Err(Error(concat!("expected ", $what, ", found a section").into())),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Layer<'_> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env { text, .. } => visitor.visit_string(text),
            Node::File(value) => forward_file!(value, deserialize_any, visitor),
            Node::Table(_) => self.deserialize_map(visitor),
        }
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env { text, .. } => match text.trim().to_ascii_lowercase().as_str() {
                "true" | "1" => visitor.visit_bool(true),
                "false" | "0" => visitor.visit_bool(false),
                _ => Err(Error("expected true or false".into())),
            },
            Node::File(value) => forward_file!(value, deserialize_bool, visitor),
            Node::Table(_) => Err(Error("expected true or false, found a section".into())),
        }
    }

    number! {
        deserialize_i8 => i8, visit_i8, "an integer";
        deserialize_i16 => i16, visit_i16, "an integer";
        deserialize_i32 => i32, visit_i32, "an integer";
        deserialize_i64 => i64, visit_i64, "an integer";
        deserialize_u8 => u8, visit_u8, "a non-negative integer";
        deserialize_u16 => u16, visit_u16, "a non-negative integer";
        deserialize_u32 => u32, visit_u32, "a non-negative integer";
        deserialize_u64 => u64, visit_u64, "a non-negative integer";
        deserialize_f32 => f32, visit_f32, "a number";
        deserialize_f64 => f64, visit_f64, "a number";
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env { text, .. } => visitor.visit_string(text),
            Node::File(value) => forward_file!(value, deserialize_string, visitor),
            Node::Table(_) => Err(Error("expected a value, found a section".into())),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    /// An empty variable means "not set", so a deployment can blank out an optional setting.
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env { ref text, .. } if text.is_empty() => visitor.visit_none(),
            Node::File(value) => forward_file!(value, deserialize_option, visitor),
            node => visitor.visit_some(Layer {
                node,
                ignored: self.ignored,
            }),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::File(value) => forward_file!(value, deserialize_unit, visitor),
            _ => Err(Error("expected no value".into())),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// A list in a variable is comma-separated: `STUDIO_NETWORK__ORCHESTRATORS=a:1,b:2`.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Env { var, text } => {
                let items: Vec<Node> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Node::Env {
                        var: var.clone(),
                        text: item.to_string(),
                    })
                    .collect();
                visitor.visit_seq(Items {
                    items: items.into_iter(),
                    ignored: self.ignored,
                })
            }
            Node::File(value) => forward_file!(value, deserialize_seq, visitor),
            Node::Table(_) => Err(Error("expected a list, found a section".into())),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.node {
            Node::Table(entries) => visitor.visit_map(Entries {
                entries: entries.into_iter(),
                value: None,
                ignored: self.ignored,
            }),
            Node::File(value) => forward_file!(value, deserialize_map, visitor),
            Node::Env { .. } => Err(Error(
                "expected a section: set its keys one by one (STUDIO_SECTION__KEY)".into(),
            )),
        }
    }

    /// The fields of a section are known here: entries that name none of them and came from
    /// variables are set aside; what the file says is passed on (and refused if unknown).
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let entries = match self.node {
            Node::Table(entries) => entries,
            Node::File(value) => {
                return forward_file!(value, deserialize_struct, visitor, name, fields);
            }
            Node::Env { .. } => {
                return Err(Error(
                    "expected a section: set its keys one by one (STUDIO_SECTION__KEY)".into(),
                ));
            }
        };
        let mut known = BTreeMap::new();
        for (key, node) in entries {
            if fields.contains(&key.as_str()) {
                known.insert(key, node);
            } else if let Some(from_file) = node.without_env(&mut self.ignored.borrow_mut()) {
                known.insert(key, from_file);
            }
        }
        visitor.visit_map(Entries {
            entries: known.into_iter(),
            value: None,
            ignored: self.ignored,
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.node {
            Node::Env { text, .. } => {
                let text: StringDeserializer<Error> = text.into_deserializer();
                visitor.visit_enum(text)
            }
            Node::File(value) => {
                forward_file!(value, deserialize_enum, visitor, name, variants)
            }
            Node::Table(_) => Err(Error("expected a value, found a section".into())),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_string(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// The items of a comma-separated variable.
struct Items<'a> {
    items: std::vec::IntoIter<Node>,
    ignored: &'a RefCell<Vec<String>>,
}

impl<'de> SeqAccess<'de> for Items<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.items.next() {
            Some(node) => seed
                .deserialize(Layer {
                    node,
                    ignored: self.ignored,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}

/// The entries of a section.
struct Entries<'a> {
    entries: std::collections::btree_map::IntoIter<String, Node>,
    value: Option<Node>,
    ignored: &'a RefCell<Vec<String>>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, node)) => {
                self.value = Some(node);
                let key: StringDeserializer<Error> = key.into_deserializer();
                seed.deserialize(key).map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let node = self
            .value
            .take()
            .ok_or_else(|| Error("a value was asked for before its key".into()))?;
        seed.deserialize(Layer {
            node,
            ignored: self.ignored,
        })
    }
}
