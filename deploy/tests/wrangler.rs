//! `cityboard render wrangler`: `edge/wrangler.toml` is the rendering of
//! the default topology (so no city list is kept by hand), every
//! environment's `CITIES` and `ORIGINS` follow the topology, the local
//! environment's are exactly what `cityboard up` gives workerd, and a
//! missing KV namespace id is refused with its file and line.
//!
//! After an intended change: `CITYBOARD_BLESS=1 cargo test -p
//! cityboard-deploy --test wrangler` rewrites edge/wrangler.toml.

use std::path::{Path, PathBuf};
use std::process::Command;

use cityboard_deploy::edge::EdgeConfig;
use cityboard_deploy::render::values::Values;
use cityboard_deploy::render::wrangler::{self, Placements, WorkerVars};
use cityboard_deploy::topology::Topology;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn default_topology() -> Topology {
    Topology::load(&deploy_dir().join("topology.toml")).unwrap()
}

fn rendered() -> String {
    let values = Values::load(&deploy_dir().join("render/values.toml")).unwrap();
    wrangler::render(&default_topology(), &values, &Placements::default()).unwrap()
}

#[test]
fn the_checked_in_wrangler_toml_is_the_rendering_of_the_default_topology() {
    let path = deploy_dir().join("../edge/wrangler.toml");
    let text = rendered();
    if std::env::var_os("CITYBOARD_BLESS").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    assert!(
        std::fs::read_to_string(&path).unwrap() == text,
        "edge/wrangler.toml differs from `cityboard render wrangler` (CITYBOARD_BLESS=1 rewrites it)"
    );
}

#[test]
fn every_environment_serves_the_topologys_cities_from_its_regions() {
    let t = default_topology();
    let wrangler: toml::Table = rendered().parse().unwrap();
    // (slug, region) of every city, read from the topology directly.
    let expected: Vec<(String, String)> = t
        .regions
        .iter()
        .flat_map(|r| {
            r.shards.iter().flat_map(move |s| {
                s.cities
                    .iter()
                    .map(move |c| (c.slug.clone(), r.name.clone()))
            })
        })
        .collect();
    for (env, apex) in [
        ("local", "cityboard.localhost"),
        ("staging", "staging.cityboard.example"),
        ("production", "cityboard.example"),
    ] {
        let vars = &wrangler["env"][env]["vars"];
        assert_eq!(vars["APEX"].as_str(), Some(apex), "{env}");
        let cities: serde_json::Value =
            serde_json::from_str(vars["CITIES"].as_str().unwrap()).unwrap();
        let got: Vec<(String, String)> = cities
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["slug"].as_str().unwrap().into(),
                    c["region"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(got, expected, "{env}: CITIES differs from the topology");
        let origins: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(vars["ORIGINS"].as_str().unwrap()).unwrap();
        for (index, region) in t.regions.iter().enumerate() {
            let want = if env == "local" {
                format!("http://127.0.0.1:{}", t.region_ports(index).api)
            } else {
                format!("https://origin.{}.{apex}", region.name)
            };
            assert_eq!(origins[&region.name], want.as_str(), "{env}");
        }
        assert_eq!(origins.len(), t.regions.len(), "{env}");
        assert_eq!(
            wrangler["env"][env]["kv_namespaces"][0]["binding"].as_str(),
            Some("PAGES")
        );
    }
    let production = &wrangler["env"]["production"];
    let patterns: Vec<&str> = production["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pattern"].as_str().unwrap())
        .collect();
    assert_eq!(patterns, ["cityboard.example/*", "*.cityboard.example/*"]);
}

#[test]
fn the_local_environment_is_what_up_gives_workerd() {
    let t = default_topology();
    let wrangler: toml::Table = rendered().parse().unwrap();
    let vars = WorkerVars::local(&t);
    let local = &wrangler["env"]["local"]["vars"];
    assert_eq!(local["CITIES"].as_str(), Some(vars.cities_json().as_str()));
    assert_eq!(
        local["ORIGINS"].as_str(),
        Some(vars.origins_json().as_str())
    );
    // The workerd config `up` writes carries the same JSON texts.
    let modules = ["edge/index.js".to_string()];
    let capnp = EdgeConfig {
        listen: "127.0.0.1:1".into(),
        kv: "127.0.0.1:2".into(),
        kv_key: None,
        modules: &modules,
        apex: &vars.apex,
        cities: vars.cities_json(),
        origins: vars.origins_json(),
        extra: &[],
    }
    .render();
    let escaped = |s: String| s.replace('"', "\\\"");
    assert!(capnp.contains(&escaped(vars.cities_json())));
    assert!(capnp.contains(&escaped(vars.origins_json())));
}

#[test]
fn a_missing_kv_namespace_id_names_its_line_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let values = std::fs::read_to_string(deploy_dir().join("render/values.toml")).unwrap();
    let start = values.find("[wrangler.production]").unwrap();
    let cut = values[start..].find("kv_namespace_id").unwrap() + start;
    let end = values[cut..].find('\n').unwrap() + cut + 1;
    let bad = format!("{}{}", &values[..cut], &values[end..]);
    let values_path = dir.path().join("values.toml");
    std::fs::write(&values_path, &bad).unwrap();
    let out = dir.path().join("wrangler.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_cityboard"))
        .args(["render", "wrangler", "--out"])
        .arg(&out)
        .arg("--topology")
        .arg(deploy_dir().join("topology.toml"))
        .arg("--values")
        .arg(&values_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = bad[..start].matches('\n').count() + 1;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&format!("values.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("no kv_namespace_id"), "{stderr}");
    assert!(!out.exists());
}

#[test]
fn cities_go_where_the_catalogs_place_them_the_newest_epoch_winning() {
    let t = default_topology();
    let values = Values::load(&deploy_dir().join("render/values.toml")).unwrap();
    let home = WorkerVars::local(&t).cities;
    let (moved, from) = (home[0].slug.clone(), home[0].region.clone());
    let to = t
        .regions
        .iter()
        .map(|r| r.name.clone())
        .find(|r| *r != from)
        .unwrap();
    let mut placements = Placements::default();
    // The new region's row after the cutover (epoch 2), then the old
    // region's stale one (epoch 1): the newer holds whatever the order.
    placements.add(&moved, &to, 2);
    placements.add(&moved, &from, 1);
    placements.check(&t, Path::new("topology.toml")).unwrap();
    let wrangler: toml::Table = wrangler::render(&t, &values, &placements)
        .unwrap()
        .parse()
        .unwrap();
    for env in ["local", "staging", "production"] {
        let cities: serde_json::Value =
            serde_json::from_str(wrangler["env"][env]["vars"]["CITIES"].as_str().unwrap()).unwrap();
        for c in cities.as_array().unwrap() {
            let slug = c["slug"].as_str().unwrap();
            let want = if slug == moved {
                to.as_str()
            } else {
                home.iter()
                    .find(|h| h.slug == slug)
                    .unwrap()
                    .region
                    .as_str()
            };
            assert_eq!(c["region"].as_str(), Some(want), "{env}: {slug}");
        }
    }

    let mut unknown = Placements::default();
    unknown.add("atlantis", &to, 1);
    let e = unknown.check(&t, Path::new("topology.toml")).unwrap_err();
    assert!(e.to_string().contains("city atlantis"), "{e}");
    let mut nowhere = Placements::default();
    nowhere.add(&moved, "mars-1", 3);
    let e = nowhere.check(&t, Path::new("topology.toml")).unwrap_err();
    assert!(e.to_string().contains("region mars-1"), "{e}");
}
