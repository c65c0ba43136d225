//! The edge's KV service (`cityboard edge-kv`, the `cityboard-edge-kv`
//! crate) as the stack meets it: the command that starts it, its readiness
//! check, and a client of its protocol.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use cityboard_edge_kv::METADATA_HEADER;

use crate::http;
use crate::process::sibling_binary;

/// The stack's edge-kv key (in `secrets/`): every client of the stack's
/// KV service must present it.
pub const KEY_FILE: &str = "edge-kv.key";

/// The supervised command: `cityboard edge-kv`, from the `cityboard` that
/// runs (the supervisor) or that sits beside the bench that runs; with
/// `key_file`, clients must present its key.
pub fn command(dir: &Path, port: u16, key_file: Option<&Path>) -> Result<Command> {
    let mut cmd = Command::new(sibling_binary("cityboard")?);
    cmd.arg("edge-kv")
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--dir")
        .arg(dir);
    if let Some(file) = key_file {
        cmd.arg("--key-file").arg(file);
    }
    Ok(cmd)
}

/// Ready when a one-key list answers 200 (every path is a key, so the
/// list is the one request with no side effect and no key of its own).
pub async fn probe(client: &Client) -> Result<()> {
    let response = client
        .request("GET", "/?key_count_limit=1", &[], b"")
        .await?;
    if response.status != 200 {
        bail!("KV list answered {}", response.status);
    }
    Ok(())
}

/// A client of the service, for the orchestrator and the tests (the
/// Worker reaches it through its binding instead).
#[derive(Debug, Clone)]
pub struct Client {
    /// The service's port on 127.0.0.1.
    pub port: u16,
    /// The bearer key it requires, if any.
    key: Option<String>,
}

impl Client {
    /// A client of a service that requires no key.
    pub fn new(port: u16) -> Client {
        Client { port, key: None }
    }

    /// A client presenting `key`.
    pub fn with_key(port: u16, key: String) -> Client {
        Client {
            port,
            key: Some(key),
        }
    }

    /// A client of the stack's service, with the stack's key from
    /// `secrets_dir`.
    pub fn of_stack(port: u16, secrets_dir: &Path) -> Result<Client> {
        Ok(Client::with_key(
            port,
            crate::secrets::read_secret(secrets_dir, KEY_FILE)?,
        ))
    }

    /// Any request of the protocol, with the key.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<http::Response> {
        let bearer = self.key.as_ref().map(|k| format!("Bearer {k}"));
        let mut all = headers.to_vec();
        if let Some(b) = &bearer {
            all.push(("authorization", b.as_str()));
        }
        http::request(self.port, method, path, &all, body).await
    }

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
        let response = self.request("PUT", &path, &headers, value).await?;
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
        let response = self.request("GET", &path, &[], b"").await?;
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
        let response = self.request("DELETE", &path, &[], b"").await?;
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
