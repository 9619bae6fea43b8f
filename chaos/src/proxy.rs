//! A TCP proxy the runner owns between one worker and PostgreSQL, that can stop forwarding
//! (a black hole: the worker's connections stay open, nothing reaches either side, new
//! connections are accepted and held) and later resume (what was held is delivered: a
//! network partition that heals). A worker cut off this way keeps running and believes it
//! still holds its leases; the other workers take its runs over once they expire.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a blocked read or wait lasts before the proxy looks at its stop flag again.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    changed: Condvar,
    stop: AtomicBool,
}

impl Gate {
    /// Waits until the gate is open (true) or the proxy stops (false).
    fn wait_open(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return false;
            }
            if *open {
                return true;
            }
            open = self
                .changed
                .wait_timeout(open, TICK)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn set(&self, value: bool) {
        *self.open.lock().unwrap_or_else(PoisonError::into_inner) = value;
        self.changed.notify_all();
    }
}

/// A proxy on a free loopback port forwarding to `127.0.0.1:upstream`.
#[derive(Debug)]
pub(crate) struct Proxy {
    pub(crate) port: u16,
    gate: Arc<Gate>,
    accept: Option<JoinHandle<()>>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16) -> Result<Proxy, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("proxy: bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let gate = Arc::new(Gate {
            open: Mutex::new(true),
            ..Gate::default()
        });
        let g = gate.clone();
        let accept = std::thread::spawn(move || {
            while !g.stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let g = g.clone();
                        std::thread::spawn(move || connect(&g, client, upstream));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(10)),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Proxy {
            port,
            gate,
            accept: Some(accept),
        })
    }

    /// Stops forwarding: nothing more passes either way until [`Proxy::resume`].
    pub(crate) fn black_hole(&self) {
        self.gate.set(false);
    }

    /// Forwards again, delivering what was held.
    pub(crate) fn resume(&self) {
        self.gate.set(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.gate.stop.store(true, Ordering::SeqCst);
        self.gate.changed.notify_all();
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One client connection: held while the gate is shut, then joined to a new upstream one.
fn connect(gate: &Arc<Gate>, client: TcpStream, upstream: u16) {
    let _ = client.set_nonblocking(false);
    if !gate.wait_open() {
        return;
    }
    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    let g = gate.clone();
    let up = std::thread::spawn(move || pump(&g, client, server));
    pump(gate, s2, c2);
    let _ = up.join();
}

/// Copies `from` to `to` while the gate is open; on a shut gate it neither reads nor writes.
fn pump(gate: &Gate, mut from: TcpStream, mut to: TcpStream) {
    let _ = from.set_read_timeout(Some(TICK));
    let mut buf = vec![0_u8; 16 * 1024];
    loop {
        if !gate.wait_open() {
            break;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                // Read just before the gate shut: held until it opens again.
                if !gate.wait_open() || to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    use super::Proxy;

    /// An echo server on a free port: returns its port.
    fn echo() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { return };
                std::thread::spawn(move || {
                    let mut buf = [0_u8; 64];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    #[test]
    fn a_black_hole_holds_everything_until_it_is_lifted() {
        let proxy = Proxy::start(echo()).unwrap();
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        let mut buf = [0_u8; 5];
        c.write_all(b"hello").unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hello");

        proxy.black_hole();
        c.write_all(b"again").unwrap();
        let err = c.read(&mut buf).expect_err("nothing passes a black hole");
        assert!(
            matches!(
                err.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{err}"
        );
        // A new connection is accepted but held too.
        let mut d = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        d.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        d.write_all(b"later").unwrap();
        assert!(d.read(&mut buf).is_err(), "a held connection answered");

        proxy.resume();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        d.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"again", "what was held is delivered once the path heals");
        d.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"later");
    }
}
