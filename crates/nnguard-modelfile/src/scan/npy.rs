//! NumPy `.npy` arrays: the header dictionary, the data size, and object arrays (pickles).

use super::Ctx;
use crate::limits::{MAX_NPY_HEADER_BYTES, MAX_STACKED_PICKLES};
use crate::pickle::{self, Trailing};
use crate::rules;

const MAGIC: &[u8] = b"\x93NUMPY";
const MAX_LITERAL_DEPTH: u32 = 16;

/// The parsed header of a `.npy` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyHeader {
    /// The `descr` entry as written (a dtype string, or `None` for a structured dtype).
    pub descr: Option<String>,
    /// True when the dtype, or a field of a structured dtype, is `object`.
    pub object: bool,
    /// Bytes per element, when known (simple dtypes only).
    pub item_size: Option<u64>,
    /// `fortran_order`.
    pub fortran_order: bool,
    /// `shape`.
    pub shape: Vec<u64>,
    /// Offset of the array data.
    pub data_offset: usize,
}

impl NpyHeader {
    /// True for object arrays, whose data is a pickle.
    pub fn is_object(&self) -> bool {
        self.object
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Int(u64),
    None,
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

struct LitParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.pos) == Some(&c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: u32) -> Result<Lit, String> {
        if depth > MAX_LITERAL_DEPTH {
            return Err("the header nests too deeply".into());
        }
        self.ws();
        let c = *self.s.get(self.pos).ok_or("the header ends early")?;
        match c {
            b'\'' | b'"' => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos] != c {
                    if self.s[self.pos] == b'\\' {
                        return Err("escapes in header strings are not supported".into());
                    }
                    self.pos += 1;
                }
                if self.pos >= self.s.len() {
                    return Err("unterminated string in the header".into());
                }
                let text = String::from_utf8_lossy(&self.s[start..self.pos]).into_owned();
                self.pos += 1;
                Ok(Lit::Str(text))
            }
            b'(' | b'[' => {
                let close = if c == b'(' { b')' } else { b']' };
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(close) {
                        return Ok(Lit::Seq(items));
                    }
                    items.push(self.value(depth + 1)?);
                    if !self.eat(b',') {
                        if self.eat(close) {
                            return Ok(Lit::Seq(items));
                        }
                        return Err("expected ',' in a tuple or list".into());
                    }
                }
            }
            b'{' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    if self.eat(b'}') {
                        return Ok(Lit::Dict(items));
                    }
                    let k = self.value(depth + 1)?;
                    if !self.eat(b':') {
                        return Err("expected ':' in the header dictionary".into());
                    }
                    let v = self.value(depth + 1)?;
                    items.push((k, v));
                    if !self.eat(b',') {
                        if self.eat(b'}') {
                            return Ok(Lit::Dict(items));
                        }
                        return Err("expected ',' in the header dictionary".into());
                    }
                }
            }
            b'0'..=b'9' => {
                let start = self.pos;
                while self.pos < self.s.len() && self.s[self.pos].is_ascii_digit() {
                    self.pos += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.pos]).map_err(|e| e.to_string())?;
                t.parse::<u64>()
                    .map(Lit::Int)
                    .map_err(|_| format!("dimension {t} is too large"))
            }
            _ => {
                for (word, lit) in [
                    ("True", Lit::Bool(true)),
                    ("False", Lit::Bool(false)),
                    ("None", Lit::None),
                ] {
                    if self.s[self.pos..].starts_with(word.as_bytes()) {
                        self.pos += word.len();
                        return Ok(lit);
                    }
                }
                Err(format!("unexpected {:?} in the header", char::from(c)))
            }
        }
    }
}

/// Bytes per element of a simple dtype string such as `<f4`, `|b1`, `<U10`.
fn item_size(descr: &str) -> Option<u64> {
    let body = descr.trim_start_matches(['<', '>', '|', '=']);
    let mut chars = body.chars();
    let kind = chars.next()?;
    let digits: String = chars.take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    match kind {
        'b' | 'i' | 'u' | 'f' | 'c' | 'S' | 'a' | 'V' => Some(n),
        'U' => n.checked_mul(4),
        'M' | 'm' => Some(8),
        _ => None,
    }
}

fn descr_has_object(lit: &Lit) -> bool {
    match lit {
        Lit::Str(s) => s.trim_start_matches(['<', '>', '|', '=']).starts_with('O'),
        Lit::Seq(items) => items.iter().any(descr_has_object),
        _ => false,
    }
}

/// Parses the magic, version and header dictionary of a `.npy` file.
pub fn parse_npy_header(data: &[u8]) -> Result<NpyHeader, String> {
    if !data.starts_with(MAGIC) {
        return Err("missing the \\x93NUMPY magic".into());
    }
    let major = *data.get(6).ok_or("the file ends inside the version")?;
    let (len, start) = match major {
        1 => {
            let b = data
                .get(8..10)
                .ok_or("the file ends inside the header length")?;
            (usize::from(u16::from_le_bytes([b[0], b[1]])), 10usize)
        }
        2 | 3 => {
            let b = data
                .get(8..12)
                .ok_or("the file ends inside the header length")?;
            let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (
                usize::try_from(n).map_err(|_| "header length too large")?,
                12usize,
            )
        }
        v => return Err(format!("unknown format version {v}")),
    };
    if len > MAX_NPY_HEADER_BYTES {
        return Err(format!(
            "header of {len} bytes (limit {MAX_NPY_HEADER_BYTES})"
        ));
    }
    let end = start + len;
    let text = data
        .get(start..end)
        .ok_or("the file ends inside the header")?;
    let mut p = LitParser { s: text, pos: 0 };
    let Lit::Dict(items) = p.value(0)? else {
        return Err("the header is not a dictionary".into());
    };
    let get = |k: &str| {
        items
            .iter()
            .find(|(key, _)| *key == Lit::Str(k.into()))
            .map(|(_, v)| v)
    };
    let descr = get("descr").ok_or("the header has no 'descr'")?;
    let fortran_order = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err("the header has no boolean 'fortran_order'".into()),
    };
    let shape = match get("shape") {
        Some(Lit::Seq(dims)) => dims
            .iter()
            .map(|d| match d {
                Lit::Int(i) => Ok(*i),
                _ => Err("'shape' holds something other than integers".to_string()),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => return Err("the header has no tuple 'shape'".into()),
    };
    if items.len() != 3 {
        return Err(format!("the header has {} keys, not 3", items.len()));
    }
    let (descr_str, size) = match descr {
        Lit::Str(s) => (Some(s.clone()), item_size(s)),
        Lit::Seq(_) => (None, None),
        _ => return Err("'descr' is neither a string nor a list".into()),
    };
    Ok(NpyHeader {
        object: descr_has_object(descr),
        descr: descr_str,
        item_size: size,
        fortran_order,
        shape,
        data_offset: end,
    })
}

/// Scans a `.npy` file. `data` holds at least the header (all of it for object arrays);
/// `total_len` is the file's size.
pub(crate) fn scan(ctx: &mut Ctx<'_>, data: &[u8], total_len: u64, entry: &[String], depth: u32) {
    let h = match parse_npy_header(data) {
        Ok(h) => h,
        Err(e) => {
            ctx.report(
                &rules::npy::NPY_HEADER_INVALID,
                None,
                format!("the .npy header is invalid: {e}"),
                entry,
                Some(0),
            );
            return;
        }
    };
    let data_len = total_len.saturating_sub(h.data_offset as u64);
    if h.object {
        ctx.report(
            &rules::npy::NPY_OBJECT_ARRAY,
            None,
            format!(
                "dtype {} holds Python objects; the array data is a pickle (scanned below)",
                h.descr.as_deref().unwrap_or("(structured)")
            ),
            entry,
            Some(0),
        );
        let body = data.get(h.data_offset..).unwrap_or(&[]);
        pickle::scan_stream(
            ctx,
            body,
            entry,
            depth,
            MAX_STACKED_PICKLES,
            Trailing::Finding,
        );
        return;
    }
    let Some(size) = h.item_size else { return };
    let expected = h
        .shape
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(*d))
        .and_then(|n| n.checked_mul(size));
    match expected {
        Some(e) if e == data_len => {}
        Some(e) => ctx.report(
            &rules::npy::NPY_DATA_SIZE_MISMATCH,
            None,
            format!(
                "shape {:?} of {size}-byte items needs {e} bytes of data, the file has {data_len}",
                h.shape
            ),
            entry,
            Some(h.data_offset as u64),
        ),
        None => ctx.report(
            &rules::npy::NPY_DATA_SIZE_MISMATCH,
            None,
            format!("shape {:?} overflows 64 bits", h.shape),
            entry,
            Some(0),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(header: &str) -> Vec<u8> {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        v.extend_from_slice(header.as_bytes());
        v
    }

    #[test]
    fn parses_numpy_written_header() {
        let d = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }          \n");
        let h = parse_npy_header(&d);
        assert_eq!(h.as_ref().map(|h| h.shape.clone()), Ok(vec![3, 4]));
        assert_eq!(h.as_ref().map(|h| h.item_size), Ok(Some(4)));
        assert_eq!(h.map(|h| h.object), Ok(false));
    }

    #[test]
    fn object_and_structured_dtypes() {
        let d = npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }\n");
        assert_eq!(parse_npy_header(&d).map(|h| h.object), Ok(true));
        let d =
            npy("{'descr': [('a', '<i4'), ('b', '|O')], 'fortran_order': False, 'shape': (), }\n");
        assert_eq!(parse_npy_header(&d).map(|h| h.object), Ok(true));
    }

    #[test]
    fn rejects_code_in_header() {
        let d = npy("{'descr': __import__('os'), 'fortran_order': False, 'shape': (), }\n");
        assert!(parse_npy_header(&d).is_err());
    }
}
