//! Operator mistakes get a clear message and a non-zero exit, and start
//! nothing: a bad topology file (exit 2, `file:line: what`), a port another
//! program holds (the component that needed it is named).

use std::net::TcpListener;

use cityboard_tests::{OwnStack, cityboard, output_text, repo_root, small_topology};

/// Runs `up` on `text` in a throwaway home; returns (exit code, output).
fn up_with(name: &str, text: &str) -> (Option<i32>, String) {
    let dir = repo_root().join(".cityboard-scratch").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("topology.toml");
    std::fs::write(&file, text).unwrap();
    let out = cityboard(
        &dir.join("home"),
        &["up", "--topology", file.to_str().unwrap()],
    );
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code(), output_text(&out))
}

fn assert_refused(name: &str, text: &str, line: usize, words: &str) {
    let (code, out) = up_with(name, text);
    assert_eq!(code, Some(2), "{out}");
    assert!(
        out.contains(&format!("topology.toml:{line}:")),
        "expected line {line}: {out}"
    );
    assert!(out.contains(words), "expected {words:?}: {out}");
}

#[test]
fn an_unknown_key_is_refused_with_its_line() {
    let text = small_topology(18900).replace("replicas = 1", "replicas = 1\nreplica = 2");
    assert_refused("bad-key", &text, 9, "unknown field `replica`");
}

#[test]
fn a_duplicate_city_is_refused_with_its_line() {
    let text = small_topology(18900).replace(
        "  { slug = \"boston\"",
        "  { slug = \"newyork\", name = \"NY\", country = \"US\", lat = 1.0, lon = 1.0 },\n  { slug = \"boston\"",
    );
    assert_refused("dup-city", &text, 11, "duplicate city \"newyork\"");
}

#[test]
fn a_region_without_shards_is_refused() {
    let text = "apex = \"cityboard.localhost\"\nport_base = 18900\n[broker]\npartitions = 1\n[[region]]\nname = \"empty\"\n";
    assert_refused("no-shards", text, 6, "zero shards");
}

#[test]
fn a_missing_topology_file_is_refused() {
    let dir = repo_root().join(".cityboard-scratch/missing-topology");
    let out = cityboard(&dir, &["up", "--topology", "/nonexistent/topology.toml"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("cannot read the topology file"),
        "{}",
        output_text(&out)
    );
}

#[test]
fn a_taken_port_names_the_component_and_starts_nothing() {
    // The small topology's region catalog listens on port_base + 100.
    let port_base = 18800;
    let squatter =
        TcpListener::bind(("127.0.0.1", port_base + 100)).expect("bind the catalog port");
    let stack = OwnStack::prepare("taken-port", port_base);
    let out = stack.up();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("solo/catalog"),
        "the component is not named: {text}"
    );
    assert!(
        text.contains(&(port_base + 100).to_string()),
        "the port is not named: {text}"
    );
    // Nothing of the stack is left running.
    let st = stack.state();
    assert!(
        st.components
            .iter()
            .all(|c| c.process.is_none_or(|p| !p.is_alive())),
        "{st:?}"
    );
    drop(squatter);
}

#[test]
fn a_data_directory_postgres_cannot_reach_is_reported() {
    use std::os::unix::fs::PermissionsExt;
    let locked = repo_root().join(".cityboard-scratch/locked");
    let _ = std::fs::remove_dir_all(&locked);
    std::fs::create_dir_all(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let topology = locked.join("topology.toml");
    std::fs::write(&topology, small_topology(18700)).unwrap();
    let out = cityboard(
        &locked.join("home"),
        &["up", "--topology", topology.to_str().unwrap()],
    );
    let text = output_text(&out);
    let _ = std::fs::remove_dir_all(&locked);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("postgres user cannot reach the data directory"),
        "{text}"
    );
}

#[test]
fn a_missing_broker_names_its_install_step() {
    let stack = OwnStack::prepare("no-broker", 18600);
    // A PATH without the broker, and no NISSHI_BIN.
    let out = std::process::Command::new(cityboard_tests::cityboard_bin())
        .arg("--home")
        .arg(&stack.home)
        .args(["up", "--topology", stack.topology.to_str().unwrap()])
        .env_remove("NISSHI_BIN")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap();
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("nisshi"), "{text}");
    assert!(text.contains("deploy/install.sh base"), "{text}");
}
