//! The names of what a move creates, and SQL text that cannot be bound.
//!
//! Publications, slots and subscriptions are made by utility statements,
//! which take no parameters: the few values they carry (a city slug in a
//! row filter, a connection string) are quoted here, once. Every name is
//! derived from the job id, so `doctor` and `cleanup` find a job's objects
//! from the job row alone, and an object whose job is gone is recognisable
//! as an orphan (`cb_` followed by digits).

/// The publication on either shard (each shard publishes the city's rows
/// to the other): `cb_<job>`.
pub fn publication(job: i64) -> String {
    format!("cb_{job}")
}

/// The subscription on a shard, pulling the city's rows from the other
/// shard's publication: `cb_<job>` (subscriptions are per database).
pub fn subscription(job: i64) -> String {
    format!("cb_{job}")
}

/// The logical slot on the shard that sends, feeding the subscription on
/// `receiver`: `cb_<job>_to_<receiver>`. Slots are per cluster, so the
/// receiver is in the name: two shards of one cluster still get two slots.
pub fn slot(job: i64, receiver: &str) -> String {
    let receiver: String = receiver
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("cb_{job}_to_{receiver}");
    // NAMEDATALEN: longer names are truncated by Postgres, silently.
    name.truncate(63);
    name
}

/// The job id in a `cb_<job>` or `cb_<job>_to_…` name, if it is one.
pub fn job_of(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("cb_")?;
    let digits = rest.split('_').next()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `'text'` as an SQL string literal (standard_conforming_strings, the
/// default since Postgres 9.1: only `'` needs doubling). `None` for text
/// with a NUL byte, which no Postgres string can hold.
pub fn literal(text: &str) -> Option<String> {
    if text.contains('\0') {
        return None;
    }
    Some(format!("'{}'", text.replace('\'', "''")))
}

/// A libpq connection string (`key='value' …`) for the server behind
/// `url`, as the other shard's subscription must reach it, with `user`
/// instead of the URL's when given (the role with REPLICATION). The
/// password is kept only for the URL's own user.
pub fn conninfo(url: &str, user: Option<&str>) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!("scheme {:?} is not postgres", parsed.scheme()));
    }
    let host = parsed.host_str().ok_or("no host")?;
    let port = parsed.port().unwrap_or(5432);
    let dbname = parsed.path().trim_start_matches('/');
    let url_user = percent_decode(parsed.username());
    let mut parts = vec![
        format!("host={}", conn_value(host)),
        format!("port={port}"),
        format!("dbname={}", conn_value(&percent_decode(dbname))),
    ];
    let chosen = user.unwrap_or(&url_user);
    if !chosen.is_empty() {
        parts.push(format!("user={}", conn_value(chosen)));
    }
    if chosen == url_user
        && let Some(p) = parsed.password()
    {
        parts.push(format!("password={}", conn_value(&percent_decode(p))));
    }
    parts.push("application_name=shard-tool-move".to_string());
    Ok(parts.join(" "))
}

/// The user named in `url`, if any.
pub fn url_user(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let user = percent_decode(parsed.username());
    (!user.is_empty()).then_some(user)
}

/// A conninfo value: single-quoted, `\` and `'` escaped by a backslash.
fn conn_value(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_job_and_lead_back_to_it() {
        assert_eq!(publication(12), "cb_12");
        assert_eq!(slot(12, "shard-2"), "cb_12_to_shard_2");
        assert_eq!(job_of("cb_12_to_shard_2"), Some(12));
        assert_eq!(job_of("cb_12"), Some(12));
        assert_eq!(job_of("cb_x"), None);
        assert_eq!(job_of("pg_16400_sync_16390_7"), None);
        assert!(slot(1, &"s".repeat(100)).len() <= 63);
    }

    #[test]
    fn literals_and_conninfo_are_quoted() {
        assert_eq!(literal("o'hare").as_deref(), Some("'o''hare'"));
        assert_eq!(literal("a\0b"), None);
        let c = conninfo("postgres://postgres@127.0.0.1:27010/cityboard", None).expect("ok");
        assert_eq!(
            c,
            "host='127.0.0.1' port=27010 dbname='cityboard' user='postgres' \
             application_name=shard-tool-move"
        );
        let c = conninfo("postgres://cb:pa%27ss@h:1/db", Some("mover")).expect("ok");
        assert!(c.contains("user='mover'") && !c.contains("password"), "{c}");
        let c = conninfo("postgres://cb:pa%27ss@h:1/db", None).expect("ok");
        assert!(c.contains("password='pa\\'ss'"), "{c}");
        assert!(conninfo("mysql://h/db", None).is_err());
    }
}
