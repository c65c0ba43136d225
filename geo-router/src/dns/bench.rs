//! `geo-router bench dns`: queries/s and p99 of the server, next to a bare
//! UDP echo server on the same runtime as the baseline (the ceiling the
//! transport allows on this machine). The server runs on a single-threaded
//! runtime (one core); the load generator runs in other threads.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use super::server::{Sockets, serve};
use super::zone::{RegionAnswer, Zone};
use crate::error::{GeoError, Result};

/// Figures of one run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DnsFigures {
    /// Client threads, each with one query in flight.
    pub clients: usize,
    /// Our server: answered queries per second.
    pub qps: f64,
    /// Our server: 99th percentile latency, microseconds.
    pub p99_us: f64,
    /// Echo baseline: round trips per second.
    pub echo_qps: f64,
    /// Echo baseline: p99, microseconds.
    pub echo_p99_us: f64,
    /// `qps / echo_qps`.
    pub ratio: f64,
}

/// Runs both measurements for `duration` each.
pub fn run(clients: usize, duration: Duration) -> Result<DnsFigures> {
    let zone = Arc::new(Zone::new(
        "cityboard.localhost",
        &["us-east".into()],
        vec![],
    )?);
    zone.set_answer(
        "us-east",
        RegionAnswer {
            addrs: vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()],
            ttl: 30,
        },
    );
    let server = spawn_server(move |sockets| serve(zone, sockets))?;
    let query = {
        let mut m = Message::query();
        let name = Name::from_ascii("origin.us-east.cityboard.localhost.")
            .map_err(|e| GeoError::Dns(e.to_string()))?;
        m.add_query(Query::query(name, RecordType::A));
        m.to_vec().map_err(|e| GeoError::Dns(e.to_string()))?
    };
    let (qps, p99_us) = load(server, &query, clients, duration)?;
    let echo = spawn_server(|sockets| async move {
        let mut buf = vec![0u8; 4096];
        loop {
            if let Ok((n, peer)) = sockets.udp.recv_from(&mut buf).await {
                let _ = sockets.udp.send_to(&buf[..n], peer).await;
            }
        }
    })?;
    let (echo_qps, echo_p99_us) = load(echo, &query, clients, duration)?;
    Ok(DnsFigures {
        clients,
        qps,
        p99_us,
        echo_qps,
        echo_p99_us,
        ratio: qps / echo_qps,
    })
}

/// Starts `f` on a fresh single-threaded runtime in its own thread (left
/// running until the process exits); returns the bound address.
fn spawn_server<F, Fut>(f: F) -> Result<SocketAddr>
where
    F: FnOnce(Sockets) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(GeoError::Dns(e.to_string())));
                return;
            }
        };
        runtime.block_on(async move {
            match Sockets::bind(([127, 0, 0, 1], 0).into()).await {
                Ok(sockets) => {
                    let _ = tx.send(sockets.local_addr());
                    f(sockets).await;
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        });
    });
    rx.recv().map_err(|e| GeoError::Dns(e.to_string()))?
}

/// `clients` threads sending `query` one at a time; queries/s and p99 (µs).
fn load(
    server: SocketAddr,
    query: &[u8],
    clients: usize,
    duration: Duration,
) -> Result<(f64, f64)> {
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients.max(1) {
        let query = query.to_vec();
        handles.push(std::thread::spawn(move || -> std::io::Result<Vec<u32>> {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            socket.connect(server)?;
            socket.set_read_timeout(Some(Duration::from_millis(500)))?;
            let mut buf = [0u8; 1500];
            let mut latencies = Vec::new();
            let begin = Instant::now();
            while begin.elapsed() < duration {
                let sent = Instant::now();
                socket.send(&query)?;
                if socket.recv(&mut buf).is_ok() {
                    latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
                }
            }
            Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        let latencies = h
            .join()
            .map_err(|_| GeoError::Dns("load thread panicked".into()))?
            .map_err(|e| GeoError::Dns(e.to_string()))?;
        all.extend(latencies);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let p99 = all
        .get(all.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or(0);
    Ok((all.len() as f64 / elapsed, f64::from(p99)))
}
