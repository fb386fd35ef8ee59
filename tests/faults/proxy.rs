//! A TCP proxy on loopback that a test can cut: every connection through it is closed and its
//! port refuses connections (as a stopped server's does) until it is restored.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
};

pub struct Proxy {
    pub addr: SocketAddr,
    up: watch::Sender<bool>,
}

impl Proxy {
    /// Forwards connections to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let (up, _) = watch::channel(true);
        tokio::spawn(serve(listener, target, up.subscribe()));
        Self { addr, up }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

async fn serve(mut listener: TcpListener, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let addr = listener.local_addr().expect("proxy address");
    let state = up.clone();
    loop {
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((client, _)) => {
                        tokio::spawn(forward(client, target, state.clone()));
                    }
                    Err(_) => return,
                },
                _ = up.wait_for(|up| !*up) => break,
            }
        }
        // Closed: connections to the port are refused until the proxy is restored.
        drop(listener);
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        listener = TcpListener::bind(addr).await.expect("bind the proxy's port again");
    }
}

async fn forward(mut client: TcpStream, target: SocketAddr, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(target).await else { return };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}
