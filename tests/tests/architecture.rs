//! The structure of the code, held by tests (issue 25, acceptance 2): the
//! rooms of region-core import only what the layout allows (no role into
//! another role, bus into no role and no `http`, the core into no role, no
//! `http` and no `bus`), and no crate of the workspace has an import circle
//! between its files. Plain file reading: no stack, no network.
//!
//! Each checker is proved on the small trees in `tests/fixtures/arch/`: one
//! that keeps the rules, and one for each rule broken.

use std::path::{Path, PathBuf};

use cityboard_tests::arch::{
    circles_in_package, describe_circle, rule_violations, shown, workspace_members,
};
use cityboard_tests::repo_root;

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/arch").join(name)
}

/// The rule violations of a fixture tree, paths shown from the fixture.
fn violations_of(name: &str) -> Vec<String> {
    let dir = fixture(name);
    rule_violations(&dir, &dir)
}

fn circles_of(dir: &Path) -> Vec<String> {
    circles_in_package(dir)
        .iter()
        .map(|c| describe_circle(c, &repo_root()))
        .collect()
}

#[test]
fn region_core_rooms_import_only_what_the_layout_allows() {
    let root = repo_root();
    let violations = rule_violations(&root.join("region-core"), &root);
    assert!(
        violations.is_empty(),
        "{} import(s) break the layout's rules (roles meet only on the bus; \
         the core imports no role, no http and no bus):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn no_crate_has_an_import_circle_between_its_files() {
    let root = repo_root();
    let members = workspace_members(&root);
    assert!(members.len() >= 7, "workspace members: {members:?}");
    let mut circles = Vec::new();
    for member in &members {
        assert!(
            member.join("Cargo.toml").is_file(),
            "no crate at {}",
            member.display()
        );
        for circle in circles_of(member) {
            circles.push(format!("{}: {circle}", shown(member, &root)));
        }
    }
    assert!(
        circles.is_empty(),
        "{} import circle(s) between files (a file imports, through others, \
         a file that imports it; break it by moving what both need into one place):\n{}",
        circles.len(),
        circles.join("\n")
    );
}

#[test]
fn rule_check_passes_a_tree_that_keeps_the_rules() {
    // Comments and strings in it name forbidden paths: they count for nothing.
    assert_eq!(violations_of("rules-kept"), Vec::<String>::new());
}

#[test]
fn rule_check_fails_a_role_that_imports_another_role() {
    assert_eq!(
        violations_of("role-into-role"),
        [
            "src/roles/publisher.rs:8 -> crate::roles::writer::Offsets \
             (rule 1: a role imports another role: role publisher -> role writer)",
            "src/roles/publisher.rs:12 -> super::writer::consume \
             (rule 1: a role imports another role: role publisher -> role writer)",
        ]
    );
}

#[test]
fn rule_check_fails_a_role_other_than_the_api_that_imports_http() {
    assert_eq!(
        violations_of("role-into-http"),
        [
            "src/roles/janitor.rs:5 -> crate::http::error::ApiError::Gone \
          (rule 1: only the api role imports http: role janitor -> http (role api))"
        ]
    );
}

#[test]
fn rule_check_fails_the_common_prelude_when_it_imports_a_role() {
    assert_eq!(
        violations_of("common-into-role"),
        [
            "src/roles/common.rs:4 -> crate::roles::api::metrics::ApiMetrics \
          (rule 1: roles/common imports no role: roles/common -> role api)"
        ]
    );
}

#[test]
fn rule_check_fails_the_bus_when_it_imports_a_role_or_http() {
    assert_eq!(
        violations_of("bus-into-role"),
        [
            "src/bus/consumer.rs:3 -> crate::http::error \
             (rule 2: bus imports no role and no http: bus -> http (role api))",
            "src/bus/consumer.rs:3 -> crate::roles::writer::WriterMetrics \
             (rule 2: bus imports no role and no http: bus -> role writer)",
        ]
    );
}

#[test]
fn rule_check_fails_the_core_when_it_imports_a_role_http_or_the_bus() {
    assert_eq!(
        violations_of("core-into-role"),
        [
            "src/cache.rs:6 -> crate::http::metrics::HttpMetrics \
             (rule 3: the core imports no role, no http and no bus: the core -> http (role api))",
            "src/cache.rs:10 -> crate::roles::publisher::Sink \
             (rule 3: the core imports no role, no http and no bus: the core -> role publisher)",
            "src/model/post.rs:4 -> crate::bus::Topics \
             (rule 3: the core imports no role, no http and no bus: the core -> bus)",
        ]
    );
}

#[test]
fn circle_check_fails_a_small_circle() {
    let dir = fixture("circle");
    let circles = circles_in_package(&dir);
    assert_eq!(circles.len(), 1, "{circles:?}");
    let described = describe_circle(&circles[0], &dir);
    assert_eq!(
        described,
        "circle: src/error.rs src/html.rs src/respond.rs\
         \n    src/error.rs:5 -> crate::respond::render (src/respond.rs)\
         \n    src/html.rs:3 -> super::error::EdgeError (src/error.rs)\
         \n    src/respond.rs:1 -> crate::html::page (src/html.rs)\
         \n    src/respond.rs:3 -> crate::error::EdgeError (src/error.rs)"
    );
}

#[test]
fn circle_check_passes_a_tree_without_one() {
    // The same files once `error.rs` no longer renders: imports, re-exports
    // and `mod` declarations, but no way back.
    assert_eq!(circles_of(&fixture("no-circle")), Vec::<String>::new());
}
