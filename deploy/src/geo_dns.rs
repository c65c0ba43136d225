//! The origin zone's authoritative DNS (`geo-router dns`): answers
//! `origin.{region}.{apex}` with the region's healthy api instances, which
//! it health-checks itself from the topology's port rule.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::process::sibling_binary;

/// The command that serves the zone on `port` (UDP and TCP).
pub fn command(topology_file: &Path, port: u16) -> Result<Command> {
    let mut cmd = Command::new(sibling_binary("geo-router")?);
    cmd.arg("dns")
        .arg("--topology")
        .arg(topology_file)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    Ok(cmd)
}

/// Ready when an SOA query for the apex, over TCP, gets an answer with
/// RCODE 0 (NOERROR).
pub async fn probe(port: u16, apex: &str) -> Result<()> {
    let query = soa_query(apex);
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut framed = (query.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&query);
        stream.write_all(&framed).await?;
        let mut len = [0u8; 2];
        stream.read_exact(&mut len).await?;
        let mut answer = vec![0u8; u16::from_be_bytes(len) as usize];
        stream.read_exact(&mut answer).await?;
        anyhow::Ok(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .context("no DNS answer in 2 s")??;
    if answer.len() < 12 || answer[..2] != query[..2] {
        bail!("not an answer to our query");
    }
    let rcode = answer[3] & 0x0f;
    if rcode != 0 {
        bail!("SOA {apex} answered RCODE {rcode}");
    }
    Ok(())
}

/// A minimal DNS query (RFC 1035 §4.1): header with one question, `apex` IN SOA.
fn soa_query(apex: &str) -> Vec<u8> {
    let mut q = vec![0xcb, 0x01, 0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in apex.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&[0, 6, 0, 1]); // QTYPE SOA, QCLASS IN
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_query_is_well_formed() {
        let q = soa_query("cityboard.localhost");
        assert_eq!(&q[4..6], &[0, 1], "one question");
        assert_eq!(q[12], 9);
        assert_eq!(&q[13..22], b"cityboard");
        assert_eq!(&q[q.len() - 4..], &[0, 6, 0, 1]);
    }
}
