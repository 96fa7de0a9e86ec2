//! A restricted unpickler: exactly the opcodes and globals that `torch.save` uses for tensors and
//! (nested) dicts of tensors, like PyTorch's own `weights_only=True` loader. Nothing is ever called
//! or imported: the few allowed globals are recognised by name and interpreted here.

use crate::{Dtype, StorageRef, TensorRef};
use std::collections::HashMap;

/// A value of the pickle object tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// A `dict` or `collections.OrderedDict`, in insertion order. `attrs` holds the state set by a
    /// BUILD opcode (a state dict's `_metadata`).
    Dict {
        items: Vec<(Value, Value)>,
        attrs: Vec<(Value, Value)>,
    },
    /// One of the allowed globals (only as an intermediate value).
    Global(Global),
    /// A storage reference (a persistent id).
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// The globals a tensor file may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    StorageType(Dtype),
}

impl Global {
    fn resolve(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
            ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
            ("collections", "OrderedDict") => Global::OrderedDict,
            ("torch", storage) => Global::StorageType(storage_dtype(storage)?),
            _ => return None,
        })
    }
}

/// `torch.LongStorage` -> int64, ... (the typed storage classes torch.save pickles).
pub(crate) fn storage_dtype(class: &str) -> Option<Dtype> {
    Some(match class {
        "BoolStorage" => Dtype::Bool,
        "ByteStorage" => Dtype::UInt8,
        "CharStorage" => Dtype::Int8,
        "ShortStorage" => Dtype::Int16,
        "IntStorage" => Dtype::Int32,
        "LongStorage" => Dtype::Int64,
        "HalfStorage" => Dtype::Float16,
        "BFloat16Storage" => Dtype::BFloat16,
        "FloatStorage" => Dtype::Float32,
        "DoubleStorage" => Dtype::Float64,
        _ => return None,
    })
}

/// The class name `storage_dtype` maps back from.
pub(crate) fn storage_class(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::Bool => "BoolStorage",
        Dtype::UInt8 => "ByteStorage",
        Dtype::Int8 => "CharStorage",
        Dtype::Int16 => "ShortStorage",
        Dtype::Int32 => "IntStorage",
        Dtype::Int64 => "LongStorage",
        Dtype::Float16 => "HalfStorage",
        Dtype::BFloat16 => "BFloat16Storage",
        Dtype::Float32 => "FloatStorage",
        Dtype::Float64 => "DoubleStorage",
    }
}

/// Why a pickle was refused, and at which byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickleError {
    pub offset: usize,
    pub message: String,
}

/// Most tensor dimensions accepted (PyTorch's own limit is 64).
const MAX_DIMS: usize = 64;
/// Most value nodes a pickle may build, memo copies included: a guard against tiny pickles that
/// expand exponentially through repeated memo references.
const MAX_NODES: usize = 20_000_000;

enum Slot {
    Value(Value),
    Mark,
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_start: usize,
    stack: Vec<Slot>,
    memo: HashMap<u32, Value>,
    nodes: usize,
}

/// Unpickles `data` (a `data.pkl`) into a value tree, accepting only what tensor files use (see the
/// module docs). Storage records are not read: tensors come back as [`TensorRef`]s.
pub fn unpickle(data: &[u8]) -> Result<Value, PickleError> {
    Machine { data, pos: 0, op_start: 0, stack: Vec::new(), memo: HashMap::new(), nodes: 0 }.run()
}

impl<'a> Machine<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError { offset: self.op_start, message: message.into() })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.data.len() => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            _ => self.err(format!("truncated pickle: needs {n} more byte(s) past byte {}", self.pos)),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn len_u64(&mut self, n: u64) -> Result<usize, PickleError> {
        // A length is checked against the bytes really left before anything is allocated.
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            return self.err(format!("declared length {n} exceeds the {left} byte(s) left in the pickle"));
        }
        Ok(n as usize)
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return self.err("truncated pickle: unterminated GLOBAL name");
        };
        self.pos += end + 1;
        std::str::from_utf8(&rest[..end]).or_else(|_| self.err("GLOBAL name is not UTF-8"))
    }

    fn text(&mut self, n: usize) -> Result<String, PickleError> {
        let bytes = self.take(n)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => self.err("string is not valid UTF-8"),
        }
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        self.spend(1)?;
        self.stack.push(Slot::Value(v));
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Slot::Value(v)) => Ok(v),
            Some(Slot::Mark) => self.err("unexpected MARK on the stack"),
            None => self.err("stack underflow"),
        }
    }

    fn top(&mut self) -> Result<&mut Value, PickleError> {
        let offset = self.op_start;
        match self.stack.last_mut() {
            Some(Slot::Value(v)) => Ok(v),
            _ => Err(PickleError { offset, message: "expected a value on the stack".into() }),
        }
    }

    /// Pops everything down to the last MARK.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(mark) = self.stack.iter().rposition(|s| matches!(s, Slot::Mark)) else {
            return self.err("no MARK on the stack");
        };
        let items = self.stack.split_off(mark + 1);
        self.stack.pop();
        Ok(items
            .into_iter()
            .map(|s| match s {
                Slot::Value(v) => v,
                Slot::Mark => unreachable!("rposition found the last mark"),
            })
            .collect())
    }

    fn memo_get(&mut self, key: u32) -> Result<(), PickleError> {
        let Some(n) = self.memo.get(&key).map(count_nodes) else {
            return self.err(format!("memo key {key} was never stored"));
        };
        // Count before copying, so the guard fires before the memory is spent.
        self.spend(n)?;
        let v = self.memo[&key].clone();
        self.push(v)
    }

    fn memo_put(&mut self, key: u32) -> Result<(), PickleError> {
        let n = count_nodes(self.top()?);
        self.spend(n)?;
        let v = self.top()?.clone();
        self.memo.insert(key, v);
        Ok(())
    }

    fn spend(&mut self, nodes: usize) -> Result<(), PickleError> {
        self.nodes = self.nodes.saturating_add(nodes);
        if self.nodes > MAX_NODES {
            return self.err("pickle builds too many objects");
        }
        Ok(())
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            self.op_start = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let proto = self.u8()?;
                    if proto > 5 {
                        return self.err(format!("unsupported pickle protocol {proto}"));
                    }
                }
                0x95 => {
                    self.take(8)?; // FRAME: a length hint only
                }
                b'.' => {
                    // Like Python's unpickler, whatever is left below the result is ignored.
                    return self.pop();
                }
                b'(' => self.stack.push(Slot::Mark),
                b')' => self.push(Value::Tuple(Vec::new()))?,
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(items))?
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Value::Tuple(items))?
                }
                b']' => self.push(Value::List(Vec::new()))?,
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Value::List(items))?
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top()? {
                        Value::List(l) => l.push(v),
                        _ => return self.err("APPEND to a non-list"),
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top()? {
                        Value::List(l) => l.extend(items),
                        _ => return self.err("APPENDS to a non-list"),
                    }
                }
                b'}' => self.push(Value::Dict { items: Vec::new(), attrs: Vec::new() })?,
                b'd' => {
                    let flat = self.pop_mark()?;
                    let items = pairs(flat).or_else(|m| self.err(m))?;
                    self.push(Value::Dict { items, attrs: Vec::new() })?
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    match self.top()? {
                        Value::Dict { items, .. } => items.push((k, v)),
                        _ => return self.err("SETITEM on a non-dict"),
                    }
                }
                b'u' => {
                    let flat = self.pop_mark()?;
                    let new = pairs(flat).or_else(|m| self.err(m))?;
                    match self.top()? {
                        Value::Dict { items, .. } => items.extend(new),
                        _ => return self.err("SETITEMS on a non-dict"),
                    }
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64))?
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?
                }
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let bytes = self.take(n)?;
                    let v = long1(bytes).or_else(|m| self.err(m))?;
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v))?
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => u32::from_le_bytes(self.le()?) as u64,
                        0x8c => self.u8()? as u64,
                        _ => u64::from_le_bytes(self.le()?),
                    };
                    let n = self.len_u64(n)?;
                    let s = self.text(n)?;
                    self.push(Value::Str(s))?
                }
                b'B' | b'C' => {
                    let n = if op == b'B' { u32::from_le_bytes(self.le()?) as u64 } else { self.u8()? as u64 };
                    let n = self.len_u64(n)?;
                    let bytes = self.take(n)?.to_vec();
                    self.push(Value::Bytes(bytes))?
                }
                b'q' => {
                    let k = self.u8()? as u32;
                    self.memo_put(k)?
                }
                b'r' => {
                    let k = u32::from_le_bytes(self.le()?);
                    self.memo_put(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u32;
                    self.memo_put(k)?
                }
                b'h' => {
                    let k = self.u8()? as u32;
                    self.memo_get(k)?
                }
                b'j' => {
                    let k = u32::from_le_bytes(self.le()?);
                    self.memo_get(k)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    self.push(Value::Global(g))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return self.err("STACK_GLOBAL needs two strings");
                    };
                    let g = self.global(&module, &name)?;
                    self.push(Value::Global(g))?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let storage = persistent_storage(pid).or_else(|m| self.err(m))?;
                    self.push(Value::Storage(storage))?
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.reduce(callable, args)?;
                    self.push(v)?
                }
                b'b' => {
                    let state = self.pop()?;
                    match (self.top()?, state) {
                        (Value::Dict { attrs, .. }, Value::Dict { items, .. }) => attrs.extend(items),
                        (Value::Dict { .. }, Value::None) => {}
                        _ => return self.err("BUILD is only accepted on a dict, with a dict of attributes"),
                    }
                }
                b'0' => {
                    self.pop()?;
                }
                other => {
                    return self.err(format!(
                        "pickle opcode 0x{other:02x} is not allowed in a tensor file (only the opcodes torch.save uses for tensors and dicts are)"
                    ))
                }
            }
        }
    }

    fn global(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        match Global::resolve(module, name) {
            Some(g) => Ok(g),
            None => self.err(format!(
                "global `{module}.{name}` is not allowed: only tensors and (ordered) dicts of tensors are read, as torch.load(weights_only=True) does"
            )),
        }
    }

    fn reduce(&self, callable: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Tuple(args) = args else { return self.err("REDUCE arguments must be a tuple") };
        match callable {
            Value::Global(Global::OrderedDict) => match args.as_slice() {
                [] => Ok(Value::Dict { items: Vec::new(), attrs: Vec::new() }),
                _ => self.err("OrderedDict(...) with arguments is not supported"),
            },
            Value::Global(Global::RebuildTensorV2) => rebuild_tensor(args).or_else(|m| self.err(m)),
            Value::Global(Global::RebuildParameter) => match <[Value; 3]>::try_from(args) {
                Ok([Value::Tensor(mut t), Value::Bool(requires_grad), _hooks]) => {
                    t.requires_grad = requires_grad;
                    Ok(Value::Tensor(t))
                }
                _ => self.err("_rebuild_parameter expects (tensor, requires_grad, hooks)"),
            },
            Value::Global(Global::StorageType(_)) => self.err("storage classes cannot be called"),
            _ => self.err("REDUCE on something that is not an allowed global"),
        }
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Tuple(items) | Value::List(items) => items.iter().map(count_nodes).sum(),
        Value::Dict { items, attrs } => items.iter().chain(attrs).map(|(k, v)| count_nodes(k) + count_nodes(v)).sum(),
        _ => 0,
    }
}

fn pairs(flat: Vec<Value>) -> Result<Vec<(Value, Value)>, String> {
    if flat.len() % 2 != 0 {
        return Err("odd number of items for a dict".into());
    }
    let mut it = flat.into_iter();
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn long1(bytes: &[u8]) -> Result<i64, String> {
    if bytes.len() > 8 {
        return Err(format!("integer of {} bytes does not fit in 64 bits", bytes.len()));
    }
    if bytes.is_empty() {
        return Ok(0);
    }
    let negative = bytes[bytes.len() - 1] & 0x80 != 0;
    let mut buf = if negative { [0xffu8; 8] } else { [0u8; 8] };
    buf[..bytes.len()].copy_from_slice(bytes);
    Ok(i64::from_le_bytes(buf))
}

fn non_negative(v: &Value, what: &str) -> Result<u64, String> {
    match v {
        Value::Int(n) if *n >= 0 => Ok(*n as u64),
        Value::Int(n) => Err(format!("{what} is negative ({n})")),
        _ => Err(format!("{what} must be an integer")),
    }
}

fn int_tuple(v: &Value, what: &str) -> Result<Vec<u64>, String> {
    let Value::Tuple(items) = v else { return Err(format!("{what} must be a tuple of integers")) };
    if items.len() > MAX_DIMS {
        return Err(format!("{what} has {} dimensions (at most {MAX_DIMS})", items.len()));
    }
    items.iter().map(|i| non_negative(i, what)).collect()
}

fn persistent_storage(pid: Value) -> Result<StorageRef, String> {
    let Value::Tuple(items) = pid else { return Err("persistent id must be a tuple".into()) };
    match <[Value; 5]>::try_from(items) {
        Ok(
            [Value::Str(tag), Value::Global(Global::StorageType(dtype)), Value::Str(key), Value::Str(location), numel],
        ) if tag == "storage" => {
            if key.is_empty() || key.contains(['/', '\\']) || key == ".." {
                return Err(format!("storage key `{key}` is not a plain record name"));
            }
            let numel = non_negative(&numel, "storage size")?;
            Ok(StorageRef { dtype, key, location, numel })
        }
        _ => Err("persistent id must be ('storage', torch.<Type>Storage, key, location, size)".into()),
    }
}

fn rebuild_tensor(args: Vec<Value>) -> Result<Value, String> {
    if !(6..=7).contains(&args.len()) {
        return Err(format!("_rebuild_tensor_v2 expects 6 or 7 arguments, got {}", args.len()));
    }
    let Value::Storage(storage) = &args[0] else { return Err("_rebuild_tensor_v2 needs a storage".into()) };
    let offset = non_negative(&args[1], "storage offset")?;
    let shape = int_tuple(&args[2], "size")?;
    let strides = int_tuple(&args[3], "stride")?;
    let Value::Bool(requires_grad) = args[4] else { return Err("requires_grad must be a bool".into()) };
    if shape.len() != strides.len() {
        return Err(format!("size has {} dimensions but stride has {}", shape.len(), strides.len()));
    }
    let tensor = TensorRef {
        dtype: storage.dtype,
        shape: shape.iter().map(|&s| s as usize).collect(),
        strides: strides.iter().map(|&s| s as usize).collect(),
        storage_offset: offset as usize,
        storage: storage.clone(),
        requires_grad,
    };
    // The highest element index must lie inside the declared storage.
    let end = tensor.storage_extent().ok_or("tensor size overflows")?;
    if end > storage.numel {
        return Err(format!(
            "tensor of size {:?}, stride {:?} at offset {offset} needs {end} element(s) but its storage declares {}",
            tensor.shape, tensor.strides, storage.numel
        ));
    }
    Ok(Value::Tensor(tensor))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long1_handles_sign_and_width() {
        assert_eq!(long1(&[]), Ok(0));
        assert_eq!(long1(&[0xff]), Ok(-1));
        assert_eq!(long1(&[0x00, 0x01]), Ok(256));
        assert_eq!(long1(&[0xff, 0x7f]), Ok(32767));
        assert!(long1(&[0; 9]).is_err());
    }

    #[test]
    fn a_disallowed_global_is_refused_by_name() {
        let err = unpickle(b"\x80\x02cos\nsystem\nq\x00.").unwrap_err();
        assert!(err.message.contains("`os.system` is not allowed"), "{err:?}");
        assert_eq!(err.offset, 2);
    }

    #[test]
    fn lying_lengths_do_not_allocate() {
        let err = unpickle(b"\x80\x02X\xff\xff\xff\xff").unwrap_err();
        assert!(err.message.contains("exceeds"), "{err:?}");
        let err = unpickle(b"\x80\x02\x8d\xff\xff\xff\xff\xff\xff\xff\xff").unwrap_err();
        assert!(err.message.contains("exceeds"), "{err:?}");
    }

    #[test]
    fn exponential_memo_expansion_is_stopped() {
        // l = []; repeat 40 times: l = [l, l]
        let mut p = b"\x80\x02]q\x00".to_vec();
        for _ in 0..40 {
            p.extend_from_slice(b"(h\x00h\x00lq\x00");
        }
        p.push(b'.');
        let err = unpickle(&p).unwrap_err();
        assert!(err.message.contains("too many objects"), "{err:?}");
    }
}
