//! Connection strings as they may be shown: the one helper every log line,
//! printout, error and `Debug` of a Postgres, Redis or SMTP URL goes
//! through (the roles, `cityboard`, shard-tool), since these URLs carry the
//! stack's passwords. Pure text, no parsing library: it must mask even what
//! a URL parser would refuse, and a refused URL is exactly what an error
//! message shows.

/// `text` with every password in it masked as `***`: the password of the
/// userinfo (`postgres://api:***@db:5432/x`, `redis://:***@127.0.0.1:6379/`),
/// the value of any query parameter whose name says it is a secret
/// (`?password=***`, `?sslpassword=***`), and for a text without `://` the
/// same two (`api:***@db/x`, a libpq `password=***`). The user name, host,
/// port, path and other parameters stay: they are what a person needs to
/// tell one database from another. A text without a secret comes back as
/// it is.
///
/// A URL whose password holds a raw `/`, `?` or `#` (valid for no parser,
/// but an operator can type it) puts an `@` past what looks like its host:
/// since that cannot be told from an `@` in a path or query, everything up
/// to the last `@` is masked then (`postgres://***@db/x`), which may hide a
/// host but never shows a password.
pub fn url(text: &str) -> String {
    let (scheme, rest) = match text.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None if text.contains(char::is_whitespace) => return conninfo(text),
        None => (None, text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, after) = match rest[..authority_end].rfind('@') {
        Some(at) => (Some(masked_userinfo(&rest[..at])), &rest[at + 1..]),
        None => match rest.rfind('@') {
            Some(at) => (Some("***".to_string()), &rest[at + 1..]),
            None => (None, rest),
        },
    };
    let mut out = String::with_capacity(text.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some(userinfo) = userinfo {
        out.push_str(&userinfo);
        out.push('@');
    }
    out.push_str(&masked_query(after));
    out
}

/// Each of `urls` through [`url`]: for a list of replicas.
pub fn urls(urls: &[String]) -> Vec<String> {
    urls.iter().map(|u| url(u)).collect()
}

/// `user:password` as `user:***`; a user name alone stays (it is no
/// secret, and tells which role connects).
fn masked_userinfo(userinfo: &str) -> String {
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => userinfo.to_string(),
    }
}

/// Whether a parameter called `name` holds a secret.
fn secret_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["pass", "secret", "token"].iter().any(|s| name.contains(s))
}

/// `rest` (host, path, query, fragment) with the values of its secret query
/// parameters masked.
fn masked_query(rest: &str) -> String {
    let Some((before, query)) = rest.split_once('?') else {
        return rest.to_string();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if secret_name(name) => format!("{name}=***"),
            _ => pair.to_string(),
        })
        .collect();
    let mut out = format!("{before}?{}", pairs.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// A libpq connection string (`host=db user=api password='s e'`) with the
/// values of its secret keys masked, quoted values included.
fn conninfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (head, tail) = rest.split_at(eq);
        let name = head.rsplit(char::is_whitespace).next().unwrap_or_default();
        let value = &tail[1..];
        // A quoted value ends at the next unescaped quote; a bare one at
        // whitespace.
        let end = if let Some(quoted) = value.strip_prefix('\'') {
            let mut escaped = false;
            quoted
                .char_indices()
                .find(|&(_, c)| {
                    let close = c == '\'' && !escaped;
                    escaped = c == '\\' && !escaped;
                    close
                })
                .map_or(value.len(), |(i, _)| i + 2)
        } else {
            value.find(char::is_whitespace).unwrap_or(value.len())
        };
        out.push_str(head);
        out.push('=');
        if secret_name(name) {
            out.push_str("***");
        } else {
            out.push_str(&value[..end]);
        }
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_of_a_url_is_masked_and_the_rest_kept() {
        let cases = [
            (
                "redis://:s3cret@127.0.0.1:6379/",
                "redis://:***@127.0.0.1:6379/",
            ),
            (
                "postgres://api:pa:ss@db:5432/x?sslmode=require",
                "postgres://api:***@db:5432/x?sslmode=require",
            ),
            (
                "postgresql://writer:p%40ss@db.internal/cityboard",
                "postgresql://writer:***@db.internal/cityboard",
            ),
            (
                "smtps://mailer:hunter2@smtp.example.com:465",
                "smtps://mailer:***@smtp.example.com:465",
            ),
            (
                "smtp://u:p@mail:587?tls=required",
                "smtp://u:***@mail:587?tls=required",
            ),
            // An '@' inside the password, unencoded: the last one ends it.
            ("postgres://a:b@c@db/x", "postgres://a:***@db/x"),
        ];
        for (raw, shown) in cases {
            assert_eq!(url(raw), shown, "{raw}");
        }
    }

    #[test]
    fn a_url_without_a_secret_is_shown_as_it_is() {
        for raw in [
            "redis://127.0.0.1:6379/",
            "postgres://postgres@127.0.0.1:5432/x",
            "smtp://127.0.0.1:2525",
            "postgres://db/x?application_name=api&sslmode=disable",
            "not a url",
            "",
            "alice@example.com",
        ] {
            assert_eq!(url(raw), raw);
        }
    }

    #[test]
    fn secrets_in_the_query_are_masked() {
        assert_eq!(
            url("postgres://db:5432/x?user=api&password=s3cret&sslmode=require"),
            "postgres://db:5432/x?user=api&password=***&sslmode=require"
        );
        assert_eq!(
            url("postgres://db/x?sslpassword=k#frag"),
            "postgres://db/x?sslpassword=***#frag"
        );
        assert_eq!(
            url("redis://db/0?Token=abc&x=1"),
            "redis://db/0?Token=***&x=1"
        );
    }

    #[test]
    fn a_password_a_parser_would_misread_is_still_masked() {
        // Raw '/', '?' and '#' in the password: everything up to the last
        // '@' goes.
        for raw in [
            "postgres://api:pa/ss@db:5432/x",
            "postgres://api:pa?ss@db:5432/x",
            "postgres://api:pa#ss@db:5432/x",
            "postgres://api:12/ss@db:5432/x",
        ] {
            let shown = url(raw);
            assert_eq!(shown, "postgres://***@db:5432/x", "{raw}");
        }
        // No scheme at all.
        assert_eq!(url("api:s3cret@db:5432/x"), "api:***@db:5432/x");
    }

    #[test]
    fn a_libpq_connection_string_has_its_password_masked() {
        assert_eq!(
            url("host=db port=5432 user=api password=s3cret dbname=x"),
            "host=db port=5432 user=api password=*** dbname=x"
        );
        assert_eq!(
            url(r"host='db' password='it\'s a secret' application_name=move"),
            r"host='db' password=*** application_name=move"
        );
        assert_eq!(url("host=db user=api"), "host=db user=api");
    }

    #[test]
    fn lists_are_masked_one_by_one() {
        let list = vec![
            "postgres://r:1@a/x".to_string(),
            "postgres://b/x".to_string(),
        ];
        assert_eq!(urls(&list), ["postgres://r:***@a/x", "postgres://b/x"]);
    }
}
