//! A closed, allow-listed pickle reader for torch state dicts. Nothing is executed: the
//! opcodes build plain data (numbers, strings, tuples, lists, dicts) in an arena, and the
//! only callables are the few torch/collections globals a state dict needs, each of which
//! is interpreted here as data. Anything else is refused with an error naming the global.
//!
//! [`parse_with`]`(…, `[`Allow::PlainData`]`)` admits no global at all (UER-py's
//! `dataset.pt` instances are tuples of ints and lists): every GLOBAL, STACK_GLOBAL and
//! persistent id is refused, so no REDUCE can name a callable.

use super::DType;
use std::rc::Rc;

/// Limits that keep a hostile pickle from exhausting memory.
const MAX_OBJECTS: usize = 1 << 24;
const MAX_MEMO: usize = 1 << 22;
const MAX_STACK: usize = 1 << 22;
const MAX_MARK_DEPTH: usize = 4096;
const MAX_LONG_BYTES: usize = 64;

/// A pickled value. Containers live in the [`Pickle`] arena and are referred to by index,
/// so memo lookups share them the way Python does (no copies).
#[derive(Debug, Clone)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too large for i64 (little-endian two's complement bytes).
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    /// An object in the arena.
    Obj(usize),
}

/// The globals a torch state dict may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensorV2,
    RebuildParameter,
    /// `torch.<X>Storage`: the storage's element type.
    StorageType(DType),
}

/// A storage reference from a persistent id.
#[derive(Debug, Clone)]
pub struct StorageRef {
    pub dtype: DType,
    pub key: String,
    pub numel: u64,
    /// Legacy view metadata: (root key, element offset, element count).
    pub view: Option<(String, u64, u64)>,
}

/// A tensor as `_rebuild_tensor_v2` describes it (offset and stride in elements).
#[derive(Debug, Clone)]
pub struct TensorSpec {
    pub storage: StorageRef,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Debug, Clone)]
pub enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorSpec),
}

/// A pickle error: position in the stream and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PickleError {
    /// A GLOBAL outside the allow-list.
    ForbiddenGlobal { module: String, name: String },
    /// Anything else, with the byte position.
    Malformed { pos: usize, msg: String },
    /// The data ends inside the pickle (a reader streaming a file may read more and retry).
    Truncated { pos: usize, msg: String },
}

/// What a pickle may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    /// A torch state dict: plain data and the torch/collections globals of [`Global`].
    TorchStateDict,
    /// Plain data only (numbers, strings, bytes, tuples, lists, dicts): no global, no
    /// persistent id.
    PlainData,
}

impl Allow {
    fn what(self) -> &'static str {
        match self {
            Allow::TorchStateDict => "a torch state dict",
            Allow::PlainData => "plain data",
        }
    }
}

impl std::fmt::Display for PickleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PickleError::ForbiddenGlobal { module, name } => write!(
                f,
                "pickle refers to the global `{module}.{name}`, which a torch state dict never needs; refusing to load it"
            ),
            PickleError::Malformed { pos, msg } | PickleError::Truncated { pos, msg } => {
                write!(f, "bad pickle at byte {pos}: {msg}")
            }
        }
    }
}

/// A fully parsed pickle: its arena, the root value and where the stream ended.
pub struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Value,
    /// Bytes consumed (the position after STOP).
    pub end: usize,
}

impl Pickle {
    pub fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(*i),
            _ => None,
        }
    }
}

/// Looks a GLOBAL up in the allow-list.
fn resolve_global(module: &str, name: &str) -> Result<Global, PickleError> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch", storage) => Global::StorageType(match storage {
            "FloatStorage" => DType::F32,
            "DoubleStorage" => DType::F64,
            "HalfStorage" => DType::F16,
            "BFloat16Storage" => DType::BF16,
            "LongStorage" => DType::I64,
            "IntStorage" => DType::I32,
            "ShortStorage" => DType::I16,
            "CharStorage" => DType::I8,
            "ByteStorage" => DType::U8,
            "BoolStorage" => DType::Bool,
            _ => return Err(forbidden(module, name)),
        }),
        _ => return Err(forbidden(module, name)),
    };
    Ok(g)
}

fn forbidden(module: &str, name: &str) -> PickleError {
    PickleError::ForbiddenGlobal {
        module: module.into(),
        name: name.into(),
    }
}

struct Machine<'a> {
    allow: Allow,
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: Vec<Option<Value>>,
    objs: Vec<Obj>,
}

/// Parses one pickle of a torch state dict starting at `data[0]`.
pub fn parse(data: &[u8]) -> Result<Pickle, PickleError> {
    parse_with(data, Allow::TorchStateDict)
}

/// Parses one pickle starting at `data[0]`, admitting what `allow` says.
pub fn parse_with(data: &[u8], allow: Allow) -> Result<Pickle, PickleError> {
    let mut m = Machine {
        allow,
        data,
        pos: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: Vec::new(),
        objs: Vec::new(),
    };
    let root = m.run()?;
    Ok(Pickle {
        objs: m.objs,
        root,
        end: m.pos,
    })
}

impl<'a> Machine<'a> {
    fn err<T>(&self, msg: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError::Malformed {
            pos: self.pos,
            msg: msg.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        match self.pos.checked_add(n).filter(|&e| e <= self.data.len()) {
            Some(end) => {
                let s = &self.data[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(PickleError::Truncated {
                pos: self.pos,
                msg: format!("truncated: needs {n} more bytes"),
            }),
        }
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, PickleError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, PickleError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let Some(n) = rest.iter().take(4096).position(|&b| b == b'\n') else {
            if rest.len() < 4096 {
                return Err(PickleError::Truncated {
                    pos: self.pos,
                    msg: "truncated inside a text line".into(),
                });
            }
            return self.err("unterminated text line");
        };
        let s = std::str::from_utf8(&rest[..n]).or_else(|_| self.err("text line is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn push(&mut self, v: Value) -> Result<(), PickleError> {
        if self.stack.len() >= MAX_STACK {
            return self.err("stack too deep");
        }
        self.stack.push(v);
        Ok(())
    }
    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }
    fn top(&mut self) -> Result<&Value, PickleError> {
        match self.stack.last() {
            Some(v) => Ok(v),
            None => self.err("stack underflow"),
        }
    }
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let Some(mark) = self.marks.pop() else {
            return self.err("no MARK on the stack");
        };
        if mark > self.stack.len() {
            return self.err("MARK above the stack");
        }
        Ok(self.stack.split_off(mark))
    }
    fn alloc(&mut self, o: Obj) -> Result<Value, PickleError> {
        if self.objs.len() >= MAX_OBJECTS {
            return self.err("too many objects");
        }
        self.objs.push(o);
        Ok(Value::Obj(self.objs.len() - 1))
    }
    fn memo_put(&mut self, idx: usize) -> Result<(), PickleError> {
        if idx >= MAX_MEMO {
            return self.err(format!("memo index {idx} too large"));
        }
        let v = self.top()?.clone();
        if idx >= self.memo.len() {
            self.memo.resize(idx + 1, None);
        }
        self.memo[idx] = Some(v);
        Ok(())
    }
    fn memo_get(&mut self, idx: usize) -> Result<(), PickleError> {
        match self.memo.get(idx).cloned().flatten() {
            Some(v) => self.push(v),
            None => self.err(format!("memo index {idx} was never stored")),
        }
    }

    fn str_value(&mut self, bytes: &[u8]) -> Result<Value, PickleError> {
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Value::Str(Rc::from(s))),
            Err(_) => self.err("string is not UTF-8"),
        }
    }

    fn long(&mut self, bytes: &[u8]) -> Result<Value, PickleError> {
        if bytes.len() > MAX_LONG_BYTES {
            return self.err("integer too long");
        }
        if bytes.is_empty() {
            return Ok(Value::Int(0));
        }
        if bytes.len() <= 8 {
            let neg = bytes[bytes.len() - 1] & 0x80 != 0;
            let mut buf = [if neg { 0xff } else { 0 }; 8];
            buf[..bytes.len()].copy_from_slice(bytes);
            return Ok(Value::Int(i64::from_le_bytes(buf)));
        }
        Ok(Value::BigInt(Rc::from(bytes)))
    }

    /// Appends to the list (or dict via pairs) at `target`.
    fn extend_list(&mut self, target: &Value, items: Vec<Value>) -> Result<(), PickleError> {
        match target {
            Value::Obj(i) => match self.objs.get_mut(*i) {
                Some(Obj::List(l)) => {
                    l.extend(items);
                    Ok(())
                }
                _ => self.err("APPEND to something that is not a list"),
            },
            _ => self.err("APPEND to something that is not a list"),
        }
    }

    fn extend_dict(&mut self, target: &Value, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.err("SETITEMS with an odd number of items");
        }
        let Value::Obj(i) = target else {
            return self.err("SETITEM on something that is not a dict");
        };
        let Some(Obj::Dict(d)) = self.objs.get_mut(*i) else {
            return self.err("SETITEM on something that is not a dict");
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            d.push((k, v));
        }
        Ok(())
    }

    fn run(&mut self) -> Result<Value, PickleError> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    // PROTO
                    let p = self.u8()?;
                    if p > 5 {
                        return self.err(format!("unsupported pickle protocol {p}"));
                    }
                }
                0x95 => {
                    // FRAME: a length hint only.
                    self.u64()?;
                }
                b'.' => return self.pop(), // STOP
                b'(' => {
                    if self.marks.len() >= MAX_MARK_DEPTH {
                        return self.err("MARKs nested too deep");
                    }
                    self.marks.push(self.stack.len());
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?;
                }
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'I' => {
                    let line = self.line()?;
                    let v = match line {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => match s.parse::<i64>() {
                            Ok(n) => Value::Int(n),
                            Err(_) => return self.err(format!("bad INT {s:?}")),
                        },
                    };
                    self.push(v)?;
                }
                b'L' => {
                    let line = self.line()?;
                    match line.trim_end_matches('L').parse::<i64>() {
                        Ok(n) => self.push(Value::Int(n))?,
                        Err(_) => return self.err(format!("bad LONG {line:?}")),
                    }
                }
                b'J' => {
                    let n = i32::from_le_bytes(self.take(4)?.try_into().unwrap());
                    self.push(Value::Int(n as i64))?;
                }
                b'K' => {
                    let n = self.u8()?;
                    self.push(Value::Int(n as i64))?;
                }
                b'M' => {
                    let n = self.u16()?;
                    self.push(Value::Int(n as i64))?;
                }
                0x8a => {
                    // LONG1
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.long(b)?;
                    self.push(v)?;
                }
                0x8b => {
                    // LONG4
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let v = self.long(b)?;
                    self.push(v)?;
                }
                b'G' => {
                    let f = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.push(Value::Float(f))?;
                }
                b'F' => {
                    let line = self.line()?;
                    match line.parse::<f64>() {
                        Ok(f) => self.push(Value::Float(f))?,
                        Err(_) => return self.err(format!("bad FLOAT {line:?}")),
                    }
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let b = self.take(n)?;
                    let v = self.str_value(b)?;
                    self.push(v)?;
                }
                0x8c => {
                    // SHORT_BINUNICODE
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = self.str_value(b)?;
                    self.push(v)?;
                }
                0x8d => {
                    // BINUNICODE8
                    let n = self.u64()?;
                    let n = usize::try_from(n).or_else(|_| self.err("string too long"))?;
                    let b = self.take(n)?;
                    let v = self.str_value(b)?;
                    self.push(v)?;
                }
                b'T' | b'U' => {
                    // BINSTRING / SHORT_BINSTRING (Python 2 str): read as text.
                    let n = if op == b'T' {
                        self.u32()? as usize
                    } else {
                        self.u8()? as usize
                    };
                    let b = self.take(n)?;
                    let v = match std::str::from_utf8(b) {
                        Ok(s) => Value::Str(Rc::from(s)),
                        Err(_) => Value::Bytes(Rc::from(b)),
                    };
                    self.push(v)?;
                }
                b'B' | b'C' | 0x8e => {
                    // BINBYTES / SHORT_BINBYTES / BINBYTES8
                    let n = match op {
                        b'B' => self.u32()? as u64,
                        b'C' => self.u8()? as u64,
                        _ => self.u64()?,
                    };
                    let n = usize::try_from(n).or_else(|_| self.err("bytes too long"))?;
                    let b = self.take(n)?;
                    self.push(Value::Bytes(Rc::from(b)))?;
                }
                b')' => {
                    let v = self.alloc(Obj::Tuple(Vec::new()))?;
                    self.push(v)?;
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Tuple(items))?;
                    self.push(v)?;
                }
                0x85..=0x87 => {
                    // TUPLE1..TUPLE3
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return self.err("stack underflow");
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    let v = self.alloc(Obj::Tuple(items))?;
                    self.push(v)?;
                }
                b']' => {
                    let v = self.alloc(Obj::List(Vec::new()))?;
                    self.push(v)?;
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::List(items))?;
                    self.push(v)?;
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?.clone();
                    self.extend_list(&target, vec![item])?;
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.extend_list(&target, items)?;
                }
                b'}' => {
                    let v = self.alloc(Obj::Dict(Vec::new()))?;
                    self.push(v)?;
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Dict(Vec::new()))?;
                    self.extend_dict(&v, items)?;
                    self.push(v)?;
                }
                b's' => {
                    let val = self.pop()?;
                    let key = self.pop()?;
                    let target = self.top()?.clone();
                    self.extend_dict(&target, vec![key, val])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?.clone();
                    self.extend_dict(&target, items)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    let g = self.global(module, name)?;
                    let v = self.alloc(Obj::Global(g))?;
                    self.push(v)?;
                }
                0x93 => {
                    // STACK_GLOBAL
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Value::Str(module), Value::Str(name)) = (module, name) else {
                        return self.err("STACK_GLOBAL needs two strings");
                    };
                    let g = self.global(&module, &name)?;
                    let v = self.alloc(Obj::Global(g))?;
                    self.push(v)?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(func, args)?;
                    self.push(v)?;
                }
                b'b' => {
                    // BUILD: set state on an object. OrderedDict's `_metadata` and a
                    // tensor's state are not needed: check the target is one and drop it.
                    let _state = self.pop()?;
                    let target = self.top()?.clone();
                    match self.obj_of(&target) {
                        Some(Obj::Dict(_)) | Some(Obj::Tensor(_)) => {}
                        _ => {
                            return self
                                .err("BUILD on something that is neither a dict nor a tensor");
                        }
                    }
                }
                b'Q' if self.allow == Allow::TorchStateDict => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.push(v)?;
                }
                b'q' => {
                    let i = self.u8()? as usize;
                    self.memo_put(i)?;
                }
                b'r' => {
                    let i = self.u32()? as usize;
                    self.memo_put(i)?;
                }
                0x94 => {
                    // MEMOIZE
                    let i = self.memo.len();
                    self.memo_put(i)?;
                }
                b'p' => {
                    let line = self.line()?;
                    let Ok(i) = line.parse::<usize>() else {
                        return self.err(format!("bad PUT {line:?}"));
                    };
                    self.memo_put(i)?;
                }
                b'h' => {
                    let i = self.u8()? as usize;
                    self.memo_get(i)?;
                }
                b'j' => {
                    let i = self.u32()? as usize;
                    self.memo_get(i)?;
                }
                b'g' => {
                    let line = self.line()?;
                    let Ok(i) = line.parse::<usize>() else {
                        return self.err(format!("bad GET {line:?}"));
                    };
                    self.memo_get(i)?;
                }
                other => {
                    self.pos -= 1;
                    let what = self.allow.what();
                    return self.err(format!("opcode 0x{other:02x} is not allowed in {what}"));
                }
            }
        }
    }

    /// A GLOBAL the allow-list admits.
    fn global(&self, module: &str, name: &str) -> Result<Global, PickleError> {
        match self.allow {
            Allow::TorchStateDict => resolve_global(module, name),
            Allow::PlainData => Err(forbidden(module, name)),
        }
    }

    fn obj_of(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Obj(i) => self.objs.get(*i),
            _ => None,
        }
    }

    fn tuple_items(&self, v: &Value) -> Option<Vec<Value>> {
        match self.obj_of(v) {
            Some(Obj::Tuple(t)) | Some(Obj::List(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn as_u64(&self, v: &Value, what: &str) -> Result<u64, PickleError> {
        match v {
            Value::Int(n) if *n >= 0 => Ok(*n as u64),
            _ => self.err(format!("{what} must be a non-negative integer")),
        }
    }

    fn u64_tuple(&self, v: &Value, what: &str) -> Result<Vec<u64>, PickleError> {
        let Some(items) = self.tuple_items(v) else {
            return self.err(format!("{what} must be a tuple"));
        };
        if items.len() > 64 {
            return self.err(format!("{what} has {} dimensions", items.len()));
        }
        items.iter().map(|x| self.as_u64(x, what)).collect()
    }

    fn reduce(&mut self, func: Value, args: Value) -> Result<Value, PickleError> {
        let Some(Obj::Global(g)) = self.obj_of(&func).cloned() else {
            return self.err("REDUCE of something that is not an allowed global");
        };
        let Some(args) = self.tuple_items(&args) else {
            return self.err("REDUCE arguments are not a tuple");
        };
        match g {
            Global::OrderedDict => {
                let d = self.alloc(Obj::Dict(Vec::new()))?;
                if let Some(items) = args.first() {
                    // OrderedDict([(k, v), ...])
                    let Some(pairs) = self.tuple_items(items) else {
                        return self.err("OrderedDict argument is not a list");
                    };
                    let mut flat = Vec::with_capacity(pairs.len() * 2);
                    for p in &pairs {
                        match self.tuple_items(p) {
                            Some(kv) if kv.len() == 2 => flat.extend(kv),
                            _ => return self.err("OrderedDict item is not a pair"),
                        }
                    }
                    self.extend_dict(&d, flat)?;
                }
                Ok(d)
            }
            Global::RebuildTensorV2 => {
                if args.len() < 4 {
                    return self
                        .err("_rebuild_tensor_v2 needs (storage, offset, size, stride, ...)");
                }
                let Some(Obj::Storage(storage)) = self.obj_of(&args[0]).cloned() else {
                    return self.err("_rebuild_tensor_v2's first argument is not a storage");
                };
                let offset = self.as_u64(&args[1], "storage offset")?;
                let shape = self.u64_tuple(&args[2], "tensor size")?;
                let stride = self.u64_tuple(&args[3], "tensor stride")?;
                if shape.len() != stride.len() {
                    return self.err("tensor size and stride differ in length");
                }
                self.alloc(Obj::Tensor(TensorSpec {
                    storage,
                    offset,
                    shape,
                    stride,
                }))
            }
            Global::RebuildParameter => match args.first() {
                Some(t @ Value::Obj(i)) if matches!(self.objs.get(*i), Some(Obj::Tensor(_))) => {
                    Ok(t.clone())
                }
                _ => self.err("_rebuild_parameter's first argument is not a tensor"),
            },
            Global::StorageType(_) => self.err("a storage type cannot be called"),
        }
    }

    fn persistent_load(&mut self, pid: Value) -> Result<Value, PickleError> {
        let Some(items) = self.tuple_items(&pid) else {
            return self.err("persistent id is not a tuple");
        };
        let str_of = |v: &Value| match v {
            Value::Str(s) => Some(s.to_string()),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        };
        if items.len() < 5 || !matches!(&items[0], Value::Str(s) if &**s == "storage") {
            return self.err("persistent id is not ('storage', type, key, location, numel)");
        }
        let Some(Obj::Global(Global::StorageType(dtype))) = self.obj_of(&items[1]).cloned() else {
            return self.err("persistent id's storage type is not a torch *Storage");
        };
        let Some(key) = str_of(&items[2]) else {
            return self.err("persistent id's storage key is not a string");
        };
        let numel = self.as_u64(&items[4], "storage size")?;
        let view = match items.get(5) {
            None | Some(Value::None) => None,
            Some(v) => {
                let Some(vm) = self.tuple_items(v) else {
                    return self.err("storage view metadata is not a tuple");
                };
                if vm.len() != 3 {
                    return self.err("storage view metadata is not (key, offset, size)");
                }
                let Some(vkey) = str_of(&vm[0]) else {
                    return self.err("storage view key is not a string");
                };
                Some((
                    vkey,
                    self.as_u64(&vm[1], "view offset")?,
                    self.as_u64(&vm[2], "view size")?,
                ))
            }
        };
        self.alloc(Obj::Storage(StorageRef {
            dtype,
            key,
            numel,
            view,
        }))
    }
}
