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
/// subscription runs inside the other server, which has none of this
/// process's environment, so the password goes into the string: the URL's
/// own for the URL's user, else the one libpq would use for that user
/// (`PGPASSWORD` for `PGUSER`, then the password file, [`pgpass`]).
pub fn conninfo(url: &str, user: Option<&str>) -> Result<String, String> {
    conninfo_with(url, user, &|host, port, db, user| {
        let env_user = std::env::var("PGUSER").ok();
        match std::env::var("PGPASSWORD") {
            Ok(pw) if env_user.as_deref() == Some(user) => Some(pw),
            _ => pgpass(host, port, db, user),
        }
    })
}

/// A password source: host, port, database, user.
type Lookup<'a> = dyn Fn(&str, u16, &str, &str) -> Option<String> + 'a;

fn conninfo_with(url: &str, user: Option<&str>, lookup: &Lookup<'_>) -> Result<String, String> {
    let parsed = url::Url::parse(url).map_err(|e| e.to_string())?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!("scheme {:?} is not postgres", parsed.scheme()));
    }
    let host = parsed.host_str().ok_or("no host")?;
    let port = parsed.port().unwrap_or(5432);
    let dbname = percent_decode(parsed.path().trim_start_matches('/'));
    let url_user = percent_decode(parsed.username());
    let mut parts = vec![
        format!("host={}", conn_value(host)),
        format!("port={port}"),
        format!("dbname={}", conn_value(&dbname)),
    ];
    let chosen = user.unwrap_or(&url_user);
    if !chosen.is_empty() {
        parts.push(format!("user={}", conn_value(chosen)));
        let password = match parsed.password() {
            Some(p) if chosen == url_user => Some(percent_decode(p)),
            _ => lookup(host, port, &dbname, chosen),
        };
        if let Some(p) = password {
            parts.push(format!("password={}", conn_value(&p)));
        }
    }
    parts.push("application_name=shard-tool-move".to_string());
    Ok(parts.join(" "))
}

/// The password libpq's password file (`PGPASSFILE`, else `~/.pgpass`)
/// holds for a connection: the first line whose fields match, `*` matching
/// anything, `\` escaping `:` and `\`.
pub fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let file = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let text = std::fs::read_to_string(file).ok()?;
    pgpass_match(&text, host, port, db, user)
}

fn pgpass_match(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = pgpass_fields(line);
            let [h, p, d, u, pw] = fields.as_slice() else {
                return None;
            };
            let hit = |f: &String, v: &str| f == "*" || f == v;
            (hit(h, host) && hit(p, &port) && hit(d, db) && hit(u, user)).then(|| pw.clone())
        })
}

fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(last)) = (chars.next(), fields.last_mut()) {
                    last.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(last) = fields.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    fields
}

/// The user a connection to `url` is made as: the URL's, else `PGUSER`'s,
/// else `postgres` (the default role a move's subscriptions use).
pub fn connecting_user(url: &str) -> String {
    url_user(url)
        .or_else(|| std::env::var("PGUSER").ok())
        .unwrap_or_else(|| "postgres".into())
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
    fn passwords_come_from_the_url_or_the_password_file() {
        let none = |_: &str, _: u16, _: &str, _: &str| None;
        let file = |_: &str, _: u16, _: &str, u: &str| (u == "cb_replication").then(|| "s3".into());
        let url = "postgres://127.0.0.1:5/cityboard";
        assert_eq!(
            conninfo_with(url, Some("cb_replication"), &file).expect("ok"),
            "host='127.0.0.1' port=5 dbname='cityboard' user='cb_replication' password='s3' \
             application_name=shard-tool-move"
        );
        assert!(
            !conninfo_with(url, Some("x"), &file)
                .expect("ok")
                .contains("password")
        );
        let own = "postgres://postgres:p%3Aw@127.0.0.1:5/cityboard";
        assert!(
            conninfo_with(own, None, &none)
                .expect("ok")
                .contains("password='p:w'")
        );
        let text = "# comment\n127.0.0.1:6:*:u:no\n*:*:*:u:a\\:b\\\\c\n";
        assert_eq!(
            pgpass_match(text, "127.0.0.1", 5, "d", "u").as_deref(),
            Some("a:b\\c")
        );
        assert_eq!(
            pgpass_match(text, "127.0.0.1", 6, "d", "u").as_deref(),
            Some("no")
        );
        assert_eq!(pgpass_match(text, "h", 5, "d", "v"), None);
    }

    #[test]
    fn literals_and_conninfo_are_quoted() {
        assert_eq!(literal("o'hare").as_deref(), Some("'o''hare'"));
        assert_eq!(literal("a\0b"), None);
        // No password source but the URL (the test's own environment may
        // have a password file).
        let none = |_: &str, _: u16, _: &str, _: &str| None;
        let conninfo = |url: &str, user: Option<&str>| conninfo_with(url, user, &none);
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
