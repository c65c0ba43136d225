//! The benchmarks' keep-alive HTTP/1.1 client: one connection, requests one
//! after another, each signed as the edge forwards it when given a key.
//!
//! Hand-made on purpose, the one raw HTTP client left: it is part of what
//! the scenarios measure, and a client library would add its own work per
//! request (a pool to check out of, header maps to build, a body stream to
//! poll) to every latency figure, and change it between library versions.
//! Here a request is one buffer written and one answer read, the same in
//! every run, so the figures compare the server and its baseline alone.
//! Setup and probes use `cityboard_deploy::http` (reqwest).

use anyhow::{Context, Result};
use cityboard_protocol::sign;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The visitor address the bench's requests claim (the edge's
/// `X-Cityboard-Client-IP`).
pub const CLIENT_IP: &str = "127.0.0.1";

/// An answer: status, the headers the benches read, the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// `Location`, if any.
    pub location: Option<String>,
    /// The body (Content-Length or chunked).
    pub body: Vec<u8>,
}

/// A keep-alive connection to 127.0.0.1.
pub struct Conn {
    stream: BufReader<TcpStream>,
}

/// The edge's headers for a request of `method host path` with `body` and
/// `content_type` (empty: none): forwarded host, city (the host's first
/// label), client IP, and the signature over them (a fresh nonce, signed
/// now).
pub fn edge_headers(
    key: &sign::Key,
    method: &str,
    host: &str,
    path: &str,
    body: &[u8],
    content_type: &str,
) -> String {
    let city = host.split('.').next().unwrap_or_default();
    let signed = sign::Request {
        method,
        host,
        path_and_query: path,
        client_ip: CLIENT_IP,
        city,
        body_sha256: sign::body_sha256(body),
        content_type,
    };
    let now = chrono::Utc::now().timestamp();
    let nonce = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}: {host}\r\n{}: {city}\r\n{}: {CLIENT_IP}\r\n{}: {}\r\n",
        sign::FORWARDED_HOST_HEADER,
        sign::CITY_HEADER,
        sign::CLIENT_IP_HEADER,
        sign::SIGNATURE_HEADER,
        sign::sign(key, &signed, now, &nonce)
    )
}

impl Conn {
    /// Connects to `port` on the loopback.
    pub async fn open(port: u16) -> Result<Conn> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream: BufReader::new(stream),
        })
    }

    /// `GET path` for `host` asking for JSON; with a key, signed as the
    /// edge forwards it. Returns status and body.
    pub async fn get(
        &mut self,
        path: &str,
        host: &str,
        key: Option<&sign::Key>,
    ) -> Result<(u16, Vec<u8>)> {
        let a = self
            .send("GET", path, host, &["accept: application/json"], b"", key)
            .await?;
        Ok((a.status, a.body))
    }

    /// `method path` for `host` with `headers` (full `name: value` lines)
    /// and `body`; with a key, signed as the edge forwards it.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        host: &str,
        headers: &[&str],
        body: &[u8],
        key: Option<&sign::Key>,
    ) -> Result<Answer> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        if !body.is_empty() || method != "GET" {
            req.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        if let Some(key) = key {
            let content_type = headers
                .iter()
                .find_map(|h| {
                    let (name, value) = h.split_once(':')?;
                    name.trim()
                        .eq_ignore_ascii_case("content-type")
                        .then_some(value)
                })
                .unwrap_or("");
            req.push_str(&edge_headers(key, method, host, path, body, content_type));
        }
        req.push_str("\r\n");
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.get_mut().write_all(&bytes).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> Result<Answer> {
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("not an HTTP status line: {line:?}"))?;
        let mut length = 0usize;
        let mut chunked = false;
        let mut location = None;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let v = v.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.parse().context("content-length")?;
                } else if k.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = v.eq_ignore_ascii_case("chunked");
                } else if k.eq_ignore_ascii_case("location") {
                    location = Some(v.to_string());
                }
            }
        }
        let body = if chunked {
            self.read_chunks().await?
        } else {
            let mut body = vec![0; length];
            self.stream.read_exact(&mut body).await?;
            body
        };
        Ok(Answer {
            status,
            location,
            body,
        })
    }

    async fn read_chunks(&mut self) -> Result<Vec<u8>> {
        let mut body = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let size_text = line.trim_end().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text.trim(), 16)
                .with_context(|| format!("bad chunk size {size_text:?}"))?;
            if size == 0 {
                // Trailers (none expected) up to the empty line.
                loop {
                    line.clear();
                    self.stream.read_line(&mut line).await?;
                    if line.trim_end().is_empty() {
                        return Ok(body);
                    }
                }
            }
            let start = body.len();
            body.resize(start + size + 2, 0);
            self.stream.read_exact(&mut body[start..]).await?;
            body.truncate(start + size);
        }
    }
}
