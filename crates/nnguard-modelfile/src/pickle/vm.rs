//! A pickle virtual machine that follows the opcode stream without executing anything.
//!
//! It keeps Python's stack, mark stack and memo, builds [`Value`]s in an [`Arena`] and
//! records every import and call; imports are checked against an [`Allowlist`] as they are
//! read. No module is imported, no callable is called, no persistent id is resolved.

use super::allowlist::{Allowlist, is_dangerous, is_loads};
use super::op;
use super::value::{Arena, ByteData, Construct, NodeId, Value};
use crate::limits::Limits;
use crate::rules::{self, Rule, Severity};
use std::collections::HashMap;

/// Something the VM flags, at a byte offset of its input.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    /// The rule.
    pub rule: &'static Rule,
    /// Severity of this occurrence.
    pub severity: Severity,
    /// What was found.
    pub message: String,
    /// Offset of the opcode in the input.
    pub offset: u64,
}

/// A pickle passed to a `loads`-like callable; it is scanned as a pickle of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct NestedPickle {
    /// Offset of the call in the outer pickle.
    pub call_offset: u64,
    /// `module.name` of the callable.
    pub callable: String,
    /// The inner pickle's bytes.
    pub bytes: ByteData,
}

/// What running one pickle produced.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Everything flagged, in stream order.
    pub issues: Vec<Issue>,
    /// Offset just past `STOP`, or where the VM stopped.
    pub end: usize,
    /// True when `STOP` was reached.
    pub reached_stop: bool,
    /// True when the VM stopped on an error (parse error, unknown opcode, limit).
    pub failed: bool,
    /// The value `STOP` returned.
    pub root: Option<NodeId>,
    /// Every value built.
    pub arena: Arena,
    /// Pickles found inside this one.
    pub nested: Vec<NestedPickle>,
    /// Number of imports seen (allowed or not).
    pub imports: usize,
    /// Opcodes executed.
    pub ops: u64,
    /// The highest `PROTO` seen.
    pub protocol: Option<u8>,
    /// True when the VM stopped because the data ended (truncated, or a prefix).
    pub truncated: bool,
}

/// An error that ends the run; it becomes an [`Issue`].
struct Stop {
    rule: &'static Rule,
    message: String,
}

fn parse_err(message: impl Into<String>) -> Stop {
    Stop {
        rule: &rules::pickle::PICKLE_PARSE_ERROR,
        message: message.into(),
    }
}

type Step<T> = Result<T, Stop>;

/// Runs the pickle that starts at `start` of `data`.
pub fn run(data: &[u8], start: usize, limits: &Limits, allow: &Allowlist) -> Outcome {
    let mut vm = Vm {
        data,
        pos: start,
        limits,
        allow,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        frame_end: None,
        items: 0,
        bomb_reported: false,
        frame_reported: false,
        out: Outcome::default(),
    };
    vm.run();
    vm.out.end = vm.pos.min(data.len());
    vm.out
}

struct Vm<'a, 'l> {
    data: &'a [u8],
    pos: usize,
    limits: &'l Limits,
    allow: &'l Allowlist,
    stack: Vec<NodeId>,
    marks: Vec<usize>,
    memo: HashMap<u64, NodeId>,
    frame_end: Option<usize>,
    items: usize,
    bomb_reported: bool,
    frame_reported: bool,
    out: Outcome,
}

enum Flow {
    Continue,
    Stop,
}

impl Vm<'_, '_> {
    fn run(&mut self) {
        loop {
            let at = self.pos;
            if at >= self.data.len() {
                self.issue_at(
                    &rules::pickle::PICKLE_PARSE_ERROR,
                    None,
                    at,
                    "the pickle ends without STOP (truncated)".into(),
                );
                self.out.truncated = true;
                self.out.failed = true;
                return;
            }
            self.out.ops += 1;
            if self.out.ops > self.limits.pickle_ops {
                self.issue_at(
                    &rules::file::SCAN_LIMIT_EXCEEDED,
                    None,
                    at,
                    format!(
                        "more than {} pickle opcodes; the rest was not inspected",
                        self.limits.pickle_ops
                    ),
                );
                self.out.failed = true;
                return;
            }
            let opcode = self.data[at];
            self.pos = at + 1;
            let result = self.step(opcode, at);
            self.check_frame(at);
            match result {
                Ok(Flow::Continue) => {}
                Ok(Flow::Stop) => {
                    self.out.reached_stop = true;
                    return;
                }
                Err(stop) => {
                    let msg = format!(
                        "{} (opcode {} at offset {at})",
                        stop.message,
                        op::name(opcode)
                    );
                    self.issue_at(stop.rule, None, at, msg);
                    self.out.failed = true;
                    return;
                }
            }
        }
    }

    fn issue_at(
        &mut self,
        rule: &'static Rule,
        severity: Option<Severity>,
        at: usize,
        message: String,
    ) {
        self.out.issues.push(Issue {
            rule,
            severity: severity.unwrap_or(rule.severity),
            message,
            offset: at as u64,
        });
    }

    /// Flags opcodes that straddle the end of the current frame.
    fn check_frame(&mut self, at: usize) {
        if let Some(end) = self.frame_end {
            if self.pos == end {
                self.frame_end = None;
            } else if self.pos > end && at < end {
                self.frame_end = None;
                if !self.frame_reported {
                    self.frame_reported = true;
                    self.issue_at(
                        &rules::pickle::PICKLE_FRAME_LENGTH_MISMATCH,
                        None,
                        at,
                        format!(
                            "an opcode at offset {at} runs past the end of its FRAME (offset {end})"
                        ),
                    );
                }
            }
        }
    }

    // ---- reading arguments -------------------------------------------------------------

    fn take(&mut self, n: usize) -> Step<&[u8]> {
        let Some(end) = self.pos.checked_add(n).filter(|e| *e <= self.data.len()) else {
            self.out.truncated = true;
            return Err(parse_err(format!(
                "argument of {n} bytes runs past the end of the data"
            )));
        };
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn take_range(&mut self, n: u64) -> Step<(usize, usize)> {
        let n = usize::try_from(n).map_err(|_| parse_err("length does not fit in memory"))?;
        let start = self.pos;
        self.take(n)?;
        Ok((start, self.pos))
    }

    fn u8(&mut self) -> Step<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Step<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Step<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Step<i32> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Step<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A text line, without its `\n`.
    fn line(&mut self) -> Step<&[u8]> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().position(|b| *b == b'\n') else {
            self.out.truncated = true;
            return Err(parse_err("text argument has no end of line"));
        };
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n + 1;
        Ok(s)
    }

    fn line_str(&mut self) -> Step<String> {
        let l = self.line()?;
        std::str::from_utf8(l)
            .map(str::to_owned)
            .map_err(|_| parse_err("text argument is not UTF-8"))
    }

    // ---- stack, marks, memo --------------------------------------------------------------

    fn new_value(&mut self, value: Value) -> Step<NodeId> {
        if self.out.arena.len() >= self.limits.pickle_nodes {
            return Err(Stop {
                rule: &rules::file::SCAN_LIMIT_EXCEEDED,
                message: format!("more than {} pickle objects", self.limits.pickle_nodes),
            });
        }
        let id = self.out.arena.push(value);
        self.check_weight(self.out.arena.weight(id));
        Ok(id)
    }

    fn check_weight(&mut self, weight: u64) {
        if weight > self.limits.expanded_nodes && !self.bomb_reported {
            self.bomb_reported = true;
            let at = self.pos.saturating_sub(1);
            self.issue_at(
                &rules::pickle::PICKLE_EXPANSION_BOMB,
                None,
                at,
                format!(
                    "memo references make an object of more than {} values; it is not expanded",
                    self.limits.expanded_nodes
                ),
            );
        }
    }

    fn count_items(&mut self, n: usize) -> Step<()> {
        self.items = self.items.saturating_add(n);
        if self.items > self.limits.pickle_items {
            return Err(Stop {
                rule: &rules::file::SCAN_LIMIT_EXCEEDED,
                message: format!("more than {} container items", self.limits.pickle_items),
            });
        }
        Ok(())
    }

    fn push_value(&mut self, value: Value) -> Step<()> {
        let id = self.new_value(value)?;
        self.stack.push(id);
        Ok(())
    }

    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Step<NodeId> {
        if self.stack.len() <= self.floor() {
            return Err(parse_err("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| parse_err("stack underflow"))
    }

    fn top(&self) -> Step<NodeId> {
        if self.stack.len() <= self.floor() {
            return Err(parse_err("stack underflow"));
        }
        self.stack
            .last()
            .copied()
            .ok_or_else(|| parse_err("stack underflow"))
    }

    fn pop_mark(&mut self) -> Step<Vec<NodeId>> {
        let mark = self
            .marks
            .pop()
            .ok_or_else(|| parse_err("no MARK on the stack"))?;
        if mark > self.stack.len() {
            return Err(parse_err("MARK above the stack"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn memo_put(&mut self, key: u64, at: usize) -> Step<()> {
        let top = self.top()?;
        if self.memo.len() >= self.limits.memo_entries && !self.memo.contains_key(&key) {
            return Err(Stop {
                rule: &rules::file::SCAN_LIMIT_EXCEEDED,
                message: format!("more than {} memo entries", self.limits.memo_entries),
            });
        }
        if let Some(old) = self.memo.insert(key, top)
            && old != top
        {
            self.issue_at(
                &rules::pickle::PICKLE_MEMO_INCONSISTENT,
                None,
                at,
                format!("memo key {key} is written a second time with a different object"),
            );
        }
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Step<()> {
        match self.memo.get(&key) {
            Some(id) => {
                self.stack.push(*id);
                Ok(())
            }
            None => Err(Stop {
                rule: &rules::pickle::PICKLE_MEMO_INCONSISTENT,
                message: format!("memo key {key} is read but was never written"),
            }),
        }
    }

    // ---- imports and calls -----------------------------------------------------------------

    fn import(&mut self, module: &str, name: &str, at: usize, opcode: u8) -> Step<NodeId> {
        self.out.imports += 1;
        if !self.allow.allows(module, name) {
            let severity = if is_dangerous(module, name) {
                Severity::Critical
            } else {
                Severity::High
            };
            let shown_module = module.escape_debug();
            let shown_name = name.escape_debug();
            self.issue_at(
                &rules::pickle::PICKLE_GLOBAL_NOT_ALLOWED,
                Some(severity),
                at,
                format!(
                    "imports `{shown_module}.{shown_name}` with {} at offset {at}; it is not on the allowlist",
                    op::name(opcode)
                ),
            );
        }
        self.new_value(Value::Global {
            module: module.into(),
            name: name.into(),
        })
    }

    /// Checks what a call opcode calls and records nested pickles.
    fn call(&mut self, callable: NodeId, args: NodeId, at: usize, opcode: u8) -> Step<NodeId> {
        match self.out.arena.get(callable) {
            Some(Value::Global { module, name }) => {
                if is_loads(module, name) {
                    let what = format!("{module}.{name}");
                    let first = self.out.arena.seq(args).and_then(|a| a.first().copied());
                    if let Some(bytes) = first.and_then(|f| self.bytes_of(f)) {
                        self.out.nested.push(NestedPickle {
                            call_offset: at as u64,
                            callable: what,
                            bytes,
                        });
                    }
                }
            }
            Some(Value::Extension(_)) => {}
            other => {
                let kind = match other {
                    Some(Value::Object { .. }) => "the result of another call",
                    Some(Value::Str(_)) | Some(Value::Bytes(_)) => "a string",
                    Some(Value::PersistentId(_)) => "a persistent object",
                    _ => "a value that is not an imported global",
                };
                self.issue_at(
                    &rules::pickle::PICKLE_CALL_TARGET_NOT_GLOBAL,
                    None,
                    at,
                    format!("{} at offset {at} calls {kind}", op::name(opcode)),
                );
            }
        }
        self.new_value(Value::Object {
            construct: Construct::Call { callable, args },
            items: Vec::new(),
            appended: Vec::new(),
            state: None,
        })
    }

    /// The bytes a value stands for: a bytes literal, or `_codecs.encode(text, 'latin1')`,
    /// which protocol 2 writes for bytes.
    fn bytes_of(&self, id: NodeId) -> Option<ByteData> {
        let a = &self.out.arena;
        match a.get(id)? {
            Value::Bytes(b) => Some(b.clone()),
            Value::Object {
                construct: Construct::Call { callable, args },
                ..
            } if a.global(*callable) == Some(("_codecs", "encode")) => {
                let text = a.str(*a.seq(*args)?.first()?)?;
                let bytes: Option<Vec<u8>> = text
                    .chars()
                    .map(|c| u8::try_from(u32::from(c)).ok())
                    .collect();
                bytes.map(|b| ByteData::Owned(b.into_boxed_slice()))
            }
            _ => None,
        }
    }

    fn tuple(&mut self, ids: Vec<NodeId>) -> Step<NodeId> {
        self.count_items(ids.len())?;
        self.new_value(Value::Tuple(ids.into_boxed_slice()))
    }

    fn text_value(&mut self, bytes: Vec<u8>) -> Step<()> {
        match String::from_utf8(bytes) {
            Ok(s) => self.push_value(Value::Str(s.into_boxed_str())),
            Err(e) => self.push_value(Value::Bytes(ByteData::Owned(
                e.into_bytes().into_boxed_slice(),
            ))),
        }
    }

    fn slice_str(&mut self, start: usize, end: usize) -> Step<()> {
        let s = String::from_utf8_lossy(&self.data[start..end]).into_owned();
        self.push_value(Value::Str(s.into_boxed_str()))
    }

    fn append_to(&mut self, target: NodeId, values: Vec<NodeId>) -> Step<()> {
        self.count_items(values.len())?;
        let extra = values
            .iter()
            .fold(0u64, |a, v| a.saturating_add(self.out.arena.weight(*v)));
        match self.out.arena.get_mut(target) {
            Some(Value::List(l)) | Some(Value::Set(l)) => l.extend(values),
            Some(Value::Object { appended, .. }) => appended.extend(values),
            _ => return Err(parse_err("APPEND to a value that is not a list")),
        }
        let w = self.out.arena.add_weight(target, extra);
        self.check_weight(w);
        Ok(())
    }

    fn set_items(&mut self, target: NodeId, flat: Vec<NodeId>) -> Step<()> {
        if !flat.len().is_multiple_of(2) {
            return Err(parse_err("odd number of items for a dict"));
        }
        self.count_items(flat.len())?;
        let extra = flat
            .iter()
            .fold(0u64, |a, v| a.saturating_add(self.out.arena.weight(*v)));
        let pairs = flat.chunks_exact(2).map(|c| (c[0], c[1]));
        match self.out.arena.get_mut(target) {
            Some(Value::Dict(d)) => d.extend(pairs),
            Some(Value::Object { items, .. }) => items.extend(pairs),
            _ => return Err(parse_err("SETITEM on a value that is not a dict")),
        }
        let w = self.out.arena.add_weight(target, extra);
        self.check_weight(w);
        Ok(())
    }

    fn int_from_text(&mut self, text: &[u8], is_long: bool) -> Step<()> {
        let t = std::str::from_utf8(text).map_err(|_| parse_err("integer is not ASCII"))?;
        let t = t.trim();
        let t = if is_long {
            t.strip_suffix('L').unwrap_or(t)
        } else {
            t
        };
        if !is_long && (t == "00" || t == "01") {
            return self.push_value(Value::Bool(t == "01"));
        }
        match t.parse::<i64>() {
            Ok(i) => self.push_value(Value::Int(i)),
            Err(_) => {
                let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                    self.push_value(Value::BigInt(digits.len()))
                } else {
                    Err(parse_err(format!("invalid integer {:?}", t)))
                }
            }
        }
    }

    fn long_bytes(&mut self, n: usize) -> Step<()> {
        let b = self.take(n)?;
        if n <= 8 {
            let mut v: i64 = 0;
            for (i, byte) in b.iter().enumerate() {
                v |= i64::from(*byte) << (8 * i);
            }
            if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                v -= 1i64 << (8 * n);
            }
            self.push_value(Value::Int(v))
        } else {
            self.push_value(Value::BigInt(n))
        }
    }

    // ---- the opcodes -----------------------------------------------------------------------

    fn step(&mut self, opcode: u8, at: usize) -> Step<Flow> {
        match opcode {
            op::PROTO => {
                let p = self.u8()?;
                if p > op::HIGHEST_PROTOCOL {
                    return Err(Stop {
                        rule: &rules::pickle::PICKLE_UNKNOWN_OPCODE,
                        message: format!("unsupported pickle protocol {p}"),
                    });
                }
                self.out.protocol = Some(self.out.protocol.map_or(p, |q| q.max(p)));
            }
            op::FRAME => {
                let len = self.u64()?;
                if self.frame_end.is_some() && !self.frame_reported {
                    self.frame_reported = true;
                    self.issue_at(
                        &rules::pickle::PICKLE_FRAME_LENGTH_MISMATCH,
                        None,
                        at,
                        format!("a FRAME starts at offset {at} before the previous frame ends"),
                    );
                }
                let end = usize::try_from(len)
                    .ok()
                    .and_then(|l| self.pos.checked_add(l));
                match end {
                    Some(end) if end <= self.data.len() => {
                        self.frame_end = Some(end).filter(|e| *e > self.pos)
                    }
                    _ => {
                        self.frame_end = None;
                        if !self.frame_reported {
                            self.frame_reported = true;
                            self.issue_at(
                                &rules::pickle::PICKLE_FRAME_LENGTH_MISMATCH,
                                None,
                                at,
                                format!(
                                    "FRAME at offset {at} declares {len} bytes but only {} remain",
                                    self.data.len().saturating_sub(self.pos)
                                ),
                            );
                        }
                    }
                }
                return Ok(Flow::Continue);
            }
            op::STOP => {
                let root = self.pop()?;
                self.out.root = Some(root);
                return Ok(Flow::Stop);
            }
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                if self.stack.len() == self.floor() && !self.marks.is_empty() {
                    self.marks.pop();
                } else {
                    self.pop()?;
                }
            }
            op::POP_MARK => {
                self.pop_mark()?;
            }
            op::DUP => {
                let t = self.top()?;
                self.stack.push(t);
            }
            op::NONE => self.push_value(Value::None)?,
            op::NEWTRUE => self.push_value(Value::Bool(true))?,
            op::NEWFALSE => self.push_value(Value::Bool(false))?,
            op::INT => {
                let l = self.line()?.to_vec();
                self.int_from_text(&l, false)?;
            }
            op::LONG => {
                let l = self.line()?.to_vec();
                self.int_from_text(&l, true)?;
            }
            op::BININT => {
                let v = self.i32()?;
                self.push_value(Value::Int(i64::from(v)))?;
            }
            op::BININT1 => {
                let v = self.u8()?;
                self.push_value(Value::Int(i64::from(v)))?;
            }
            op::BININT2 => {
                let v = self.u16()?;
                self.push_value(Value::Int(i64::from(v)))?;
            }
            op::LONG1 => {
                let n = usize::from(self.u8()?);
                self.long_bytes(n)?;
            }
            op::LONG4 => {
                let n = self.i32()?;
                let n = usize::try_from(n).map_err(|_| parse_err("negative LONG4 length"))?;
                self.long_bytes(n)?;
            }
            op::FLOAT => {
                let l = self.line()?;
                let t = std::str::from_utf8(l).map_err(|_| parse_err("float is not ASCII"))?;
                let v = t
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| parse_err("invalid float"))?;
                self.push_value(Value::Float(v))?;
            }
            op::BINFLOAT => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                self.push_value(Value::Float(f64::from_be_bytes(a)))?;
            }
            op::STRING => {
                let l = self.line()?.to_vec();
                let bytes = unquote_py_string(&l)
                    .ok_or_else(|| parse_err("STRING argument is not a quoted string"))?;
                self.text_value(bytes)?;
            }
            op::BINSTRING => {
                let n = self.i32()?;
                let n = u64::try_from(n).map_err(|_| parse_err("negative BINSTRING length"))?;
                let (s, e) = self.take_range(n)?;
                self.text_value(self.data[s..e].to_vec())?;
            }
            op::SHORT_BINSTRING => {
                let n = u64::from(self.u8()?);
                let (s, e) = self.take_range(n)?;
                self.text_value(self.data[s..e].to_vec())?;
            }
            op::UNICODE => {
                let l = self.line()?.to_vec();
                let s = decode_raw_unicode_escape(&l);
                self.push_value(Value::Str(s.into_boxed_str()))?;
            }
            op::BINUNICODE => {
                let n = u64::from(self.u32()?);
                let (s, e) = self.take_range(n)?;
                self.slice_str(s, e)?;
            }
            op::SHORT_BINUNICODE => {
                let n = u64::from(self.u8()?);
                let (s, e) = self.take_range(n)?;
                self.slice_str(s, e)?;
            }
            op::BINUNICODE8 => {
                let n = self.u64()?;
                let (s, e) = self.take_range(n)?;
                self.slice_str(s, e)?;
            }
            op::BINBYTES => {
                let n = u64::from(self.u32()?);
                let (start, end) = self.take_range(n)?;
                self.push_value(Value::Bytes(ByteData::Slice { start, end }))?;
            }
            op::SHORT_BINBYTES => {
                let n = u64::from(self.u8()?);
                let (start, end) = self.take_range(n)?;
                self.push_value(Value::Bytes(ByteData::Slice { start, end }))?;
            }
            op::BINBYTES8 | op::BYTEARRAY8 => {
                let n = self.u64()?;
                let (start, end) = self.take_range(n)?;
                self.push_value(Value::Bytes(ByteData::Slice { start, end }))?;
            }
            op::NEXT_BUFFER => self.push_value(Value::Buffer)?,
            op::READONLY_BUFFER => {
                self.top()?;
            }
            op::EMPTY_TUPLE => {
                let id = self.tuple(Vec::new())?;
                self.stack.push(id);
            }
            op::TUPLE => {
                let items = self.pop_mark()?;
                let id = self.tuple(items)?;
                self.stack.push(id);
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1 + 1);
                if self.stack.len() < self.floor() + n {
                    return Err(parse_err("stack underflow"));
                }
                let items = self.stack.split_off(self.stack.len() - n);
                let id = self.tuple(items)?;
                self.stack.push(id);
            }
            op::EMPTY_LIST => self.push_value(Value::List(Vec::new()))?,
            op::LIST => {
                let items = self.pop_mark()?;
                self.count_items(items.len())?;
                self.push_value(Value::List(items))?;
            }
            op::EMPTY_DICT => self.push_value(Value::Dict(Vec::new()))?,
            op::DICT => {
                let items = self.pop_mark()?;
                if !items.len().is_multiple_of(2) {
                    return Err(parse_err("odd number of items for DICT"));
                }
                self.count_items(items.len())?;
                let pairs = items.chunks_exact(2).map(|c| (c[0], c[1])).collect();
                self.push_value(Value::Dict(pairs))?;
            }
            op::EMPTY_SET => self.push_value(Value::Set(Vec::new()))?,
            op::FROZENSET => {
                let items = self.pop_mark()?;
                self.count_items(items.len())?;
                self.push_value(Value::Set(items))?;
            }
            op::APPEND => {
                let v = self.pop()?;
                let t = self.top()?;
                self.append_to(t, vec![v])?;
            }
            op::APPENDS | op::ADDITEMS => {
                let items = self.pop_mark()?;
                let t = self.top()?;
                self.append_to(t, items)?;
            }
            op::SETITEM => {
                let v = self.pop()?;
                let k = self.pop()?;
                let t = self.top()?;
                self.set_items(t, vec![k, v])?;
            }
            op::SETITEMS => {
                let items = self.pop_mark()?;
                let t = self.top()?;
                self.set_items(t, items)?;
            }
            op::BUILD => {
                let state = self.pop()?;
                let obj = self.top()?;
                if let Some(Value::Object { state: s, .. }) = self.out.arena.get_mut(obj) {
                    *s = Some(state);
                }
                let w = self.out.arena.weight(state);
                let w = self.out.arena.add_weight(obj, w);
                self.check_weight(w);
            }
            op::GLOBAL => {
                let module = self.line_str()?;
                let name = self.line_str()?;
                let id = self.import(&module, &name, at, opcode)?;
                self.stack.push(id);
            }
            op::STACK_GLOBAL => {
                let name = self.pop()?;
                let module = self.pop()?;
                let (Some(m), Some(n)) = (self.out.arena.str(module), self.out.arena.str(name))
                else {
                    return Err(parse_err("STACK_GLOBAL operands are not strings"));
                };
                let (m, n) = (m.to_owned(), n.to_owned());
                let id = self.import(&m, &n, at, opcode)?;
                self.stack.push(id);
            }
            op::INST => {
                let module = self.line_str()?;
                let name = self.line_str()?;
                let args = self.pop_mark()?;
                let callable = self.import(&module, &name, at, opcode)?;
                let args = self.tuple(args)?;
                let id = self.call(callable, args, at, opcode)?;
                self.stack.push(id);
            }
            op::OBJ => {
                let mut items = self.pop_mark()?;
                if items.is_empty() {
                    return Err(parse_err("OBJ without a class"));
                }
                let cls = items.remove(0);
                let args = self.tuple(items)?;
                let id = self.call(cls, args, at, opcode)?;
                self.stack.push(id);
            }
            op::REDUCE => {
                let args = self.pop()?;
                let callable = self.pop()?;
                let id = self.call(callable, args, at, opcode)?;
                self.stack.push(id);
            }
            op::NEWOBJ | op::NEWOBJ_EX => {
                let kwargs = if opcode == op::NEWOBJ_EX {
                    Some(self.pop()?)
                } else {
                    None
                };
                let args = self.pop()?;
                let cls = self.pop()?;
                self.call(cls, args, at, opcode)?;
                // Replace the recorded construction with the `__new__` form.
                let id = self.out.arena.len().saturating_sub(1) as NodeId;
                if let Some(Value::Object { construct, .. }) = self.out.arena.get_mut(id) {
                    *construct = Construct::New { cls, args, kwargs };
                }
                self.stack.push(id);
            }
            op::PERSID => {
                let l = self.line()?;
                let s = String::from_utf8_lossy(l).into_owned();
                let pid = self.new_value(Value::Str(s.into_boxed_str()))?;
                self.push_value(Value::PersistentId(pid))?;
            }
            op::BINPERSID => {
                let pid = self.pop()?;
                self.push_value(Value::PersistentId(pid))?;
            }
            op::EXT1 | op::EXT2 | op::EXT4 => {
                let code = match opcode {
                    op::EXT1 => u32::from(self.u8()?),
                    op::EXT2 => u32::from(self.u16()?),
                    _ => self.u32()?,
                };
                self.issue_at(
                    &rules::pickle::PICKLE_EXTENSION_CODE,
                    None,
                    at,
                    format!(
                        "{} at offset {at} imports extension code {code}",
                        op::name(opcode)
                    ),
                );
                self.push_value(Value::Extension(code))?;
            }
            op::GET => {
                let l = self.line()?.to_vec();
                let key = parse_memo_key(&l)?;
                self.memo_get(key)?;
            }
            op::BINGET => {
                let key = u64::from(self.u8()?);
                self.memo_get(key)?;
            }
            op::LONG_BINGET => {
                let key = u64::from(self.u32()?);
                self.memo_get(key)?;
            }
            op::PUT => {
                let l = self.line()?.to_vec();
                let key = parse_memo_key(&l)?;
                self.memo_put(key, at)?;
            }
            op::BINPUT => {
                let key = u64::from(self.u8()?);
                self.memo_put(key, at)?;
            }
            op::LONG_BINPUT => {
                let key = u64::from(self.u32()?);
                self.memo_put(key, at)?;
            }
            op::MEMOIZE => {
                let key = self.memo.len() as u64;
                self.memo_put(key, at)?;
            }
            other => {
                return Err(Stop {
                    rule: &rules::pickle::PICKLE_UNKNOWN_OPCODE,
                    message: format!("unknown opcode 0x{other:02x}"),
                });
            }
        }
        Ok(Flow::Continue)
    }
}

fn parse_memo_key(line: &[u8]) -> Step<u64> {
    std::str::from_utf8(line)
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .ok_or_else(|| parse_err("invalid memo key"))
}

/// Decodes a protocol-0 `STRING` argument: a Python `repr` of a byte string, single or double
/// quoted, with backslash escapes.
fn unquote_py_string(line: &[u8]) -> Option<Vec<u8>> {
    let q = *line.first()?;
    if (q != b'\'' && q != b'"') || line.len() < 2 || *line.last()? != q {
        return None;
    }
    let body = &line[1..line.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = *body.get(i + 1)?;
        i += 2;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0'..=b'7' => {
                let mut v: u32 = u32::from(e - b'0');
                let mut k = 0;
                while k < 2 && i < body.len() && (b'0'..=b'7').contains(&body[i]) {
                    v = v * 8 + u32::from(body[i] - b'0');
                    i += 1;
                    k += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let h = body.get(i..i + 2)?;
                let v = u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()?;
                out.push(v);
                i += 2;
            }
            b'\\' | b'\'' | b'"' => out.push(e),
            b'\n' => {}
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

/// Decodes a protocol-0 `UNICODE` argument (`raw-unicode-escape`: Latin-1 with `\uXXXX` and
/// `\UXXXXXXXX`).
fn decode_raw_unicode_escape(line: &[u8]) -> String {
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        if c == b'\\' && matches!(line.get(i + 1), Some(b'u') | Some(b'U')) {
            let n = if line[i + 1] == b'u' { 4 } else { 8 };
            let hex = line
                .get(i + 2..i + 2 + n)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .and_then(char::from_u32);
            if let Some(ch) = hex {
                out.push(ch);
                i += 2 + n;
                continue;
            }
        }
        out.push(char::from(c));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_default(data: &[u8]) -> Outcome {
        run(data, 0, &Limits::default(), &Allowlist::default())
    }

    #[test]
    fn simple_dict_reaches_stop() {
        // {'a': 1} in protocol 2
        let out = run_default(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.");
        assert!(out.reached_stop);
        assert!(out.issues.is_empty(), "{:?}", out.issues);
        let root = out.root.unwrap_or(u32::MAX);
        match out.arena.get(root) {
            Some(Value::Dict(d)) => assert_eq!(d.len(), 1),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn os_system_is_critical() {
        let out = run_default(b"cos\nsystem\n(S'echo hi'\ntR.");
        assert!(out.reached_stop);
        assert_eq!(out.issues.len(), 1);
        assert_eq!(out.issues[0].rule.name, "PickleGlobalNotAllowed");
        assert_eq!(out.issues[0].severity, Severity::Critical);
        assert_eq!(out.issues[0].offset, 0);
    }

    #[test]
    fn long_bytes_are_twos_complement() {
        let out = run_default(b"\x80\x02\x8a\x02\xff\xff.");
        assert_eq!(out.root.and_then(|r| out.arena.int(r)), Some(-1));
        let out = run_default(b"\x80\x02\x8a\x02\xff\x00.");
        assert_eq!(out.root.and_then(|r| out.arena.int(r)), Some(255));
    }

    #[test]
    fn string_unquoting() {
        assert_eq!(
            unquote_py_string(b"'a\\'b\\x41\\n'"),
            Some(b"a'bA\n".to_vec())
        );
        assert_eq!(unquote_py_string(b"'abc"), None);
        assert_eq!(decode_raw_unicode_escape(b"\\u006fs"), "os");
    }

    #[test]
    fn get_of_unknown_memo_key_is_inconsistent() {
        let out = run_default(b"\x80\x04h\x05.");
        assert!(out.failed);
        assert_eq!(out.issues[0].rule.name, "PickleMemoInconsistent");
    }

    #[test]
    fn op_limit_is_enforced() {
        let limits = Limits {
            pickle_ops: 10,
            ..Limits::default()
        };
        let data = [b'N'; 100];
        let out = run(&data, 0, &limits, &Allowlist::default());
        assert!(out.failed);
        assert_eq!(out.issues[0].rule.name, "ScanLimitExceeded");
        assert_eq!(out.ops, 11);
    }
}
