//! A TCP proxy on 127.0.0.1 that stands between a client and an HTTP server (moto's S3, an
//! emulator) and breaks the traffic on demand, to test the whole `coffer` binary against a
//! storage that misbehaves the way networks and object stores do.
//!
//! Its [`Mode`] can be changed at any time:
//!
//! * [`Mode::Pass`]: forwards everything;
//! * [`Mode::Flaky`]: reads each HTTP/1.1 request and breaks about `per_thousand` of every 1000
//!   of them, in turn: a reset before anything reaches the server ([`Fault::Reset`]), a request
//!   cut in the middle of its body ([`Fault::CutRequest`]), a `503 SlowDown` answer
//!   ([`Fault::SlowDown`]), and a request that reaches the server but whose answer is lost
//!   ([`Fault::LostResponse`]);
//! * [`Mode::Down`]: the port is closed (connections are refused) and open connections are
//!   reset;
//! * [`Mode::Stall`]: open connections are reset; new ones are accepted, read and never
//!   answered.
//!
//! [`FaultProxy::aim`] limits the faults to requests whose request line contains a string
//! (`?uploadId=`: multipart uploads), to some kinds, and to a number of faults.
//! [`FaultProxy::down_after_requests`] switches it to [`Mode::Down`] by itself at a chosen
//! request, so that a command can lose its storage half-way through, at a reproducible point.
//!
//! It counts the requests it saw and the faults it injected ([`FaultProxy::faults`]), so that a
//! test can assert that faults really happened. Dropping the proxy stops it.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// What the proxy does with the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forward everything.
    Pass,
    /// Break about this many of every 1000 requests (capped at 1000).
    Flaky(u32),
    /// Refuse connections (the port is closed) and reset open ones.
    Down,
    /// Reset open connections; accept new ones and never answer.
    Stall,
}

/// The kinds of fault [`Mode::Flaky`] injects, in the order it cycles through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The connection is reset when a request arrives; nothing reaches the server.
    Reset,
    /// The request's head and half its body reach the server, then both sides are reset.
    CutRequest,
    /// The proxy answers `503 SlowDown` (the body is read, nothing reaches the server) and
    /// closes the connection.
    SlowDown,
    /// The whole request reaches the server, which acts on it; its answer is dropped and the
    /// connection reset.
    LostResponse,
}

const FAULTS: [Fault; 4] = [
    Fault::Reset,
    Fault::CutRequest,
    Fault::SlowDown,
    Fault::LostResponse,
];

const MODE_PASS: u8 = 0;
const MODE_FLAKY: u8 = 1;
const MODE_DOWN: u8 = 2;
const MODE_STALL: u8 = 3;

/// The longest request head the proxy parses (larger heads are forwarded untouched).
const MAX_HEAD: usize = 64 * 1024;

/// State shared by the proxy's threads.
struct Shared {
    upstream: SocketAddr,
    port: u16,
    mode: AtomicU8,
    per_thousand: AtomicU64,
    /// Switch to [`Mode::Down`] at this request number (0: never).
    down_at: AtomicU64,
    /// When the proxy last went down.
    went_down: Mutex<Option<Instant>>,
    /// Only requests whose request line contains this get faults (`None`: every request).
    target: Mutex<Option<String>>,
    /// The kinds of fault [`Mode::Flaky`] cycles through.
    kinds: Mutex<Vec<Fault>>,
    /// Inject no more than this many faults (0: no limit).
    max_faults: AtomicU64,
    stop: AtomicBool,
    requests: AtomicU64,
    connections: AtomicU64,
    rng: AtomicU64,
    next_fault: AtomicU64,
    faults: Mutex<HashMap<Fault, u64>>,
    /// Open client connections by id (clones, so they can be reset on a mode change).
    open: Mutex<HashMap<u64, TcpStream>>,
}

/// A fault-injecting TCP proxy: see the module docs.
pub struct FaultProxy {
    shared: Arc<Shared>,
    acceptor: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to `127.0.0.1:upstream_port`, in
    /// [`Mode::Pass`].
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        let shared = Arc::new(Shared {
            upstream: SocketAddr::from(([127, 0, 0, 1], upstream_port)),
            port,
            mode: AtomicU8::new(MODE_PASS),
            per_thousand: AtomicU64::new(0),
            down_at: AtomicU64::new(0),
            went_down: Mutex::new(None),
            target: Mutex::new(None),
            kinds: Mutex::new(FAULTS.to_vec()),
            max_faults: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            rng: AtomicU64::new(seed),
            next_fault: AtomicU64::new(0),
            faults: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
        });
        let s = shared.clone();
        let acceptor = thread::Builder::new()
            .name("fault-proxy-accept".into())
            .spawn(move || accept_loop(s, listener))
            .expect("spawn the fault proxy");
        FaultProxy {
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The proxy's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.shared.port
    }

    /// `http://127.0.0.1:PORT`, to use as the storage endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        match self.shared.mode.load(Ordering::SeqCst) {
            MODE_FLAKY => Mode::Flaky(self.shared.per_thousand.load(Ordering::SeqCst) as u32),
            MODE_DOWN => Mode::Down,
            MODE_STALL => Mode::Stall,
            _ => Mode::Pass,
        }
    }

    /// Switches to `mode`. [`Mode::Down`] and [`Mode::Stall`] reset every open connection;
    /// [`Mode::Down`] also closes the port, which the other modes open again.
    pub fn set_mode(&self, mode: Mode) {
        let code = match mode {
            Mode::Pass => MODE_PASS,
            Mode::Flaky(n) => {
                self.shared
                    .per_thousand
                    .store(n.min(1000) as u64, Ordering::SeqCst);
                MODE_FLAKY
            }
            Mode::Down => MODE_DOWN,
            Mode::Stall => MODE_STALL,
        };
        self.shared.down_at.store(0, Ordering::SeqCst);
        self.shared.mode.store(code, Ordering::SeqCst);
        if matches!(mode, Mode::Down | Mode::Stall) {
            reset_all(&self.shared);
        }
        if mode == Mode::Down {
            *self.shared.went_down.lock().unwrap() = Some(Instant::now());
            // Wait until the acceptor has closed the port, so that the caller's next
            // connection is refused.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], self.shared.port)),
                    Duration::from_millis(100),
                )
                .is_err()
                {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
            panic!("the fault proxy did not close port {}", self.shared.port);
        }
    }

    /// Switches to [`Mode::Down`] when the `n`th request from now arrives: that request and
    /// every later one fail as in [`Mode::Down`]. A later [`FaultProxy::set_mode`] cancels it.
    pub fn down_after_requests(&self, n: u64) {
        let at = self.shared.requests.load(Ordering::SeqCst) + n.max(1);
        self.shared.down_at.store(at, Ordering::SeqCst);
    }

    /// Whether the proxy is down ([`Mode::Down`], set directly or by
    /// [`FaultProxy::down_after_requests`]).
    pub fn is_down(&self) -> bool {
        self.mode() == Mode::Down
    }

    /// Limits [`Mode::Flaky`] to requests whose request line (`METHOD /path?query HTTP/1.1`)
    /// contains `target` (`None`: every request, case-insensitive), to the given kinds of
    /// fault (empty: all of them), and to `max_faults` faults in all (0: no limit).
    pub fn aim(&self, target: Option<&str>, kinds: &[Fault], max_faults: u64) {
        self.shared.max_faults.store(max_faults, Ordering::SeqCst);
        *self.shared.target.lock().unwrap() = target.map(str::to_string);
        *self.shared.kinds.lock().unwrap() = if kinds.is_empty() {
            FAULTS.to_vec()
        } else {
            kinds.to_vec()
        };
    }

    /// When the proxy last went down ([`Mode::Down`], set directly or by
    /// [`FaultProxy::down_after_requests`]); `None` if it never did.
    pub fn went_down_at(&self) -> Option<Instant> {
        *self.shared.went_down.lock().unwrap()
    }

    /// How many faults of each kind were injected so far.
    pub fn faults_by_kind(&self) -> HashMap<Fault, u64> {
        self.shared.faults.lock().unwrap().clone()
    }

    /// How many faults were injected so far, of every kind.
    pub fn faults(&self) -> u64 {
        self.shared.faults.lock().unwrap().values().sum()
    }

    /// How many HTTP requests the proxy has seen (in the modes that read them).
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// How many client connections the proxy has accepted.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for (_, s) in self.shared.open.lock().unwrap().drain() {
            abort(&s);
        }
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

/// Resets every open client connection.
fn reset_all(shared: &Shared) {
    let open: Vec<TcpStream> = shared
        .open
        .lock()
        .unwrap()
        .drain()
        .map(|(_, s)| s)
        .collect();
    for s in open {
        abort(&s);
    }
}

/// Resets a connection: no lingering, so the final close sends RST, and a shutdown of the
/// reading side to wake the thread blocked on it (which then drops its handle).
fn abort(s: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a correctly sized option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = s.shutdown(Shutdown::Read);
}

/// Accepts connections until the proxy is dropped, closing and reopening the port as the mode
/// asks.
fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let mut listener = Some(listener);
    if let Some(l) = &listener {
        l.set_nonblocking(true).expect("non-blocking listener");
    }
    let mut next_id = 0u64;
    while !shared.stop.load(Ordering::SeqCst) {
        let mode = shared.mode.load(Ordering::SeqCst);
        if mode == MODE_DOWN {
            listener = None;
            thread::sleep(Duration::from_millis(5));
            continue;
        }
        let Some(l) = &listener else {
            match TcpListener::bind(("127.0.0.1", shared.port)) {
                Ok(l) => {
                    l.set_nonblocking(true).expect("non-blocking listener");
                    listener = Some(l);
                }
                Err(_) => thread::sleep(Duration::from_millis(20)),
            }
            continue;
        };
        match l.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                let _ = client.set_nodelay(true);
                shared.connections.fetch_add(1, Ordering::SeqCst);
                next_id += 1;
                let id = next_id;
                let s = shared.clone();
                let _ = thread::Builder::new()
                    .name("fault-proxy-conn".into())
                    .spawn(move || {
                        if mode == MODE_STALL {
                            stall(&s, id, client);
                        } else {
                            serve(&s, id, client);
                        }
                        s.open.lock().unwrap().remove(&id);
                    });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Registers `client` as open (unless the proxy is stopping).
fn register(shared: &Shared, id: u64, client: &TcpStream) -> bool {
    if shared.stop.load(Ordering::SeqCst) {
        return false;
    }
    match client.try_clone() {
        Ok(c) => {
            shared.open.lock().unwrap().insert(id, c);
            true
        }
        Err(_) => false,
    }
}

/// Holds a connection open without ever answering, discarding what arrives.
fn stall(shared: &Shared, id: u64, mut client: TcpStream) {
    if !register(shared, id, &client) {
        return;
    }
    let mut buf = [0u8; 16 * 1024];
    while let Ok(n) = client.read(&mut buf) {
        if n == 0 || shared.stop.load(Ordering::SeqCst) {
            break;
        }
    }
}

/// Relays one client connection to the upstream server, request by request.
fn serve(shared: &Shared, id: u64, client: TcpStream) {
    let Ok(upstream) = TcpStream::connect(shared.upstream) else {
        abort(&client);
        return;
    };
    let _ = upstream.set_nodelay(true);
    if !register(shared, id, &client) {
        return;
    }
    let swallow = Arc::new(AtomicBool::new(false));
    let responses = {
        let (up, cl, swallow) = (
            upstream.try_clone().expect("clone upstream"),
            client.try_clone().expect("clone client"),
            swallow.clone(),
        );
        thread::spawn(move || relay_responses(up, cl, &swallow))
    };
    let _ = relay_requests(shared, &client, &upstream, &swallow);
    // The client is gone or the connection was broken: end the other direction too.
    let _ = upstream.shutdown(Shutdown::Both);
    let _ = client.shutdown(Shutdown::Read);
    let _ = responses.join();
}

/// Copies the server's answers to the client; when `swallow` is set, the next answer is
/// dropped and both connections are reset instead.
fn relay_responses(mut upstream: TcpStream, mut client: TcpStream, swallow: &AtomicBool) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match upstream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if swallow.load(Ordering::SeqCst) {
            abort(&client);
            abort(&upstream);
            return;
        }
        if client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Write);
}

/// Reads requests from the client and forwards them, injecting faults in [`Mode::Flaky`].
/// Returns when either side closes or a fault ends the connection.
fn relay_requests(
    shared: &Shared,
    client: &TcpStream,
    upstream: &TcpStream,
    swallow: &AtomicBool,
) -> io::Result<()> {
    let mut reader = client;
    let mut up = upstream;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // Read up to the end of the request head.
        let head_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break Some(i + 4);
            }
            if buf.len() > MAX_HEAD {
                break None;
            }
            let n = reader.read(&mut chunk)?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let Some(head_end) = head_end else {
            // Not HTTP as we know it: copy the rest untouched.
            up.write_all(&buf)?;
            io::copy(&mut reader, &mut up)?;
            return Ok(());
        };
        let number = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let down_at = shared.down_at.load(Ordering::SeqCst);
        if down_at != 0 && number >= down_at {
            *shared.went_down.lock().unwrap() = Some(Instant::now());
            shared.mode.store(MODE_DOWN, Ordering::SeqCst);
            shared.down_at.store(0, Ordering::SeqCst);
            reset_all(shared);
        }
        if shared.mode.load(Ordering::SeqCst) == MODE_DOWN {
            abort(client);
            abort(upstream);
            return Ok(());
        }
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let chunked = header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: u64 = header(&head, "content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let line = head.split("\r\n").next().unwrap_or("");
        let aimed = match &*shared.target.lock().unwrap() {
            Some(t) => line.contains(&t.to_ascii_lowercase()),
            None => true,
        };
        let fault = if aimed && shared.mode.load(Ordering::SeqCst) == MODE_FLAKY {
            roll(shared)
        } else {
            None
        };
        if let Some(f) = fault {
            shared
                .faults
                .lock()
                .unwrap()
                .entry(f)
                .and_modify(|n| *n += 1)
                .or_insert(1);
        }
        if chunked {
            // No framing to cut at: only a reset is possible, and then the rest is copied.
            if fault.is_some() {
                abort(client);
                abort(upstream);
                return Ok(());
            }
            up.write_all(&buf)?;
            io::copy(&mut reader, &mut up)?;
            return Ok(());
        }
        let body_have = (buf.len() - head_end) as u64;
        match fault {
            None => {
                up.write_all(&buf[..head_end])?;
                let rest = forward_body(&mut reader, &mut up, &buf[head_end..], length)?;
                buf = rest;
            }
            Some(Fault::Reset) => {
                abort(client);
                abort(upstream);
                return Ok(());
            }
            Some(Fault::CutRequest) => {
                up.write_all(&buf[..head_end])?;
                let half = length / 2;
                let now = body_have.min(half) as usize;
                up.write_all(&buf[head_end..head_end + now])?;
                let mut left = half - now as u64;
                while left > 0 {
                    let want = (left as usize).min(chunk.len());
                    let n = reader.read(&mut chunk[..want])?;
                    if n == 0 {
                        break;
                    }
                    up.write_all(&chunk[..n])?;
                    left -= n as u64;
                }
                abort(client);
                abort(upstream);
                return Ok(());
            }
            Some(Fault::SlowDown) => {
                forward_body(&mut reader, &mut io::sink(), &buf[head_end..], length)?;
                let body =
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                    <Message>Please reduce your request rate (fault injected by the test \
                    proxy).</Message></Error>";
                let answer = format!(
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let mut w = client;
                w.write_all(answer.as_bytes())?;
                let _ = client.shutdown(Shutdown::Write);
                abort(upstream);
                return Ok(());
            }
            Some(Fault::LostResponse) => {
                swallow.store(true, Ordering::SeqCst);
                up.write_all(&buf[..head_end])?;
                forward_body(&mut reader, &mut up, &buf[head_end..], length)?;
                // The response thread resets both sides when the answer arrives; wait for it
                // (the client sends nothing more until then).
                let mut rest = [0u8; 1];
                let _ = reader.read(&mut rest);
                return Ok(());
            }
        }
    }
}

/// Forwards a body of `length` bytes, of which `have` already arrived; returns the bytes read
/// past its end (the start of the next request).
fn forward_body(
    reader: &mut &TcpStream,
    out: &mut impl Write,
    have: &[u8],
    length: u64,
) -> io::Result<Vec<u8>> {
    if have.len() as u64 >= length {
        out.write_all(&have[..length as usize])?;
        return Ok(have[length as usize..].to_vec());
    }
    out.write_all(have)?;
    let mut left = length - have.len() as u64;
    let mut chunk = vec![0u8; 64 * 1024];
    while left > 0 {
        let want = (left as usize).min(chunk.len());
        let n = reader.read(&mut chunk[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        out.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    Ok(Vec::new())
}

/// Whether this request gets a fault, and which one (the kinds take turns).
fn roll(shared: &Shared) -> Option<Fault> {
    let mut z = shared
        .rng
        .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let max = shared.max_faults.load(Ordering::SeqCst);
    let done: u64 = shared.faults.lock().unwrap().values().sum();
    if (max == 0 || done < max) && z % 1000 < shared.per_thousand.load(Ordering::SeqCst) {
        let i = shared.next_fault.fetch_add(1, Ordering::SeqCst) as usize;
        let kinds = shared.kinds.lock().unwrap();
        Some(kinds[i % kinds.len()])
    } else {
        None
    }
}

/// The value of header `name` in a lower-cased request head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

/// The position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-request-per-connection HTTP server answering `200 ok` with the request's length.
    fn echo_server() -> (u16, Arc<AtomicU64>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { continue };
                let s = s.clone();
                thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = find(&buf, b"\r\n\r\n") else {
                            match c.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = header(&head, "content-length")
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            match c.read(&mut chunk) {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        s.fetch_add(1, Ordering::SeqCst);
                        let body = len.to_string();
                        let _ = write!(
                            c,
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        buf.drain(..end + 4 + len);
                    }
                });
            }
        });
        (port, seen)
    }

    /// Sends `n` keep-alive requests on one connection; the answers that came back whole.
    fn send(port: u16, n: usize) -> usize {
        let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
            return 0;
        };
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut ok = 0;
        for _ in 0..n {
            let body = vec![b'x'; 1000];
            let req = "PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
            if c.write_all(req.as_bytes()).is_err() || c.write_all(&body).is_err() {
                return ok;
            }
            let mut got = Vec::new();
            let mut chunk = [0u8; 1024];
            while !got.ends_with(b"\r\n\r\n1000") {
                match c.read(&mut chunk) {
                    Ok(0) | Err(_) => return ok,
                    Ok(k) => got.extend_from_slice(&chunk[..k]),
                }
                if got.starts_with(b"HTTP/1.1 503") {
                    return ok;
                }
            }
            ok += 1;
        }
        ok
    }

    #[test]
    fn modes_pass_break_refuse_and_stall() {
        let (port, seen) = echo_server();
        let proxy = FaultProxy::start(port);
        assert_eq!(send(proxy.port(), 20), 20);
        assert_eq!(seen.load(Ordering::SeqCst), 20);
        assert_eq!(proxy.requests(), 20);
        assert_eq!(proxy.faults(), 0);

        proxy.set_mode(Mode::Flaky(500));
        let mut ok = 0;
        for _ in 0..40 {
            ok += send(proxy.port(), 5);
        }
        let kinds = proxy.faults_by_kind();
        assert!(proxy.faults() > 10, "{kinds:?}");
        assert_eq!(
            kinds.len(),
            4,
            "every kind of fault was injected: {kinds:?}"
        );
        assert!(ok > 0 && ok < 200, "{ok} requests got through");

        proxy.set_mode(Mode::Down);
        let refused = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap_err();
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);

        proxy.set_mode(Mode::Stall);
        let start = Instant::now();
        let mut c = loop {
            if let Ok(c) = TcpStream::connect(("127.0.0.1", proxy.port())) {
                break c;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "port not reopened"
            );
            thread::sleep(Duration::from_millis(10));
        };
        c.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let err = c.read(&mut [0u8; 16]).unwrap_err();
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err}"
        );

        proxy.set_mode(Mode::Pass);
        let start = Instant::now();
        while send(proxy.port(), 3) != 3 {
            assert!(start.elapsed() < Duration::from_secs(5), "not back to pass");
            thread::sleep(Duration::from_millis(10));
        }
    }
}
