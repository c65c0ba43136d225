//! `shard-tool status` against the shared stack `deploy/test` starts, run
//! as an operator runs it: the binary, its output and its exit code. These
//! tests only read (shard-tool's sessions are read-only), since other tests
//! share the stack.
//!
//! The module is named `shard_status` so that `deploy/test shard` selects
//! these tests by name.

#[allow(dead_code)] // each test file uses a part of it
mod common;

mod shard_status {
    use std::process::Output;
    use std::time::Duration;

    use serde_json::Value;

    use crate::common::{json_lines, on_stack, shard_tool, stack, text};

    /// `status` (and `args`) on the shared stack.
    fn status(args: &[&str]) -> Output {
        on_stack(args)
    }

    #[test]
    fn status_lists_every_shard_and_city_of_the_topology() {
        let out = status(&["status"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        for region in &stack().regions {
            assert!(stdout.contains(&region.name), "{}", text(&out));
            for shard in &region.shards {
                // The shard's title line, then its cities, before the next
                // shard's title.
                let title = format!("  {}  primary ", shard.name);
                let region_at = stdout.find(&format!("{} (catalog", region.name));
                let region_at = region_at.unwrap_or_else(|| panic!("{}", text(&out)));
                let start = stdout[region_at..]
                    .find(&title)
                    .map(|i| region_at + i)
                    .unwrap_or_else(|| panic!("no {title:?} in\n{}", text(&out)));
                let rest = &stdout[start + title.len()..];
                let end = rest
                    .find("  primary ")
                    .or_else(|| rest.find("jobs"))
                    .unwrap_or(rest.len());
                let block = &rest[..end];
                for city in &shard.cities {
                    assert!(
                        block
                            .lines()
                            .any(|l| l.trim_start().starts_with(&format!("{city} "))),
                        "{} not listed under {}/{}:\n{}",
                        city,
                        region.name,
                        shard.name,
                        text(&out)
                    );
                }
            }
        }
        assert!(stdout.contains("rows: exact count(*)"), "{}", text(&out));
        assert!(stdout.contains("jobs"), "{}", text(&out));
    }

    #[test]
    fn status_json_gives_each_shard_its_replicas_slots_and_cities() {
        let out = status(&["--json", "status"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let lines = json_lines(&out);
        let kind = |l: &Value| l["kind"].as_str().unwrap_or("").to_string();
        let stack = stack();
        let mut shards = 0usize;
        for region in &stack.regions {
            for expected in &region.shards {
                shards += 1;
                let line = lines
                    .iter()
                    .find(|l| {
                        kind(l) == "shard"
                            && l["region"] == region.name
                            && l["shard"] == expected.name
                    })
                    .unwrap_or_else(|| {
                        panic!(
                            "no line for {}/{}:\n{}",
                            region.name,
                            expected.name,
                            text(&out)
                        )
                    });
                assert!(line["error"].is_null(), "{line}");
                assert!(
                    line["wal_lsn"].as_str().is_some_and(|l| l.contains('/')),
                    "{line}"
                );
                let replicas = line["replicas"].as_array().expect("replicas");
                assert_eq!(replicas.len(), expected.replica_urls.len(), "{line}");
                for r in replicas {
                    assert_eq!(r["up"], true, "{line}");
                    assert!(r["lag_bytes"].is_u64(), "{line}");
                    assert!(r["replay_lsn"].is_string(), "{line}");
                    // Each replica streams from a physical slot of its
                    // primary, which status lists with the WAL it retains.
                    let slot = r["slot"].as_str().unwrap_or_else(|| panic!("{line}"));
                    let slots = line["slots"].as_array().expect("slots");
                    let s = slots
                        .iter()
                        .find(|s| s["name"] == slot)
                        .unwrap_or_else(|| panic!("slot {slot} not listed: {line}"));
                    assert_eq!(s["kind"], "physical", "{line}");
                    assert!(
                        s["retained_bytes"].is_i64() || s["retained_bytes"].is_u64(),
                        "{line}"
                    );
                }
                let tables: Vec<&str> = line["tables"]
                    .as_array()
                    .expect("tables")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                assert!(tables.contains(&"posts"), "{line}");
                let cities = line["cities"].as_array().expect("cities");
                for city in &expected.cities {
                    let c = cities
                        .iter()
                        .find(|c| c["city"] == city.as_str())
                        .unwrap_or_else(|| panic!("{city} missing: {line}"));
                    assert_eq!(c["mapped"], true, "{c}");
                    assert_eq!(c["counted"], "exact", "{c}");
                    assert_eq!(c["fence"], "active", "{c}");
                    assert!(c["rows"].as_i64().is_some_and(|n| n >= 0), "{c}");
                    assert!(c["bytes"].is_u64(), "{c}");
                    assert!(c["table_rows"]["posts"].is_i64(), "{c}");
                    let sum: i64 = c["table_rows"]
                        .as_object()
                        .expect("table_rows")
                        .values()
                        .filter_map(Value::as_i64)
                        .sum();
                    assert_eq!(c["rows"].as_i64(), Some(sum), "{c}");
                }
            }
        }
        let summary = lines.last().expect("a summary line");
        assert_eq!(kind(summary), "summary", "{}", text(&out));
        assert_eq!(summary["shards"], shards, "{summary}");
        assert_eq!(summary["rows_counted"], "exact", "{summary}");
        // No move runs on the shared stack: no job lines, "jobs": 0.
        assert_eq!(summary["jobs"], 0, "{summary}");
        assert!(!lines.iter().any(|l| kind(l) == "job"), "{}", text(&out));
    }

    #[tokio::test]
    async fn city_keyed_tables_are_every_shard_table_whose_key_starts_with_city() {
        let out = status(&["--json", "status"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let stack = stack();
        let region = &stack.regions[0];
        let shard = &region.shards[0];
        // The same rule read another way (information_schema, not
        // pg_catalog), so a mistake in the derivation's query shows here.
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&shard.primary_url)
            .await
            .expect("connect to the shard");
        let mut expected: Vec<String> = sqlx::query_scalar(
            "SELECT tc.table_name::text
               FROM information_schema.table_constraints tc
               JOIN information_schema.key_column_usage k
                 ON k.constraint_name = tc.constraint_name
                AND k.constraint_schema = tc.constraint_schema
                AND k.table_name = tc.table_name
              WHERE tc.constraint_type = 'PRIMARY KEY'
                AND tc.table_schema = current_schema()
                AND k.ordinal_position = 1
                AND k.column_name = 'city'
                AND tc.table_name <> 'city_fence'
              ORDER BY 1",
        )
        .fetch_all(&pool)
        .await
        .expect("primary keys");
        expected.sort();
        assert!(expected.contains(&"posts".to_string()));
        let lines = json_lines(&out);
        let line = lines
            .iter()
            .find(|l| {
                l["kind"] == "shard" && l["region"] == region.name && l["shard"] == shard.name
            })
            .expect("the shard's line");
        let found: Vec<String> = line["tables"]
            .as_array()
            .expect("tables")
            .iter()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn estimated_rows_are_labelled_and_every_shard_city_is_still_listed() {
        let out = status(&["--json", "status", "--estimate"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let lines = json_lines(&out);
        for region in &stack().regions {
            for shard in &region.shards {
                let line = lines
                    .iter()
                    .find(|l| {
                        l["kind"] == "shard"
                            && l["shard"] == shard.name.as_str()
                            && l["region"] == region.name
                    })
                    .unwrap_or_else(|| panic!("{}", text(&out)));
                for city in &shard.cities {
                    let c = line["cities"]
                        .as_array()
                        .expect("cities")
                        .iter()
                        .find(|c| c["city"] == city.as_str())
                        .unwrap_or_else(|| panic!("{city} missing: {line}"));
                    // Statistics where ANALYZE has run, an exact count
                    // where it has not: either way, labelled.
                    let counted = c["counted"].as_str().unwrap_or("");
                    assert!(["exact", "estimate"].contains(&counted), "{c}");
                    assert!(c["rows"].as_i64().is_some_and(|n| n >= 0), "{c}");
                }
            }
        }
        let summary = lines.last().expect("summary");
        assert_eq!(summary["rows_counted"], "estimate", "{summary}");
    }

    #[test]
    fn status_of_an_unknown_job_exits_2_naming_it() {
        let out = status(&["status", "999999"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("no reshard job 999999"), "{}", text(&out));
        assert!(out.stdout.is_empty(), "{}", text(&out));
    }

    #[test]
    fn an_unknown_region_exits_2_naming_the_known_ones() {
        let out = status(&["--region", "mars-north", "status"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("mars-north"), "{}", text(&out));
        assert!(stderr.contains(&stack().regions[0].name), "{}", text(&out));
    }

    #[test]
    fn status_of_one_region_by_catalog_url_matches_the_state_file() {
        let stack = stack();
        let region = &stack.regions[0];
        let out = shard_tool(&[
            "--catalog-url",
            &region.catalog_url,
            "--region",
            &region.name,
            "--json",
            "status",
        ]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let shards: Vec<String> = json_lines(&out)
            .iter()
            .filter(|l| l["kind"] == "shard")
            .map(|l| l["shard"].as_str().unwrap_or("").to_string())
            .collect();
        let expected: Vec<String> = region.shards.iter().map(|s| s.name.clone()).collect();
        assert_eq!(shards, expected);
    }

    // Below: no stack needed.

    #[test]
    fn a_non_numeric_job_exits_2() {
        // Refused while parsing, before any stack is looked for.
        let out = shard_tool(&["status", "boston"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("boston"),
            "{}",
            text(&out)
        );
    }

    #[test]
    fn bad_flags_exit_2_with_usage() {
        for args in [
            &["--frobnicate", "status"][..],
            &["status", "--frobnicate"],
            &["fly-to-the-moon"],
            &[],
            &["--catalog-url", "postgres://127.0.0.1:1/x", "status"],
            &["status", "1", "2"],
            &[
                "--catalog-url",
                "not a url",
                "--region",
                "us-east",
                "status",
            ],
        ] {
            let out = shard_tool(args);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
            assert!(!out.stderr.is_empty(), "{args:?}: {}", text(&out));
        }
        let help = shard_tool(&["--help"]);
        assert_eq!(help.status.code(), Some(0), "{}", text(&help));
        assert!(String::from_utf8_lossy(&help.stdout).contains("status"));
    }

    #[test]
    fn a_missing_state_file_exits_2_naming_it() {
        let out = shard_tool(&["--state", "/nonexistent/shard-tool/state.json", "status"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("/nonexistent/shard-tool/state.json"),
            "{}",
            text(&out)
        );
    }

    #[test]
    fn an_unreachable_catalog_exits_1_naming_it() {
        // Port 1 on loopback: refused at once.
        let out = shard_tool(&[
            "--catalog-url",
            "postgres://postgres@127.0.0.1:1/cityboard",
            "--region",
            "us-east",
            "status",
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("the catalog of us-east"),
            "{}",
            text(&out)
        );
    }
}
