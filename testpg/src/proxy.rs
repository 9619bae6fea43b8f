//! A TCP proxy on 127.0.0.1 that can be told to stop forwarding without closing anything:
//! a network partition as a client sees it (its packets are taken and never answered, no
//! reset), then healed.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// Forwards every connection made to [`TestProxy::port`] to a target port of 127.0.0.1,
/// until [`TestProxy::black_hole`]; then holds every byte (and every close) in both
/// directions, sockets open, until [`TestProxy::heal`]. Dropping it closes every
/// connection.
///
/// ```no_run
/// let pg = fogbook_testpg::TestPostgres::start();
/// let proxy = fogbook_testpg::TestProxy::start(pg.port());
/// let url = proxy.url(&pg.url()); // the same database, through the proxy
/// proxy.black_hole(); // clients through it now wait for answers that never come
/// proxy.heal();
/// # drop(url);
/// ```
#[derive(Debug)]
pub struct TestProxy {
    port: u16,
    target: u16,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Whether forwarding is stopped.
    frozen: Mutex<bool>,
    thawed: Condvar,
    closing: AtomicBool,
    /// Every socket of the proxy, to close them all on drop.
    sockets: Mutex<Vec<TcpStream>>,
    /// Bytes forwarded, both directions.
    forwarded: AtomicU64,
    accepted: AtomicU64,
    /// Directions of connections still being forwarded (two per connection).
    pumping: AtomicU64,
}

impl Shared {
    /// Returns once forwarding is allowed (at once, when it is not stopped).
    fn wait_open(&self) {
        let frozen = self.frozen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _open = self
            .thawed
            .wait_while(frozen, |frozen| *frozen)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }

    fn keep(&self, socket: &TcpStream) {
        if let Ok(clone) = socket.try_clone() {
            self.sockets
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(clone);
        }
    }
}

impl TestProxy {
    /// Starts forwarding a free port of 127.0.0.1 to `target` (a port of 127.0.0.1).
    pub fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("the proxy binds a free port of 127.0.0.1");
        let port = listener.local_addr().expect("the proxy's port").port();
        let shared = Arc::new(Shared::default());
        let accepting = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.closing.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                accepting.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                accepting.keep(&client);
                accepting.keep(&server);
                for (from, to) in [(&client, &server), (&server, &client)] {
                    let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) else {
                        continue;
                    };
                    let shared = accepting.clone();
                    shared.pumping.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        pump(from, to, &shared);
                        shared.pumping.fetch_sub(1, Ordering::SeqCst);
                    });
                }
            }
        });
        Self { port, target, shared }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `url` (of the server on the target port) made to go through the proxy.
    pub fn url(&self, url: &str) -> String {
        let direct = format!("127.0.0.1:{}/", self.target);
        assert!(url.contains(&direct), "{url} does not name 127.0.0.1:{}", self.target);
        url.replacen(&direct, &format!("127.0.0.1:{}/", self.port), 1)
    }

    /// Stops forwarding: bytes and closes are held, in both directions, sockets open; new
    /// connections are accepted and get nothing either.
    pub fn black_hole(&self) {
        *self
            .shared
            .frozen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
    }

    /// Forwards again, what was held first.
    pub fn heal(&self) {
        *self
            .shared
            .frozen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
        self.shared.thawed.notify_all();
    }

    /// How many bytes were forwarded so far (both directions).
    pub fn forwarded(&self) -> u64 {
        self.shared.forwarded.load(Ordering::SeqCst)
    }

    /// How many connections are still open in at least one direction, times two at most
    /// (each direction counts once): 0 once every client and server closed its end and
    /// what was held was delivered.
    pub fn open_directions(&self) -> u64 {
        self.shared.pumping.load(Ordering::SeqCst)
    }

    /// How many connections were accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.shared.closing.store(true, Ordering::SeqCst);
        self.heal();
        for socket in self
            .shared
            .sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .drain(..)
        {
            let _ = socket.shutdown(Shutdown::Both);
        }
        // Wakes the accepting thread so it sees `closing`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to`, holding each chunk (and the end) while the proxy is stopped.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buf).unwrap_or(0);
        shared.wait_open();
        if n == 0 || shared.closing.load(Ordering::SeqCst) {
            let _ = to.shutdown(Shutdown::Write);
            return;
        }
        let Some(chunk) = buf.get(..n) else { return };
        if to.write_all(chunk).is_err() {
            let _ = from.shutdown(Shutdown::Read);
            return;
        }
        shared.forwarded.fetch_add(n as u64, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader};
    use std::time::Duration;

    use super::*;

    /// An echo server on a free port: each line sent comes back.
    fn echo() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut out = conn.try_clone().unwrap();
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        if writeln!(out, "{line}").is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    /// Lines go through; black-holed, a line gets no answer (the read times out, the socket
    /// stays open); healed, the held line's answer arrives, and new lines go through.
    #[test]
    fn a_black_hole_holds_everything_until_healed() {
        let proxy = TestProxy::start(echo());
        let conn = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut writer = conn;
        let mut line = String::new();
        writeln!(writer, "one").unwrap();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "one\n");

        proxy.black_hole();
        writeln!(writer, "two").unwrap();
        reader
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        line.clear();
        let held = reader.read_line(&mut line);
        assert!(
            held.is_err() && line.is_empty(),
            "no answer while black-holed: {held:?} {line:?}"
        );

        proxy.heal();
        reader.get_ref().set_read_timeout(None).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "two\n", "the held line is forwarded once healed");
        writeln!(writer, "three").unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "three\n");
        assert!(proxy.forwarded() >= 24, "{}", proxy.forwarded());
    }
}
