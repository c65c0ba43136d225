//! Moving DNS messages over UDP and TCP; all answering is in [`Zone`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::zone::{Transport, Zone};
use crate::error::{GeoError, Result};

/// How long an idle TCP connection is kept (RFC 7766 suggests seconds).
const TCP_IDLE: Duration = Duration::from_secs(10);

/// Sockets bound to one address, UDP and TCP on the same port.
#[derive(Debug)]
pub struct Sockets {
    /// The UDP socket.
    pub udp: UdpSocket,
    /// The TCP listener.
    pub tcp: TcpListener,
}

impl Sockets {
    /// Binds UDP and TCP on `addr`. Port 0 picks a free UDP port and binds TCP to the same one.
    pub async fn bind(addr: SocketAddr) -> Result<Self> {
        // With port 0 the kernel picks a free UDP port, and the same TCP port
        // may be taken by someone else: pick again a few times rather than
        // fail (with a fixed port, a taken TCP port is the caller's error).
        let attempts = if addr.port() == 0 { 8 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(|e| GeoError::Dns(format!("binding UDP {addr}: {e}")))?;
            let bound = udp.local_addr().map_err(|e| GeoError::Dns(e.to_string()))?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => return Ok(Sockets { udp, tcp }),
                Err(e) => last = Some(GeoError::Dns(format!("binding TCP {bound}: {e}"))),
            }
        }
        Err(last.unwrap_or_else(|| GeoError::Dns(format!("binding {addr}: no attempt made"))))
    }

    /// The bound address (same port for both).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.udp
            .local_addr()
            .map_err(|e| GeoError::Dns(e.to_string()))
    }
}

/// Serves until the task is dropped.
pub async fn serve(zone: Arc<Zone>, sockets: Sockets) {
    let Sockets { udp, tcp } = sockets;
    let tcp_zone = zone.clone();
    let tcp_task = tokio::spawn(async move {
        loop {
            match tcp.accept().await {
                Ok((stream, _)) => {
                    let zone = tcp_zone.clone();
                    tokio::spawn(async move { serve_tcp(zone, stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    let _tcp_task = AbortOnDrop(tcp_task);
    let mut buf = vec![0u8; 4096];
    loop {
        let (len, peer) = match udp.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on Linux; keep going.
                tracing::debug!(error = %e, "UDP receive failed");
                continue;
            }
        };
        if let Some(response) = zone.respond(&buf[..len], Transport::Udp)
            && let Err(e) = udp.send_to(&response, peer).await
        {
            tracing::debug!(error = %e, %peer, "UDP send failed");
        }
    }
}

/// Stops the TCP accept loop when the UDP loop's future is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One TCP connection: length-prefixed messages until EOF, error or idle.
async fn serve_tcp(zone: Arc<Zone>, mut stream: TcpStream) {
    loop {
        let mut len = [0u8; 2];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let mut message = vec![0u8; usize::from(u16::from_be_bytes(len))];
        match tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut message)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let Some(response) = zone.respond(&message, Transport::Tcp) else {
            return;
        };
        let Ok(out_len) = u16::try_from(response.len()) else {
            return;
        };
        let mut out = Vec::with_capacity(response.len() + 2);
        out.extend_from_slice(&out_len.to_be_bytes());
        out.extend_from_slice(&response);
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}
