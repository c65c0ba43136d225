//! `cityboard render k8s`: the default and a three-region topology render
//! to the manifests checked in under `deploy/render/golden/`, so a change
//! to the renderer shows as a diff in review; and bad input is refused
//! with its file and line, exit code 2, nothing written.
//!
//! After an intended change: `CITYBOARD_BLESS=1 cargo test -p
//! cityboard-deploy --test render`, then read the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use cityboard_deploy::render::values::Values;
use cityboard_deploy::render::{RenderedFile, k8s};
use cityboard_deploy::topology::Topology;

fn deploy_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(topology: &str) -> Vec<RenderedFile> {
    let topology_path = deploy_dir().join(topology);
    let topology = Topology::load(&topology_path).unwrap();
    let values = Values::load(&deploy_dir().join("render/values.toml")).unwrap();
    values.check(&topology, &topology_path).unwrap();
    k8s::render(&topology, &values)
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &Path) -> BTreeSet<PathBuf> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    found
}

/// Compares the rendering with `golden`, or rewrites it under
/// `CITYBOARD_BLESS=1`.
fn check_golden(files: &[RenderedFile], golden: &str) {
    let dir = deploy_dir().join("render/golden").join(golden);
    if std::env::var_os("CITYBOARD_BLESS").is_some() {
        let _ = std::fs::remove_dir_all(&dir);
        cityboard_deploy::render::write_files(&dir, files).unwrap();
        return;
    }
    let rendered: BTreeSet<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
    assert_eq!(
        files_under(&dir),
        rendered,
        "{golden}: the rendered files differ from the golden ones (CITYBOARD_BLESS=1 rewrites them)"
    );
    for file in files {
        let want = std::fs::read_to_string(dir.join(&file.path)).unwrap();
        if want != file.text {
            let line = want
                .lines()
                .zip(file.text.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(want.lines().count().min(file.text.lines().count()));
            panic!(
                "{golden}/{}: differs from line {} on:\n  golden:   {:?}\n  rendered: {:?}\n(CITYBOARD_BLESS=1 rewrites the golden files)",
                file.path.display(),
                line + 1,
                want.lines().nth(line),
                file.text.lines().nth(line)
            );
        }
    }
}

#[test]
fn the_default_topology_renders_to_its_golden_manifests() {
    let files = render("topology.toml");
    check_golden(&files, "default");
}

#[test]
fn three_regions_render_to_their_golden_manifests() {
    let files = render("render/three-regions.toml");
    let regions: BTreeSet<_> = files
        .iter()
        .map(|f| f.path.components().next().unwrap().as_os_str().to_owned())
        .collect();
    assert_eq!(regions.len(), 3);
    check_golden(&files, "three-regions");
}

#[test]
fn a_shard_renders_with_one_instance_per_copy_and_the_move_settings() {
    let files = render("render/three-regions.toml");
    let postgres = &files
        .iter()
        .find(|f| f.path == Path::new("us-east/postgres.yaml"))
        .unwrap()
        .text;
    // us-east/shard-1 has two replicas: three instances.
    let shard_1 = postgres
        .split("---\n")
        .find(|d| d.contains("name: \"shard-1\"\n  namespace") && d.contains("kind: \"Cluster\""))
        .unwrap();
    assert!(shard_1.contains("instances: 3\n"), "{shard_1}");
    for setting in [
        "wal_level: \"logical\"",
        "hot_standby_feedback: \"on\"",
        "max_slot_wal_keep_size: \"4GB\"",
        "max_replication_slots: \"32\"",
    ] {
        assert!(shard_1.contains(setting), "{setting} missing");
    }
    // Secrets are referenced, never embedded.
    let all: String = files.iter().map(|f| f.text.as_str()).collect();
    assert!(!all.contains("kind: \"Secret\""));
}

#[test]
fn every_secret_the_manifests_name_is_listed_for_the_operator() {
    let listed: BTreeSet<&str> = k8s::SECRETS.iter().map(|(name, _)| *name).collect();
    let mut named = BTreeSet::new();
    for file in render("render/three-regions.toml") {
        let lines: Vec<&str> = file.text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let refers = [
                "secretKeyRef:",
                "secretName:",
                "secretRef:",
                "passwordSecret:",
                "superuserSecret:",
            ]
            .iter()
            .any(|key| line.trim_start().starts_with(key) || line.contains(&format!("- {key}")));
            if !refers {
                continue;
            }
            for near in &lines[i..(i + 4).min(lines.len())] {
                if let Some(start) = near.find("\"cityboard-") {
                    let rest = &near[start + 1..];
                    named.insert(rest[..rest.find('"').unwrap()].to_string());
                }
            }
        }
    }
    assert!(named.len() >= 10, "{named:?}");
    for name in &named {
        assert!(
            listed.contains(name.as_str()),
            "{name} is referenced but not in k8s::SECRETS"
        );
    }
}

/// Runs `cityboard render k8s` into a fresh directory and returns its exit
/// code, stderr, and whether anything was written.
fn run_render(topology: &str, values: &str) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let topology_path = dir.path().join("topo.toml");
    let values_path = dir.path().join("values.toml");
    std::fs::write(&topology_path, topology).unwrap();
    std::fs::write(&values_path, values).unwrap();
    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_cityboard"))
        .args(["render", "k8s", "--out"])
        .arg(&out)
        .arg("--topology")
        .arg(&topology_path)
        .arg("--values")
        .arg(&values_path)
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        out.exists(),
    )
}

fn default_texts() -> (String, String) {
    (
        std::fs::read_to_string(deploy_dir().join("topology.toml")).unwrap(),
        std::fs::read_to_string(deploy_dir().join("render/values.toml")).unwrap(),
    )
}

/// 1-based line of the first occurrence of `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text[..text.find(needle).unwrap()].matches('\n').count() + 1
}

#[test]
fn bad_input_names_file_and_line_exits_2_and_writes_nothing() {
    let (topology, values) = default_texts();
    let (code, stderr, wrote) = run_render(&topology, &values);
    assert_eq!((code, wrote), (Some(0), true), "{stderr}");

    // An unknown key in the values file.
    let bad = values.replace("[kafka]\n", "[kafka]\npartitions = 3\n");
    let (code, stderr, wrote) = run_render(&topology, &bad);
    let line = line_of(&bad, "partitions = 3");
    assert_eq!((code, wrote), (Some(2), false), "{stderr}");
    assert!(stderr.contains(&format!("values.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("unknown field `partitions`"), "{stderr}");

    // A region name Kubernetes keeps for itself.
    let bad = topology.replace("name = \"eu-west\"", "name = \"kube-west\"");
    let (code, stderr, wrote) = run_render(&bad, &values.replace("eu-west =", "kube-west ="));
    let line = line_of(&bad, "name = \"kube-west\"");
    assert_eq!((code, wrote), (Some(2), false), "{stderr}");
    assert!(stderr.contains(&format!("topo.toml:{line}:")), "{stderr}");
    assert!(
        stderr.contains("cannot be a Kubernetes namespace"),
        "{stderr}"
    );

    // More replicas than the values allow (3).
    let bad = topology.replacen("replicas = 1", "replicas = 5", 1);
    let (code, stderr, wrote) = run_render(&bad, &values);
    let line = line_of(&bad, "replicas = 5");
    assert_eq!((code, wrote), (Some(2), false), "{stderr}");
    assert!(stderr.contains(&format!("topo.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("allows at most 3"), "{stderr}");

    // A region without an origin address for the geo DNS.
    let bad = values.replace("eu-west = ", "eu-central = ");
    let (code, stderr, wrote) = run_render(&topology, &bad);
    assert_eq!((code, wrote), (Some(2), false), "{stderr}");
    assert!(
        stderr.contains(&format!("values.toml:{}:", line_of(&bad, "[origins]"))),
        "{stderr}"
    );
    assert!(
        stderr.contains("no address for region \"eu-west\""),
        "{stderr}"
    );

    // An origin geo DNS could not check.
    let bad = values.replace("10.20.0.10:8080@", "origin.example:8080@");
    let (code, stderr, wrote) = run_render(&topology, &bad);
    let line = line_of(&bad, "origin.example");
    assert_eq!((code, wrote), (Some(2), false), "{stderr}");
    assert!(stderr.contains(&format!("values.toml:{line}:")), "{stderr}");
    assert!(stderr.contains("is not IP:PORT"), "{stderr}");
}
