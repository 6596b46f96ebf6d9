//! The link cut of the fault plan: a TCP [`Relay`] in front of one device's QEMU UART socket,
//! which closes both sides of its connection and stops listening while the link is cut.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

/// A TCP relay in front of one device's QEMU UART socket, which can cut the link.
///
/// It runs on its own thread with its own small runtime, so it works the same under the
/// demo's runtime and in a synchronous test.
#[derive(Debug)]
pub struct Relay {
    port: u16,
    cut: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    /// Listens on 127.0.0.1 (a free port) and relays each connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<Self, String> {
        let (cut, rx) = watch::channel(false);
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("link relay".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = port_tx.send(Err(format!("relay runtime: {e}")));
                        return;
                    }
                };
                rt.block_on(relay(upstream, rx, port_tx));
            })
            .map_err(|e| format!("cannot start the link relay thread: {e}"))?;
        let port = port_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| "the link relay did not start listening".to_owned())??;
        Ok(Self {
            port,
            cut,
            thread: Some(thread),
        })
    }

    /// Where the gateway connects (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the link: closes both sides of the current connection and refuses new ones.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Restores the link: listens and relays again.
    pub fn restore(&self) {
        self.cut.send_replace(false);
    }

    /// Whether the link is cut now.
    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // Closing the channel ends the relay task; its thread then ends.
        let (tx, _) = watch::channel(true);
        drop(std::mem::replace(&mut self.cut, tx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn listen(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    // The port is bound again after a cut while the closed connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], port)))?;
    socket.listen(16)
}

async fn relay(
    upstream: SocketAddr,
    mut cut: watch::Receiver<bool>,
    port_tx: std::sync::mpsc::Sender<Result<u16, String>>,
) {
    let first = match listen(0).and_then(|l| Ok((l.local_addr()?.port(), l))) {
        Ok(v) => v,
        Err(e) => {
            let _ = port_tx.send(Err(format!("the link relay cannot listen: {e}")));
            return;
        }
    };
    let port = first.0;
    let _ = port_tx.send(Ok(port));
    let mut listener = Some(first.1);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => {
                // After a cut: the same port again (retried: the old socket may linger).
                let mut tries = 0;
                loop {
                    match listen(port) {
                        Ok(l) => break l,
                        Err(e) if tries < 50 => {
                            tries += 1;
                            eprintln!("link relay: cannot listen on {port} again: {e}; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        Err(_) => return,
                    }
                }
            }
        };
        let mut pumps = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                acc = l.accept() => {
                    if let Ok((down, _)) = acc {
                        pumps.spawn(pump(down, upstream));
                    }
                }
                r = cut.wait_for(|c| *c) => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        // The cut: no listener, both sides of every connection closed.
        drop(l);
        pumps.abort_all();
        while pumps.join_next().await.is_some() {}
        if cut.wait_for(|c| !*c).await.is_err() {
            return;
        }
    }
}

async fn pump(mut down: tokio::net::TcpStream, upstream: SocketAddr) {
    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else {
        // The device is not there (rebooting): the gateway sees a closed link and reconnects.
        return;
    };
    let _ = down.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
}
