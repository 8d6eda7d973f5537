//! Objects the pickle VM builds, kept in an arena and referred to by index.
//!
//! Nothing here is ever executed: a call is recorded as an [`Value::Object`] holding the
//! callable and its arguments. Memo reads push the index of an existing object, so a
//! memo-expansion bomb costs one index per reference, never a copy.

/// Index of a value in an [`Arena`].
pub type NodeId = u32;

/// How an [`Value::Object`] was made.
#[derive(Debug, Clone, PartialEq)]
pub enum Construct {
    /// `REDUCE`, `INST` or `OBJ`: `callable(*args)`.
    Call {
        /// The callable.
        callable: NodeId,
        /// The argument tuple.
        args: NodeId,
    },
    /// `NEWOBJ` / `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`.
    New {
        /// The class.
        cls: NodeId,
        /// The argument tuple.
        args: NodeId,
        /// Keyword arguments (`NEWOBJ_EX` only).
        kwargs: Option<NodeId>,
    },
}

/// Bytes of a `bytes`, `bytearray` or undecodable string value.
#[derive(Debug, Clone, PartialEq)]
pub enum ByteData {
    /// A range of the pickle input.
    Slice {
        /// Start offset in the input.
        start: usize,
        /// End offset (exclusive).
        end: usize,
    },
    /// Bytes decoded from an escaped text form.
    Owned(Box<[u8]>),
}

/// One value on the VM's stack or in its memo.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An integer that fits 64 bits.
    Int(i64),
    /// An integer too large for 64 bits (only its byte length is kept).
    BigInt(usize),
    /// A float.
    Float(f64),
    /// A text string.
    Str(Box<str>),
    /// A byte string.
    Bytes(ByteData),
    /// A tuple.
    Tuple(Box<[NodeId]>),
    /// A list.
    List(Vec<NodeId>),
    /// A dict, as key/value pairs in insertion order.
    Dict(Vec<(NodeId, NodeId)>),
    /// A set or frozenset.
    Set(Vec<NodeId>),
    /// An imported global (never actually imported).
    Global {
        /// The module as written.
        module: Box<str>,
        /// The member as written.
        name: Box<str>,
    },
    /// The result of a call or `__new__`, with what later opcodes did to it.
    Object {
        /// How it was made.
        construct: Construct,
        /// `SETITEM(S)` applied to it (e.g. the items of an `OrderedDict`).
        items: Vec<(NodeId, NodeId)>,
        /// `APPEND(S)` / `ADDITEMS` applied to it.
        appended: Vec<NodeId>,
        /// `BUILD` state, if any.
        state: Option<NodeId>,
    },
    /// The result of `persistent_load(pid)`.
    PersistentId(NodeId),
    /// A global named by an extension-registry code.
    Extension(u32),
    /// An out-of-band buffer (`NEXT_BUFFER`).
    Buffer,
}

/// All values built while running one pickle.
#[derive(Debug, Default, Clone)]
pub struct Arena {
    values: Vec<Value>,
    /// For each value, how many values it would have if every reference were copied out.
    weights: Vec<u64>,
}

impl Arena {
    /// Number of values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no value was built.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value at `id`, if it exists.
    pub fn get(&self, id: NodeId) -> Option<&Value> {
        self.values.get(id as usize)
    }

    pub(crate) fn get_mut(&mut self, id: NodeId) -> Option<&mut Value> {
        self.values.get_mut(id as usize)
    }

    /// Expanded size of the value at `id` (1 for a leaf).
    pub fn weight(&self, id: NodeId) -> u64 {
        self.weights.get(id as usize).copied().unwrap_or(0)
    }

    pub(crate) fn push(&mut self, value: Value) -> NodeId {
        let weight = 1u64.saturating_add(self.children_weight(&value));
        let id = self.values.len() as NodeId;
        self.values.push(value);
        self.weights.push(weight);
        id
    }

    /// Adds `extra` to the weight of `id`, returning the new weight.
    pub(crate) fn add_weight(&mut self, id: NodeId, extra: u64) -> u64 {
        match self.weights.get_mut(id as usize) {
            Some(w) => {
                *w = w.saturating_add(extra);
                *w
            }
            None => 0,
        }
    }

    fn children_weight(&self, value: &Value) -> u64 {
        let sum = |ids: &[NodeId]| {
            ids.iter()
                .fold(0u64, |a, i| a.saturating_add(self.weight(*i)))
        };
        match value {
            Value::Tuple(ids) => sum(ids),
            Value::Set(ids) | Value::List(ids) => sum(ids),
            Value::Dict(pairs) => pairs.iter().fold(0u64, |a, (k, v)| {
                a.saturating_add(self.weight(*k))
                    .saturating_add(self.weight(*v))
            }),
            Value::Object { construct, .. } => match construct {
                Construct::Call { callable, args } => {
                    self.weight(*callable).saturating_add(self.weight(*args))
                }
                Construct::New { cls, args, kwargs } => self
                    .weight(*cls)
                    .saturating_add(self.weight(*args))
                    .saturating_add(kwargs.map(|k| self.weight(k)).unwrap_or(0)),
            },
            Value::PersistentId(id) => self.weight(*id),
            _ => 0,
        }
    }

    /// The text of a `Str` value.
    pub fn str(&self, id: NodeId) -> Option<&str> {
        match self.get(id)? {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer of an `Int` or `Bool` value.
    pub fn int(&self, id: NodeId) -> Option<i64> {
        match self.get(id)? {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// The elements of a `Tuple` or `List` value.
    pub fn seq(&self, id: NodeId) -> Option<&[NodeId]> {
        match self.get(id)? {
            Value::Tuple(ids) => Some(ids),
            Value::List(ids) => Some(ids),
            _ => None,
        }
    }

    /// `(module, name)` of a `Global` value.
    pub fn global(&self, id: NodeId) -> Option<(&str, &str)> {
        match self.get(id)? {
            Value::Global { module, name } => Some((module, name)),
            _ => None,
        }
    }
}
