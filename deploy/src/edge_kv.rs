//! The edge's KV service (`cityboard edge-kv`, the `cityboard-edge-kv`
//! crate) as the stack meets it: the command that starts it, its readiness
//! check, and a client of its protocol.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use cityboard_edge_kv::METADATA_HEADER;

use crate::http::{self, http_get_status};
use crate::process::sibling_binary;

/// The supervised command: `cityboard edge-kv`, from the `cityboard` that
/// runs (the supervisor) or that sits beside the bench that runs.
pub fn command(dir: &Path, port: u16) -> Result<Command> {
    let mut cmd = Command::new(sibling_binary("cityboard")?);
    cmd.arg("edge-kv")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--dir")
        .arg(dir);
    Ok(cmd)
}

/// Ready when a one-key list answers 200 (every path is a key, so the
/// list is the one request with no side effect and no key of its own).
pub async fn probe(port: u16) -> Result<()> {
    let status = http_get_status(port, "/?key_count_limit=1").await?;
    if status != 200 {
        bail!("KV list answered {status}");
    }
    Ok(())
}

/// A client of the service, for the orchestrator and the tests (the
/// Worker reaches it through its binding instead).
#[derive(Debug, Clone, Copy)]
pub struct Client {
    /// The service's port on 127.0.0.1.
    pub port: u16,
}

impl Client {
    /// `put(key, value, {metadata, expirationTtl})`.
    pub async fn put(
        &self,
        key: &str,
        value: &[u8],
        metadata: Option<&serde_json::Value>,
        expiration_ttl: Option<u64>,
    ) -> Result<()> {
        let mut path = format!("/{}?urlencoded=true", encode_key(key));
        if let Some(ttl) = expiration_ttl {
            path.push_str(&format!("&expiration_ttl={ttl}"));
        }
        let metadata = metadata.map(|m| m.to_string());
        let mut headers = Vec::new();
        if let Some(m) = &metadata {
            headers.push((METADATA_HEADER, m.as_str()));
        }
        let response = http::request(self.port, "PUT", &path, &headers, value).await?;
        if response.status != 200 {
            bail!(
                "KV put {key}: {} {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        Ok(())
    }

    /// `getWithMetadata(key)`: `None` when there is no such live key.
    pub async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, Option<serde_json::Value>)>> {
        let path = format!("/{}?urlencoded=true", encode_key(key));
        let response = http::request(self.port, "GET", &path, &[], b"").await?;
        match response.status {
            404 => Ok(None),
            200 => {
                let metadata = response
                    .header(METADATA_HEADER)
                    .map(serde_json::from_str)
                    .transpose()
                    .context("metadata is not JSON")?;
                Ok(Some((response.body, metadata)))
            }
            other => bail!(
                "KV get {key}: {other} {}",
                String::from_utf8_lossy(&response.body)
            ),
        }
    }

    /// `delete(key)`.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = format!("/{}?urlencoded=true", encode_key(key));
        let response = http::request(self.port, "DELETE", &path, &[], b"").await?;
        if response.status != 200 {
            bail!("KV delete {key}: {}", response.status);
        }
        Ok(())
    }
}

/// A key as one path segment (what workerd sends: `encodeURIComponent`).
pub fn encode_key(key: &str) -> String {
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'!')
        .remove(b'~')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    percent_encoding::utf8_percent_encode(key, COMPONENT).to_string()
}
