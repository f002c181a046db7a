//! A streaming RDB parser that skips values instead of decoding them. It reads an RDB file from
//! any [`Read`]er in one pass with bounded memory and:
//!
//! * counts the keys (and keys with a TTL, and bytes) of every db, exactly;
//! * checks the file's CRC-64 against the one at its end;
//! * optionally copies the file to a [`Write`]r, keeping only one db (a new checksum is
//!   written at the end, so the copy is a valid RDB file);
//! * optionally captures each key's serialized value, which is exactly a `DUMP` payload's body
//!   (see [`dump_payload`]), for `RESTORE`.
//!
//! It knows every value type of Redis up to 7.4 (RDB version 12): strings, lists (linked,
//! ziplist, quicklist, quicklist 2), sets (plain, intset, listpack), sorted sets (plain, 2,
//! ziplist, listpack), hashes (plain, zipmap, ziplist, listpack, with field TTLs), streams
//! (versions 1 to 3) and module values written with the type-2 format. Values of the old
//! module format (type 6) cannot be skipped without the module: the parser then stops counting
//! and reports it ([`Summary::unparsed`]).

use super::crc64::{crc64, Crc64};
use super::lzf;
use coffer_core::{Error, ErrorKind, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// The newest RDB version this parser knows (Redis 7.4).
pub const MAX_VERSION: u32 = 12;

const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

/// Largest string the parser decodes in memory (keys, aux fields): Redis's own bulk limit.
const MAX_DECODED: u64 = 512 << 20;

/// What the parser is asked to do besides counting.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Decode each key's name (needed to restore it).
    pub decode_keys: bool,
    /// Keep each value's serialized bytes ([`Entry::payload`]).
    pub capture_values: bool,
    /// When copying, keep only this db (the others are left out of the copy and not counted).
    pub only_db: Option<u32>,
    /// On a value the parser cannot skip, copy the rest unparsed and report it in
    /// [`Summary::unparsed`] instead of failing (only without `only_db`).
    pub tolerate_unparsed: bool,
}

/// One key of the file.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its db.
    pub db: u32,
    /// Its name (empty unless [`Options::decode_keys`]).
    pub key: Vec<u8>,
    /// Its absolute expiry time in Unix milliseconds, if it has one.
    pub expire_ms: Option<i64>,
    /// Its RDB value type.
    pub value_type: u8,
    /// The type byte and the serialized value (empty unless [`Options::capture_values`]).
    pub payload: Vec<u8>,
}

/// What the parser hands out, in file order.
#[derive(Debug)]
pub enum Item {
    /// A key and its value.
    Entry(Entry),
    /// A function library (`FUNCTION RESTORE` payload body: opcode and code), when capturing.
    Function(Vec<u8>),
}

/// The key count and size of one db.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DbCount {
    /// Keys.
    pub keys: u64,
    /// Keys with a TTL.
    pub expires: u64,
    /// Bytes of the file its keys take.
    pub bytes: u64,
}

/// What a whole pass found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The RDB version of the header.
    pub version: u32,
    /// The auxiliary fields (`redis-ver`, `ctime`, `used-mem`, ...), as text.
    pub aux: Vec<(String, String)>,
    /// Keys per db (only dbs that hold keys; only the kept db when filtering).
    pub dbs: BTreeMap<u32, DbCount>,
    /// Function libraries.
    pub functions: u64,
    /// Module auxiliary records.
    pub module_aux: u64,
    /// Why counting stopped early (a value the parser cannot skip), if it did.
    pub unparsed: Option<String>,
    /// Bytes read.
    pub input_bytes: u64,
    /// Bytes copied to the writer.
    pub output_bytes: u64,
    /// Whether the file carried a checksum (0 means `rdbchecksum no`).
    pub had_checksum: bool,
}

impl Summary {
    /// An auxiliary field's value.
    pub fn aux(&self, key: &str) -> Option<&str> {
        self.aux
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Keys in every db.
    pub fn total_keys(&self) -> u64 {
        self.dbs.values().map(|d| d.keys).sum()
    }
}

/// Where a parser's copy goes: a writer that is also told where each db's records and the end
/// of the file begin (so a backup can store them as separate streams).
pub trait RdbSink: Write {
    /// The records of db `db` begin: its SELECTDB opcode is the next byte written.
    fn begin_db(&mut self, _db: u32) -> std::io::Result<()> {
        Ok(())
    }

    /// The end of the file (EOF opcode and checksum) begins.
    fn begin_end(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RdbSink for Vec<u8> {}
impl RdbSink for std::io::Sink {}

fn copy_error(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Storage, "writing the RDB copy").with_source(e)
}

/// The `RESTORE`/`DUMP` payload for a captured value: type byte and value, the RDB version
/// (2 bytes, little-endian), then the CRC-64 of all that (8 bytes, little-endian).
pub fn dump_payload(mut body: Vec<u8>, rdb_version: u32) -> Vec<u8> {
    body.extend_from_slice(&(rdb_version as u16).to_le_bytes());
    let crc = crc64(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Hold,
    Drop,
}

/// Where copied bytes go, with the copy's own checksum.
struct Output<W: RdbSink> {
    w: W,
    crc: Crc64,
    mode: Mode,
    held: Vec<u8>,
    written: u64,
}

impl<W: RdbSink> Output<W> {
    fn emit(&mut self, data: &[u8]) -> Result<()> {
        self.crc.update(data);
        self.written += data.len() as u64;
        self.w.write_all(data).map_err(copy_error)
    }

    fn feed(&mut self, data: &[u8]) -> Result<()> {
        match self.mode {
            Mode::Pass => self.emit(data),
            Mode::Hold => {
                self.held.extend_from_slice(data);
                Ok(())
            }
            Mode::Drop => Ok(()),
        }
    }

    fn decide(&mut self, keep: bool) -> Result<()> {
        let held = std::mem::take(&mut self.held);
        if keep {
            self.emit(&held)?;
            self.mode = Mode::Pass;
        } else {
            self.mode = Mode::Drop;
        }
        self.held = held;
        self.held.clear();
        Ok(())
    }
}

/// The input side: every byte read goes through the checksum, the capture and the copy.
struct Input<R: Read, W: RdbSink> {
    r: R,
    crc: Crc64,
    pos: u64,
    capture: Option<Vec<u8>>,
    out: Option<Output<W>>,
}

impl<R: Read, W: RdbSink> Input<R, W> {
    fn consumed(&mut self, data: &[u8]) -> Result<()> {
        self.crc.update(data);
        self.pos += data.len() as u64;
        if let Some(c) = &mut self.capture {
            c.extend_from_slice(data);
        }
        if let Some(o) = &mut self.out {
            o.feed(data)?;
        }
        Ok(())
    }

    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match self.r.read(&mut buf[done..]) {
                Ok(0) => {
                    return Err(Error::corrupt(format!(
                        "the RDB data ends early (after {} bytes, in the middle of a record)",
                        self.pos + done as u64
                    )))
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
        Ok(())
    }

    fn bytes<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut b = [0u8; N];
        self.fill(&mut b)?;
        self.consumed(&b)?;
        Ok(b)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.bytes::<1>()?[0])
    }

    fn vec(&mut self, n: u64) -> Result<Vec<u8>> {
        if n > MAX_DECODED {
            return Err(Error::corrupt(format!(
                "the RDB holds a {n}-byte name or field, larger than Redis allows"
            )));
        }
        // Room grows as the bytes arrive: a stated length alone reserves nothing.
        let mut v = Vec::new();
        let mut left = n as usize;
        while left > 0 {
            let k = left.min(64 * 1024);
            let at = v.len();
            v.resize(at + k, 0);
            self.fill(&mut v[at..])?;
            self.consumed(&v[at..])?;
            left -= k;
        }
        Ok(v)
    }

    fn skip(&mut self, mut n: u64) -> Result<()> {
        let mut buf = vec![0u8; n.min(64 * 1024) as usize];
        while n > 0 {
            let k = n.min(buf.len() as u64) as usize;
            self.fill(&mut buf[..k])?;
            self.consumed(&buf[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn hold(&mut self) {
        if let Some(o) = &mut self.out {
            o.mode = Mode::Hold;
        }
    }

    fn decide(&mut self, keep: bool) -> Result<()> {
        match &mut self.out {
            Some(o) => o.decide(keep),
            None => Ok(()),
        }
    }

    /// A length, or the special encoding of a string (`Err(enc)`).
    fn len_or_enc(&mut self) -> Result<std::result::Result<u64, u8>> {
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Ok((b & 0x3f) as u64),
            1 => Ok((((b & 0x3f) as u64) << 8) | self.u8()? as u64),
            2 => match b {
                0x80 => Ok(u32::from_be_bytes(self.bytes::<4>()?) as u64),
                0x81 => Ok(u64::from_be_bytes(self.bytes::<8>()?)),
                _ => {
                    return Err(Error::corrupt(format!(
                        "the RDB holds an unknown length encoding 0x{b:02x} at byte {}",
                        self.pos - 1
                    )))
                }
            },
            _ => Err(b & 0x3f),
        })
    }

    fn len(&mut self) -> Result<u64> {
        match self.len_or_enc()? {
            Ok(n) => Ok(n),
            Err(enc) => Err(Error::corrupt(format!(
                "the RDB holds an encoded string (0x{enc:02x}) where a length belongs, at byte {}",
                self.pos - 1
            ))),
        }
    }

    /// A string: decoded (`Some`) or skipped (`None`).
    fn string(&mut self, decode: bool) -> Result<Option<Vec<u8>>> {
        match self.len_or_enc()? {
            Ok(n) if decode => self.vec(n).map(Some),
            Ok(n) => self.skip(n).map(|_| None),
            Err(0) => {
                let v = self.bytes::<1>()?[0] as i8;
                Ok(decode.then(|| v.to_string().into_bytes()))
            }
            Err(1) => {
                let v = i16::from_le_bytes(self.bytes::<2>()?);
                Ok(decode.then(|| v.to_string().into_bytes()))
            }
            Err(2) => {
                let v = i32::from_le_bytes(self.bytes::<4>()?);
                Ok(decode.then(|| v.to_string().into_bytes()))
            }
            Err(3) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if !decode {
                    self.skip(clen)?;
                    return Ok(None);
                }
                if ulen > MAX_DECODED {
                    return Err(Error::corrupt(format!(
                        "the RDB holds a compressed {ulen}-byte name, larger than Redis allows"
                    )));
                }
                let c = self.vec(clen)?;
                lzf::decompress(&c, ulen as usize)
                    .map(Some)
                    .map_err(|e| Error::corrupt(format!("a compressed string of the RDB: {e}")))
            }
            Err(enc) => Err(Error::corrupt(format!(
                "the RDB holds an unknown string encoding {enc} at byte {}",
                self.pos - 1
            ))),
        }
    }

    fn skip_string(&mut self) -> Result<()> {
        self.string(false).map(|_| ())
    }

    /// A module value written with the type-2 format: opcodes until EOF.
    fn skip_module_value(&mut self) -> Result<()> {
        loop {
            match self.len()? {
                0 => return Ok(()),
                1 | 2 => {
                    self.len()?;
                }
                3 => {
                    self.skip(4)?;
                }
                4 => {
                    self.skip(8)?;
                }
                5 => self.skip_string()?,
                op => {
                    return Err(Error::corrupt(format!(
                        "the RDB holds an unknown module opcode {op} at byte {}",
                        self.pos
                    )))
                }
            }
        }
    }

    fn skip_stream(&mut self, t: u8) -> Result<()> {
        let v2 = t >= 19;
        let v3 = t >= 21;
        let nodes = self.len()?;
        for _ in 0..nodes {
            self.skip_string()?; // master id
            self.skip_string()?; // listpack
        }
        self.len()?; // length
        self.len()?; // last id ms
        self.len()?; // last id seq
        if v2 {
            for _ in 0..5 {
                self.len()?; // first id, max deleted id, entries added
            }
        }
        let groups = self.len()?;
        for _ in 0..groups {
            self.skip_string()?; // name
            self.len()?; // last id ms
            self.len()?; // last id seq
            if v2 {
                self.len()?; // entries read
            }
            let pel = self.len()?;
            for _ in 0..pel {
                self.skip(16 + 8)?; // id, delivery time
                self.len()?; // delivery count
            }
            let consumers = self.len()?;
            for _ in 0..consumers {
                self.skip_string()?; // name
                self.skip(8)?; // seen time
                if v3 {
                    self.skip(8)?; // active time
                }
                let pel = self.len()?;
                self.skip(pel.saturating_mul(16))?;
            }
        }
        Ok(())
    }

    /// Skips a value of type `t`; `Ok(false)` when the type cannot be skipped.
    fn skip_value(&mut self, t: u8) -> Result<bool> {
        match t {
            0 => self.skip_string()?,
            1 | 2 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.skip_string()?;
                }
            }
            3 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.skip_string()?;
                    let l = self.u8()?;
                    if l < 253 {
                        self.skip(l as u64)?;
                    }
                }
            }
            4 => {
                let n = self.len()?;
                for _ in 0..n.saturating_mul(2) {
                    self.skip_string()?;
                }
            }
            5 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.skip_string()?;
                    self.skip(8)?;
                }
            }
            7 => {
                self.len()?; // module id
                self.skip_module_value()?;
            }
            9..=13 | 16 | 17 | 20 => self.skip_string()?,
            14 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.skip_string()?;
                }
            }
            18 => {
                let n = self.len()?;
                for _ in 0..n {
                    self.len()?; // container kind
                    self.skip_string()?;
                }
            }
            15 | 19 | 21 => self.skip_stream(t)?,
            24 => {
                self.skip(8)?; // the earliest field expiry
                let n = self.len()?;
                for _ in 0..n {
                    self.len()?; // field ttl
                    self.skip_string()?;
                    self.skip_string()?;
                }
            }
            25 => {
                self.skip(8)?;
                self.skip_string()?;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn read_error(e: std::io::Error) -> Error {
    // A source's checksum error arrives wrapped in an I/O error: keep its words.
    Error::new(ErrorKind::Storage, "reading the RDB data").with_source(e)
}

/// A name for an RDB value type, for messages.
pub fn type_name(t: u8) -> &'static str {
    match t {
        0 => "string",
        1 | 10 | 14 | 18 => "list",
        2 | 11 | 20 => "set",
        3 | 5 | 12 | 17 => "zset",
        4 | 9 | 13 | 16 | 24 | 25 => "hash",
        6 | 7 => "module value",
        15 | 19 | 21 => "stream",
        _ => "unknown type",
    }
}

/// The oldest RDB version that has value type `t` (what a target server must read).
pub fn type_min_version(t: u8) -> u32 {
    match t {
        0..=14 => 7,
        15 => 9,
        16..=19 => 10,
        20 | 21 => 11,
        _ => 12,
    }
}

/// The streaming parser; see the module docs.
pub struct Parser<R: Read, W: RdbSink> {
    inp: Input<R, W>,
    opts: Options,
    summary: Summary,
    db: u32,
    expire: Option<i64>,
    done: bool,
}

impl<R: Read> Parser<R, std::io::Sink> {
    /// A parser that copies nothing.
    pub fn new(r: R, opts: Options) -> Result<Self> {
        Parser::with_output(r, None, opts)
    }
}

impl<R: Read, W: RdbSink> Parser<R, W> {
    /// A parser copying the file (or the kept db) to `out`. Reads the header.
    pub fn with_output(r: R, out: Option<W>, opts: Options) -> Result<Self> {
        let mut inp = Input {
            r,
            crc: Crc64::new(),
            pos: 0,
            capture: None,
            out: out.map(|w| Output {
                w,
                crc: Crc64::new(),
                mode: Mode::Pass,
                held: Vec::new(),
                written: 0,
            }),
        };
        let head = inp.bytes::<9>()?;
        if &head[..5] != b"REDIS" {
            return Err(Error::corrupt(
                "this is not an RDB file (it does not start with REDIS)",
            ));
        }
        let version: u32 = std::str::from_utf8(&head[5..])
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::corrupt("the RDB header has no version number"))?;
        if version == 0 || version > MAX_VERSION {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the RDB is version {version}; Coffer reads versions 1 to {MAX_VERSION} \
                     (Redis up to 7.4)"
                ),
            ));
        }
        Ok(Parser {
            inp,
            summary: Summary {
                version,
                ..Summary::default()
            },
            opts,
            db: 0,
            expire: None,
            done: false,
        })
    }

    /// The RDB version.
    pub fn version(&self) -> u32 {
        self.summary.version
    }

    fn keep_db(&self) -> bool {
        self.opts.only_db.is_none_or(|d| d == self.db)
    }

    fn count(&mut self, start: u64) -> &mut DbCount {
        let c = self.summary.dbs.entry(self.db).or_default();
        c.bytes += self.inp.pos - start;
        c
    }

    /// The next key (or captured function), `None` at the end of the file.
    pub fn next_item(&mut self) -> Result<Option<Item>> {
        while !self.done {
            self.inp.hold();
            let start = self.inp.pos;
            let op = self.inp.u8()?;
            match op {
                OP_SELECTDB => {
                    let db = self.inp.len()?;
                    self.db = u32::try_from(db)
                        .map_err(|_| Error::corrupt(format!("the RDB selects db {db}")))?;
                    let keep = self.keep_db();
                    if let (true, Some(o)) = (keep, &mut self.inp.out) {
                        o.w.begin_db(self.db).map_err(copy_error)?;
                    }
                    self.inp.decide(keep)?;
                }
                OP_RESIZEDB => {
                    self.inp.decide(self.keep_db())?;
                    self.inp.len()?;
                    self.inp.len()?;
                    if self.keep_db() {
                        self.count(start);
                    }
                }
                OP_AUX => {
                    self.inp.decide(true)?;
                    let k = self.inp.string(true)?.unwrap_or_default();
                    let v = self.inp.string(true)?.unwrap_or_default();
                    self.summary.aux.push((
                        String::from_utf8_lossy(&k).into_owned(),
                        String::from_utf8_lossy(&v).into_owned(),
                    ));
                }
                OP_EXPIRETIME => {
                    self.inp.decide(self.keep_db())?;
                    let s = i32::from_le_bytes(self.inp.bytes::<4>()?);
                    self.expire = Some(s as i64 * 1000);
                }
                OP_EXPIRETIME_MS => {
                    self.inp.decide(self.keep_db())?;
                    self.expire = Some(i64::from_le_bytes(self.inp.bytes::<8>()?));
                }
                OP_IDLE => {
                    self.inp.decide(self.keep_db())?;
                    self.inp.len()?;
                }
                OP_FREQ => {
                    self.inp.decide(self.keep_db())?;
                    self.inp.u8()?;
                }
                OP_SLOT_INFO => {
                    self.inp.decide(self.keep_db())?;
                    for _ in 0..3 {
                        self.inp.len()?;
                    }
                }
                OP_MODULE_AUX => {
                    self.inp.decide(true)?;
                    self.inp.len()?; // module id
                    self.inp.len()?; // "when" opcode
                    self.inp.len()?; // when
                    self.inp.skip_module_value()?;
                    self.summary.module_aux += 1;
                }
                OP_FUNCTION2 => {
                    self.inp.decide(true)?;
                    if self.opts.capture_values {
                        self.inp.capture = Some(vec![op]);
                    }
                    self.inp.skip_string()?;
                    self.summary.functions += 1;
                    if let Some(body) = self.inp.capture.take() {
                        return Ok(Some(Item::Function(body)));
                    }
                }
                OP_FUNCTION_PRE_GA => {
                    return self.unparsed(
                        start,
                        "a function library in the format of Redis 7.0's release candidates".into(),
                    )
                }
                OP_EOF => {
                    if let Some(o) = &mut self.inp.out {
                        o.w.begin_end().map_err(copy_error)?;
                    }
                    self.inp.decide(true)?;
                    self.finish_checksum()?;
                    self.done = true;
                }
                t => {
                    let keep = self.keep_db();
                    self.inp.decide(keep)?;
                    let key = self.inp.string(self.opts.decode_keys)?.unwrap_or_default();
                    if self.opts.capture_values && keep {
                        self.inp.capture = Some(vec![t]);
                    }
                    if !self.inp.skip_value(t)? {
                        self.inp.capture = None;
                        return self.unparsed(
                            start,
                            format!(
                                "the key {} in db {} holds a {} (RDB type {t}) that Coffer \
                                 cannot parse",
                                show_key(&key),
                                self.db,
                                type_name(t)
                            ),
                        );
                    }
                    let payload = self.inp.capture.take().unwrap_or_default();
                    let expire = self.expire.take();
                    if keep {
                        let db = self.db;
                        let c = self.count(start);
                        c.keys += 1;
                        if expire.is_some() {
                            c.expires += 1;
                        }
                        return Ok(Some(Item::Entry(Entry {
                            db,
                            key,
                            expire_ms: expire,
                            value_type: t,
                            payload,
                        })));
                    }
                }
            }
        }
        Ok(None)
    }

    /// A record the parser cannot skip: copy the rest as it is (when allowed) and stop counting.
    fn unparsed(&mut self, start: u64, why: String) -> Result<Option<Item>> {
        if !self.opts.tolerate_unparsed || self.opts.only_db.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("{why} (at byte {start} of the RDB)"),
            ));
        }
        self.inp.decide(true)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = loop {
                match self.inp.r.read(&mut buf) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(read_error(e)),
                }
            };
            if n == 0 {
                break;
            }
            self.inp.consumed(&buf[..n])?;
        }
        self.summary.unparsed = Some(why);
        self.done = true;
        Ok(None)
    }

    /// After the EOF opcode: check the stored checksum, write the copy's own, and make sure
    /// nothing follows.
    fn finish_checksum(&mut self) -> Result<()> {
        let computed = self.inp.crc.value();
        if let Some(o) = &mut self.inp.out {
            o.mode = Mode::Drop;
        }
        if self.summary.version >= 5 {
            let stored = u64::from_le_bytes(self.inp.bytes::<8>()?);
            self.summary.had_checksum = stored != 0;
            if stored != 0 && stored != computed {
                return Err(Error::corrupt(format!(
                    "the RDB's checksum does not match its content (stored {stored:016x}, \
                     computed {computed:016x})"
                )));
            }
            if let Some(o) = &mut self.inp.out {
                let crc = o.crc.value().to_le_bytes();
                o.w.write_all(&crc).map_err(copy_error)?;
                o.written += 8;
            }
        }
        let mut probe = [0u8; 1];
        loop {
            match self.inp.r.read(&mut probe) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    return Err(Error::corrupt(format!(
                        "the RDB data goes on after its end (at byte {})",
                        self.inp.pos
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
    }

    /// Reads to the end (counting), then returns the summary and the writer.
    pub fn finish(mut self) -> Result<(Summary, Option<W>)> {
        while self.next_item()?.is_some() {}
        self.summary.input_bytes = self.inp.pos;
        let mut out = self.inp.out.take();
        if let Some(o) = &mut out {
            self.summary.output_bytes = o.written;
            o.w.flush().map_err(copy_error)?;
        }
        Ok((self.summary, out.map(|o| o.w)))
    }
}

/// A key name for messages: text when printable, else escaped, shortened.
pub fn show_key(key: &[u8]) -> String {
    let mut s: String = key.escape_ascii().to_string();
    if s.len() > 80 {
        let mut cut = 77;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    format!("{s:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small RDB (version 10) built by hand: two dbs, a TTL, an intset, a listpack.
    fn sample() -> Vec<u8> {
        let mut f = b"REDIS0010".to_vec();
        f.extend_from_slice(&[OP_AUX, 9]);
        f.extend_from_slice(b"redis-ver");
        f.extend_from_slice(&[6]);
        f.extend_from_slice(b"7.0.15");
        f.extend_from_slice(&[OP_SELECTDB, 0, OP_RESIZEDB, 2, 1]);
        // "a" = 300 (int16 encoded)
        f.extend_from_slice(&[0, 1, b'a', 0xc1, 0x2c, 0x01]);
        // expiring "b" = "xyz"
        f.push(OP_EXPIRETIME_MS);
        f.extend_from_slice(&1_900_000_000_000i64.to_le_bytes());
        f.extend_from_slice(&[0, 1, b'b', 3, b'x', b'y', b'z']);
        f.extend_from_slice(&[OP_SELECTDB, 3]);
        // set "s" as an intset blob (opaque to the parser)
        f.extend_from_slice(&[11, 1, b's', 4, 1, 2, 3, 4]);
        // list "l" with two plain strings
        f.extend_from_slice(&[1, 1, b'l', 2, 1, b'p', 1, b'q']);
        f.push(OP_EOF);
        let crc = crc64(&f);
        f.extend_from_slice(&crc.to_le_bytes());
        f
    }

    #[test]
    fn counts_keys_per_db_and_checks_the_checksum() {
        let (s, _) = Parser::new(&sample()[..], Options::default())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(s.version, 10);
        assert_eq!(s.aux("redis-ver"), Some("7.0.15"));
        assert_eq!(s.dbs[&0].keys, 2);
        assert_eq!(s.dbs[&0].expires, 1);
        assert_eq!(s.dbs[&3].keys, 2);
        assert!(s.had_checksum);

        let mut bad = sample();
        let n = bad.len();
        bad[n - 12] ^= 1;
        let e = Parser::new(&bad[..], Options::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("checksum"), "{e}");

        let mut short = sample();
        short.truncate(30);
        let e = Parser::new(&short[..], Options::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("ends early"), "{e}");
    }

    #[test]
    fn stated_lengths_are_capped_and_reserve_nothing() {
        let fails = |f: &[u8]| {
            Parser::new(f, Options::default())
                .unwrap()
                .finish()
                .unwrap_err()
                .to_string()
        };
        // An aux field whose name claims more than Redis allows (8-byte length).
        let mut f = b"REDIS0010".to_vec();
        f.extend_from_slice(&[OP_AUX, 0x81]);
        f.extend_from_slice(&u64::MAX.to_be_bytes());
        let e = fails(&f);
        assert!(e.contains("larger than Redis allows"), "{e}");
        // Within the limit but far longer than the data: an early end, not a 500 MiB buffer.
        let mut f = b"REDIS0010".to_vec();
        f.extend_from_slice(&[OP_AUX, 0x80]);
        f.extend_from_slice(&(500u32 << 20).to_be_bytes());
        f.extend_from_slice(b"abc");
        let e = fails(&f);
        assert!(e.contains("ends early"), "{e}");
        // A compressed name whose stated size is over the limit.
        let mut f = b"REDIS0010".to_vec();
        f.extend_from_slice(&[OP_AUX, 0xc3, 1, 0x81]);
        f.extend_from_slice(&(MAX_DECODED + 1).to_be_bytes());
        f.extend_from_slice(&[0, b'a']);
        let e = fails(&f);
        assert!(
            e.contains("compressed") && e.contains("larger than Redis allows"),
            "{e}"
        );
        // Within the limit, but more than the compressed bytes can give.
        let mut f = b"REDIS0010".to_vec();
        f.extend_from_slice(&[OP_AUX, 0xc3, 2, 0x80]);
        f.extend_from_slice(&(400u32 << 20).to_be_bytes());
        f.extend_from_slice(&[0, b'a']);
        let e = fails(&f);
        assert!(e.contains("not the stated"), "{e}");
    }

    #[test]
    fn filters_one_db_into_a_valid_file() {
        let opts = Options {
            only_db: Some(3),
            ..Options::default()
        };
        let (s, out) = Parser::with_output(&sample()[..], Some(Vec::new()), opts)
            .unwrap()
            .finish()
            .unwrap();
        let copy = out.unwrap();
        assert_eq!(s.dbs.len(), 1);
        assert_eq!(s.dbs[&3].keys, 2);
        let (again, _) = Parser::new(&copy[..], Options::default())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(again.dbs.keys().copied().collect::<Vec<_>>(), vec![3]);
        assert_eq!(again.dbs[&3].keys, 2);
        assert!(copy.len() < sample().len());

        let (_, whole) = Parser::with_output(&sample()[..], Some(Vec::new()), Options::default())
            .unwrap()
            .finish()
            .unwrap();
        assert_eq!(whole.unwrap(), sample());
    }

    #[test]
    fn captures_restore_payloads() {
        let opts = Options {
            decode_keys: true,
            capture_values: true,
            ..Options::default()
        };
        let file = sample();
        let mut p = Parser::new(&file[..], opts).unwrap();
        let mut seen = Vec::new();
        while let Some(Item::Entry(e)) = p.next_item().unwrap() {
            seen.push((e.db, e.key, e.expire_ms, e.payload));
        }
        assert_eq!(seen[0], (0, b"a".to_vec(), None, vec![0, 0xc1, 0x2c, 0x01]));
        assert_eq!(seen[1].2, Some(1_900_000_000_000));
        assert_eq!(seen[2], (3, b"s".to_vec(), None, vec![11, 4, 1, 2, 3, 4]));
        let payload = dump_payload(seen[0].3.clone(), 10);
        assert_eq!(payload.len(), 4 + 2 + 8);
        assert_eq!(&payload[4..6], &[10, 0]);
    }

    #[test]
    fn unknown_types_stop_counting_or_fail() {
        let mut f = b"REDIS0010".to_vec();
        f.extend_from_slice(&[0, 1, b'a', 1, b'x']);
        f.extend_from_slice(&[6, 1, b'm', 9, 9, 9]);
        f.push(OP_EOF);
        let e = Parser::new(&f[..], Options::default())
            .unwrap()
            .finish()
            .unwrap_err();
        assert!(e.to_string().contains("module value"), "{e}");
        let opts = Options {
            tolerate_unparsed: true,
            decode_keys: true,
            ..Options::default()
        };
        let (s, out) = Parser::with_output(&f[..], Some(Vec::new()), opts)
            .unwrap()
            .finish()
            .unwrap();
        assert!(s.unparsed.unwrap().contains("\"m\""));
        assert_eq!(s.dbs[&0].keys, 1);
        assert_eq!(out.unwrap(), f);
    }
}
