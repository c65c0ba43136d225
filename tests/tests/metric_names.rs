//! The metric names every role serves stay what they were (issue 25,
//! acceptance 1): dashboards and alerts read them, so a rename is a change
//! of behaviour even when no test of the roles notices.
//!
//! Reads `/metrics` of every api, writer, relay, publisher and janitor of
//! the shared stack, takes the metric families from the `# TYPE` lines and
//! compares them, per role, with `tests/fixtures/metric-names.txt`. Every
//! family's `# TYPE` line is printed whether or not it has samples yet, so
//! the set does not depend on what other tests did first.
//!
//! A counter is compared without a trailing `_total`: the classic text
//! format names a counter's family with it, OpenMetrics without it, and
//! both expose the very same `…_total` series to a scraper.

use std::collections::{BTreeMap, BTreeSet};

use cityboard_deploy::http;
use cityboard_tests::{repo_root, shared_home, state};

/// The component kinds in the state file that serve a role's `/metrics`
/// on their port (the api: on its region's operator port), and the role
/// each one is.
const ROLES: [(&str, &str); 5] = [
    ("region-api", "api"),
    ("writer", "writer"),
    ("relay", "relay"),
    ("publisher", "publisher"),
    ("janitor", "janitor"),
];

/// Set it to rewrite the fixture from the running stack (only for a
/// change of names that is meant).
const BLESS: &str = "CITYBOARD_BLESS_METRIC_NAMES";

const HEADER: &str = "\
# The metric families each region-core role serves at /metrics, from its
# `# TYPE` lines: one `role family type` a line, sorted. Compared by
# tests/tests/metric_names.rs against the shared stack (a counter without a
# trailing `_total`, so the classic and the OpenMetrics spelling agree).
#
# A change to this file is a change of behaviour: dashboards and alerts read
# these names. Regenerate it only for a change that is meant, and say so in
# the commit:
#   CITYBOARD_BLESS_METRIC_NAMES=1 deploy/test metric_names
";

/// A family as compared: the role, its name (a counter without `_total`)
/// and its type.
type Family = (String, String, String);

fn normalized(role: &str, name: &str, kind: &str) -> Family {
    let name = match kind {
        "counter" => name.strip_suffix("_total").unwrap_or(name),
        _ => name,
    };
    (role.to_string(), name.to_string(), kind.to_string())
}

/// The `# TYPE name type` lines of an exposition.
fn families(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| {
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn metric_names_at_every_roles_metrics_are_unchanged() {
    let st = state(&shared_home());
    // role → its families as served, the same at every instance.
    let mut served: BTreeMap<&str, BTreeSet<(String, String)>> = BTreeMap::new();
    for component in &st.components {
        let Some(&(_, role)) = ROLES.iter().find(|(kind, _)| *kind == component.kind) else {
            continue;
        };
        // The api serves metrics on its operator listener only.
        let port = if component.kind == "region-api" {
            st.regions
                .iter()
                .find(|r| component.name == format!("{}/api", r.name))
                .map_or(component.port, |r| r.operator_port)
        } else {
            component.port
        };
        let response = http::request(port, "GET", "/metrics", &[], b"")
            .await
            .unwrap_or_else(|e| panic!("{}: {e:#}", component.name));
        assert_eq!(
            response.status,
            200,
            "{}: {}",
            component.name,
            response.text()
        );
        let text = response.text();
        let found = families(&text);
        assert!(
            !found.is_empty(),
            "{} serves no # TYPE line:\n{text}",
            component.name
        );
        if let Some(before) = served.insert(role, found.clone()) {
            assert_eq!(
                before, found,
                "two {role} instances serve different families"
            );
        }
    }
    let missing: Vec<&str> = ROLES
        .iter()
        .map(|(_, role)| *role)
        .filter(|role| !served.contains_key(role))
        .collect();
    assert!(
        missing.is_empty(),
        "no component of role(s) {missing:?} in the state file"
    );

    let fixture = repo_root().join("tests/fixtures/metric-names.txt");
    if std::env::var_os(BLESS).is_some() {
        let mut text = HEADER.to_string();
        for (role, names) in &served {
            for (name, kind) in names {
                text.push_str(&format!("{role} {name} {kind}\n"));
            }
        }
        std::fs::write(&fixture, text).expect("write the fixture");
        return;
    }

    let expected_text = std::fs::read_to_string(&fixture).expect("tests/fixtures/metric-names.txt");
    // Compared form → the line as written, for the message.
    let mut expected = BTreeMap::new();
    for line in expected_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.len(),
            3,
            "metric-names.txt: `{line}` is not `role family type`"
        );
        expected.insert(normalized(words[0], words[1], words[2]), line.to_string());
    }
    let mut actual = BTreeMap::new();
    for (role, names) in &served {
        for (name, kind) in names {
            actual.insert(
                normalized(role, name, kind),
                format!("{role} {name} {kind}"),
            );
        }
    }
    let gone: Vec<&String> = expected
        .iter()
        .filter(|(k, _)| !actual.contains_key(*k))
        .map(|(_, line)| line)
        .collect();
    let new: Vec<&String> = actual
        .iter()
        .filter(|(k, _)| !expected.contains_key(*k))
        .map(|(_, line)| line)
        .collect();
    assert!(
        gone.is_empty() && new.is_empty(),
        "the roles' metric names changed (a change of behaviour; see the header of \
         tests/fixtures/metric-names.txt):\n{}{}",
        gone.iter().map(|l| format!("- {l}\n")).collect::<String>(),
        new.iter().map(|l| format!("+ {l}\n")).collect::<String>(),
    );
}
