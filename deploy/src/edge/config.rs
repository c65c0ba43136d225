//! The bindings of the stack's edge Worker, derived from the topology: the
//! values the Worker's contract names, written into workerd's config by
//! [`super::workerd`].

use cityboard_protocol::bindings::CityBinding;
use cityboard_protocol::kv::{Route, route_key};

use super::workerd::{Binding, Workerd, render};
use crate::topology::Topology;

/// Environment variable of the workerd process that holds `FORWARD_KEY`.
pub const FORWARD_KEY_ENV: &str = "CITYBOARD_EDGE_FORWARD_KEY";
/// Environment variable of the workerd process that holds `KV_ROUTE_KEY`.
pub const KV_ROUTE_KEY_ENV: &str = "CITYBOARD_EDGE_KV_ROUTE_KEY";

/// The origin base URL of each region of the local stack.
pub fn origins(topology: &Topology) -> serde_json::Map<String, serde_json::Value> {
    topology
        .regions
        .iter()
        .enumerate()
        .map(|(r, region)| {
            (
                region.name.clone(),
                format!("http://127.0.0.1:{}", topology.region_ports(r).api).into(),
            )
        })
        .collect()
}

/// Every served city with its region, in topology order.
pub fn cities(topology: &Topology) -> Vec<CityBinding> {
    topology
        .regions
        .iter()
        .flat_map(|region| {
            region.shards.iter().flat_map(move |shard| {
                shard.cities.iter().map(move |c| CityBinding {
                    slug: c.slug.clone(),
                    name: c.name.clone(),
                    country: c.country.clone(),
                    lat: c.lat,
                    lon: c.lon,
                    region: region.name.clone(),
                })
            })
        })
        .collect()
}

/// `route:{city}` for every city: what `up` writes into KV, so the Worker
/// learns routes from KV (and a move only has to rewrite one key).
pub fn routes(topology: &Topology) -> Vec<(String, Route)> {
    let origins = origins(topology);
    cities(topology)
        .into_iter()
        .map(|c| {
            let origin = origins
                .get(&c.region)
                .and_then(|o| o.as_str())
                .unwrap_or_default()
                .to_string();
            (
                route_key(&c.slug),
                Route {
                    region: c.region,
                    origin,
                },
            )
        })
        .collect()
}

/// What the generated config needs besides the topology.
#[derive(Debug, Clone)]
pub struct EdgeConfig<'a> {
    /// `host:port` of the Worker's socket.
    pub listen: String,
    /// `host:port` of the KV service.
    pub kv: String,
    /// The key the KV service requires (the stack's `edge-kv.key`).
    pub kv_key: Option<String>,
    /// File names of the Worker's modules, relative to the config file;
    /// the first is the entry module.
    pub modules: &'a [String],
    /// Apex host.
    pub apex: &'a str,
    /// `CITIES` JSON.
    pub cities: String,
    /// `ORIGINS` JSON.
    pub origins: String,
    /// Extra bindings (e.g. `TEST_MODE` in a test's own runtime).
    pub extra: &'a [Binding<'a>],
}

impl EdgeConfig<'_> {
    /// The workerd config text: the edge Worker with its contract's
    /// bindings, then `extra`.
    pub fn render(&self) -> String {
        let mut bindings = vec![
            Binding::KvNamespace("PAGES"),
            Binding::Text("APEX", self.apex),
            Binding::Text("CITIES", &self.cities),
            Binding::Text("ORIGINS", &self.origins),
            Binding::FromEnvironment("FORWARD_KEY", FORWARD_KEY_ENV),
            Binding::FromEnvironment("KV_ROUTE_KEY", KV_ROUTE_KEY_ENV),
        ];
        bindings.extend_from_slice(self.extra);
        render(&Workerd {
            listen: &self.listen,
            kv: &self.kv,
            kv_key: self.kv_key.as_deref(),
            modules: self.modules,
            bindings: &bindings,
            edge_network: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("topology.toml");
        Topology::load(&path).unwrap()
    }

    #[test]
    fn bindings_follow_the_topology() {
        let t = topology();
        let cities = cities(&t);
        assert_eq!(cities.len(), 8);
        assert_eq!(cities[0].slug, "newyork");
        assert_eq!(cities[0].region, "us-east");
        assert_eq!(cities[7].region, "eu-west");
        let origins = origins(&t);
        assert_eq!(origins["us-east"], "http://127.0.0.1:17103");
        assert_eq!(origins["eu-west"], "http://127.0.0.1:17203");
        let routes = routes(&t);
        assert_eq!(routes[4].0, "route:london");
        assert_eq!(
            routes[4].1,
            Route {
                region: "eu-west".into(),
                origin: "http://127.0.0.1:17203".into()
            }
        );
    }

    #[test]
    fn the_config_quotes_json_and_names_every_binding() {
        let t = topology();
        let modules = [
            "edge/index.js".to_string(),
            "edge/index_bg.wasm".to_string(),
        ];
        let text = EdgeConfig {
            listen: "127.0.0.1:17002".into(),
            kv: "127.0.0.1:17003".into(),
            kv_key: Some("k3y".into()),
            modules: &modules,
            apex: &t.apex,
            cities: serde_json::to_string(&cities(&t)).unwrap(),
            origins: serde_json::to_string(&origins(&t)).unwrap(),
            extra: &[Binding::Text("TEST_MODE", "1")],
        }
        .render();
        assert!(text.contains(r#"(name = "index.js", esModule = embed "edge/index.js")"#));
        assert!(text.contains(r#"(name = "index_bg.wasm", wasm = embed "edge/index_bg.wasm")"#));
        assert!(text.contains(r#"{\"slug\":\"newyork\""#), "{text}");
        assert!(text.contains(r#"(name = "PAGES", kvNamespace = "kv")"#));
        assert!(text.contains(r#"fromEnvironment = "CITYBOARD_EDGE_FORWARD_KEY""#));
        assert!(text.contains(r#"(name = "TEST_MODE", text = "1")"#));
        assert!(text.contains(r#"cfBlobHeader = "cf-blob""#));
        assert!(text.contains(
            r#"http = (injectRequestHeaders = [(name = "authorization", value = "Bearer k3y")])"#
        ));
    }
}
