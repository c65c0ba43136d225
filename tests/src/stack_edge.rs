//! The shared stack's edge as a visitor meets it: requests to city hosts
//! on the edge's port, and (for checks) its KV service read directly.

use cityboard_deploy::secrets::read_secret;
use cityboard_protocol::kv::{PostMeta, post_key};
use cityboard_protocol::sign::Key;

use crate::{EdgeRequests, Home, StackState, shared_home, state};

/// The shared stack's edge: its port, the apex, the stack's description.
pub struct StackEdge {
    /// The edge's (workerd's) port.
    pub port: u16,
    /// The apex domain.
    pub apex: String,
    /// The stack's state file, read once.
    pub state: StackState,
    /// The stack's home.
    pub home: Home,
}

impl StackEdge {
    /// The edge of the stack `deploy/test` started.
    pub fn shared() -> StackEdge {
        let root = shared_home();
        let state = state(&root);
        let port = state
            .component("edge")
            .expect("the stack has an edge component")
            .port;
        StackEdge {
            port,
            apex: state.apex.clone(),
            home: Home::new(&root).expect("home"),
            state,
        }
    }

    /// `Host` of a city (or of the apex), with the edge's port.
    pub fn host(&self, label: Option<&str>) -> String {
        match label {
            Some(city) => format!("{city}.{}:{}", self.apex, self.port),
            None => format!("{}:{}", self.apex, self.port),
        }
    }

    /// A secret of the stack's secrets directory.
    pub fn secret(&self, file: &str) -> Key {
        Key::new(
            read_secret(&self.home.secrets_dir(), file)
                .expect("secret")
                .into_bytes(),
        )
    }

    /// The api port of `region`.
    pub fn api_port(&self, region: &str) -> u16 {
        self.state
            .regions
            .iter()
            .find(|r| r.name == region)
            .unwrap_or_else(|| panic!("no region {region}"))
            .api_port
    }

    /// The region serving `city`.
    pub fn region_of(&self, city: &str) -> String {
        self.state
            .regions
            .iter()
            .find(|r| r.shards.iter().any(|s| s.cities.iter().any(|c| c == city)))
            .unwrap_or_else(|| panic!("{city} is not served"))
            .name
            .clone()
    }

    /// What the edge's KV holds for a post: its metadata, or `None`.
    pub async fn kv_meta(&self, post_id: u64) -> Option<PostMeta> {
        let port = self
            .state
            .component("edge-kv")
            .expect("the stack has an edge-kv component")
            .port;
        let path = format!("/{}?urlencoded=true", post_key(post_id));
        let r = cityboard_deploy::edge_kv::Client::of_stack(port, &self.home.secrets_dir())
            .expect("the stack's edge-kv key")
            .request("GET", &path, &[], b"")
            .await
            .expect("edge-kv answers");
        if r.status == 404 {
            return None;
        }
        assert_eq!(r.status, 200, "edge-kv GET {path}: {}", r.text());
        let meta = r
            .header(cityboard_edge_kv::METADATA_HEADER)
            .expect("a post entry has metadata");
        Some(serde_json::from_str(meta).expect("post metadata"))
    }
}

/// Requests name their `Host` in full, port included (see
/// [`StackEdge::host`]).
impl EdgeRequests for StackEdge {
    fn port(&self) -> u16 {
        self.port
    }

    fn host_header(&self, host: &str) -> String {
        host.to_string()
    }

    fn failure_context(&self) -> String {
        String::new()
    }
}
