//! Renewal reminder e-mails: what they say, and where they go (files under
//! the stack home locally, SMTP in production).
//!
//! Locally every message is a file `<uuid>.eml` in the mail directory, so a
//! developer (or a test) reads exactly what a user would receive without a
//! mail server.

use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::model::Id;

/// One reminder: a live post of `city` whose lifetime ends at `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reminder {
    /// The poster's address, from their home region's catalog.
    pub to: String,
    pub city: String,
    pub post_id: Id,
    pub title: String,
    pub expires_at: DateTime<Utc>,
}

/// Where reminders go.
#[derive(Clone)]
enum Transport {
    File(AsyncFileTransport<Tokio1Executor>),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Sends reminders. Cheap to clone (the SMTP transport pools connections).
#[derive(Clone)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// Apex of the city host names in renewal links.
    apex: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.transport {
            Transport::File(_) => "file",
            Transport::Smtp(_) => "smtp",
        };
        f.debug_struct("Mailer")
            .field("transport", &kind)
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// Writes each message as a `.eml` file into `dir` (created if missing).
    pub fn to_dir(dir: &Path, from: &str, apex: &str) -> anyhow::Result<Mailer> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the mail directory {}", dir.display()))?;
        Ok(Mailer {
            transport: Transport::File(AsyncFileTransport::new(dir)),
            from: mailbox(from)?,
            apex: apex.to_string(),
        })
    }

    /// Sends through the SMTP server of `url`: `smtps://user:pass@host:465`
    /// or `smtp://user:pass@host:587?tls=required` (TLS needs the `smtp-tls`
    /// build feature), or `smtp://host:25` in plain text to a relay on a
    /// trusted network, which then takes no credentials. A URL that would
    /// send a user name or password without TLS, or asks for TLS in a build
    /// without it, is refused with an [`SmtpUrlError`] ([`check_smtp_url`]).
    pub fn smtp(url: &str, from: &str, apex: &str) -> anyhow::Result<Mailer> {
        Ok(Mailer {
            transport: Transport::Smtp(smtp_transport(url)?),
            from: mailbox(from)?,
            apex: apex.to_string(),
        })
    }

    /// The link the reminder asks the poster to follow.
    pub fn renewal_link(&self, r: &Reminder) -> String {
        format!("https://{}.{}/post/{}/renew", r.city, self.apex, r.post_id)
    }

    /// The message for `r`.
    pub fn message(&self, r: &Reminder) -> anyhow::Result<Message> {
        let to = mailbox(&r.to)?;
        let body = format!(
            "Hello,\n\n\
             your post \"{title}\" on cityboard {city}\n\
             expires on {when}.\n\n\
             To keep it online for another 7 days, renew it:\n\
             {link}\n\n\
             If you do nothing, it is taken down then; you can still renew it\n\
             afterwards from the same link.\n\n\
             -- cityboard\n",
            title = r.title,
            city = r.city,
            when = r.expires_at.format("%Y-%m-%d %H:%M UTC"),
            link = self.renewal_link(r),
        );
        Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!("Your post \"{}\" expires tomorrow", r.title))
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .context("building the reminder message")
    }

    /// Sends the reminder; an error means it was not sent (retry later).
    pub async fn send(&self, r: &Reminder) -> anyhow::Result<()> {
        let message = self.message(r)?;
        match &self.transport {
            Transport::File(t) => {
                t.send(message).await.context("writing the mail file")?;
            }
            Transport::Smtp(t) => {
                t.send(message).await.context("sending through SMTP")?;
            }
        }
        Ok(())
    }
}

fn mailbox(address: &str) -> anyhow::Result<Mailbox> {
    address
        .parse()
        .with_context(|| format!("{address:?} is not an e-mail address"))
}

/// Why an SMTP URL is refused at start: a mistake in the configuration,
/// which `region-core` reports as a usage error (exit status 2). Every
/// variant shows the URL with its password masked (`redact::url`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmtpUrlError {
    /// Not a URL, or one without a host.
    #[error("the SMTP URL {url} is not usable: {reason}")]
    Invalid {
        /// The URL, password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme or `tls` parameter lettre does not know.
    #[error(
        "the SMTP URL {url} is neither smtp://host[:port] (plain), \
         smtp://host[:port]?tls=required|opportunistic nor smtps://host[:port]"
    )]
    Unsupported {
        /// The URL, password masked.
        url: String,
    },
    /// A user name or password with no TLS, or with a TLS an attacker on
    /// the path can strip (`tls=opportunistic` falls back to plain text when
    /// the server does not offer STARTTLS): the credentials would cross the
    /// network in clear.
    #[error(
        "the SMTP URL {url} carries a user name or password without TLS: they would cross \
         the network in clear; use smtps://user:pass@host:465 or \
         smtp://user:pass@host:587?tls=required, or a relay that takes no credentials \
         (smtp://host:25)"
    )]
    CredentialsWithoutTls {
        /// The URL, password masked.
        url: String,
    },
    /// TLS asked for in a build without a TLS stack.
    #[error(
        "the SMTP URL {url} asks for TLS, and this build has none: build region-core with \
         the `smtp-tls` feature, or use smtp://host:port for a plain-text relay that takes \
         no credentials"
    )]
    NoTlsInBuild {
        /// The URL, password masked.
        url: String,
    },
}

/// What an SMTP URL does to protect the session, as lettre reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protection {
    /// `smtp://host`: plain text throughout.
    Plain,
    /// `smtp://host?tls=opportunistic`: STARTTLS if the server offers it.
    Opportunistic,
    /// `smtps://host` (TLS from the start) or `smtp://host?tls=required`
    /// (STARTTLS or no session).
    Tls,
}

/// Checks `url` before anything connects: it must be one lettre reads, its
/// credentials (a user name or a password) only with TLS that cannot be
/// stripped, and TLS only in a build that has it. The parsed URL and what
/// protects it.
fn checked_smtp_url(url: &str) -> Result<(url::Url, Protection), SmtpUrlError> {
    let shown = || crate::redact::url(url);
    let parsed = url::Url::parse(url).map_err(|e| SmtpUrlError::Invalid {
        url: shown(),
        reason: e.to_string(),
    })?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(SmtpUrlError::Invalid {
            url: shown(),
            reason: "it names no host".into(),
        });
    }
    let tls = parsed
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let protection = match (parsed.scheme(), tls.as_deref()) {
        ("smtp", None) => Protection::Plain,
        ("smtp", Some("opportunistic")) => Protection::Opportunistic,
        ("smtp", Some("required")) | ("smtps", _) => Protection::Tls,
        _ => return Err(SmtpUrlError::Unsupported { url: shown() }),
    };
    let credentials = !parsed.username().is_empty() || parsed.password().is_some();
    if credentials && protection != Protection::Tls {
        return Err(SmtpUrlError::CredentialsWithoutTls { url: shown() });
    }
    if protection != Protection::Plain && !cfg!(feature = "smtp-tls") {
        return Err(SmtpUrlError::NoTlsInBuild { url: shown() });
    }
    Ok((parsed, protection))
}

/// Whether the janitor may send through `url` (see [`Mailer::smtp`]); the
/// same check `Mailer::smtp` makes, for a caller that wants to fail before
/// anything else starts.
pub fn check_smtp_url(url: &str) -> Result<(), SmtpUrlError> {
    checked_smtp_url(url).map(|_| ())
}

#[cfg(feature = "smtp-tls")]
fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    checked_smtp_url(url)?;
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .with_context(|| format!("the SMTP URL {}", crate::redact::url(url)))?
        .build())
}

/// Without a TLS stack only a plain-text relay can be reached, and the
/// check has made sure the URL asks for nothing else and carries no
/// credentials.
#[cfg(not(feature = "smtp-tls"))]
fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let (parsed, _plain) = checked_smtp_url(url)?;
    let host = parsed.host_str().unwrap_or_default();
    Ok(
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(parsed.port().unwrap_or(25))
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_the_post_and_links_to_its_renewal() {
        let dir = std::env::temp_dir();
        let m = Mailer::to_dir(
            &dir,
            "cityboard <no-reply@cityboard.test>",
            "cityboard.test",
        )
        .unwrap();
        let r = Reminder {
            to: "alice@example.com".into(),
            city: "boston".into(),
            post_id: Id(42),
            title: "Red bike".into(),
            expires_at: DateTime::<Utc>::UNIX_EPOCH,
        };
        let text = String::from_utf8(m.message(&r).unwrap().formatted()).unwrap();
        assert!(text.contains("To: alice@example.com"), "{text}");
        assert!(text.contains("Subject: Your post \"Red bike\" expires tomorrow"));
        assert!(text.contains("https://boston.cityboard.test/post/42/renew"));
        assert!(
            m.message(&Reminder {
                to: "nobody".into(),
                ..r
            })
            .is_err()
        );
    }

    #[tokio::test]
    async fn a_tls_url_is_refused_without_a_tls_build() {
        if cfg!(feature = "smtp-tls") {
            return;
        }
        let err = Mailer::smtp("smtps://mail.example.com", "a@b.c", "x").unwrap_err();
        assert!(matches!(
            err.downcast_ref::<SmtpUrlError>(),
            Some(SmtpUrlError::NoTlsInBuild { .. })
        ));
        assert!(Mailer::smtp("smtp://127.0.0.1:2525", "a@b.c", "x").is_ok());
    }

    #[test]
    fn credentials_without_tls_are_refused_and_a_plain_relay_is_not() {
        for url in [
            "smtp://mailer:hunter2@mail.example.com:587",
            "smtp://mailer@mail.example.com:25",
            "smtp://:hunter2@mail.example.com",
            // STARTTLS if offered: an attacker who strips the offer gets
            // the password.
            "smtp://mailer:hunter2@mail.example.com:587?tls=opportunistic",
        ] {
            let err = check_smtp_url(url).unwrap_err();
            assert!(
                matches!(err, SmtpUrlError::CredentialsWithoutTls { .. }),
                "{url}: {err}"
            );
            let text = err.to_string();
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("without TLS"), "{text}");
        }
        for url in ["smtp://127.0.0.1:2525", "smtp://relay.internal"] {
            assert_eq!(check_smtp_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn credentials_with_tls_pass_in_a_tls_build_only() {
        for url in [
            "smtps://mailer:hunter2@mail.example.com:465",
            "smtp://mailer:hunter2@mail.example.com:587?tls=required",
        ] {
            let checked = check_smtp_url(url);
            if cfg!(feature = "smtp-tls") {
                assert_eq!(checked, Ok(()), "{url}");
            } else {
                let err = checked.unwrap_err();
                assert!(matches!(err, SmtpUrlError::NoTlsInBuild { .. }), "{url}");
                assert!(!err.to_string().contains("hunter2"), "{err}");
            }
        }
    }

    #[test]
    fn what_lettre_cannot_read_is_refused_without_showing_the_password() {
        for url in [
            "http://mailer:hunter2@mail.example.com",
            "smtp://mailer:hunter2@mail.example.com?tls=sometimes",
            "not a url",
            "smtp://",
        ] {
            let err = check_smtp_url(url).unwrap_err();
            assert!(
                matches!(
                    err,
                    SmtpUrlError::Unsupported { .. } | SmtpUrlError::Invalid { .. }
                ),
                "{url}: {err}"
            );
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
