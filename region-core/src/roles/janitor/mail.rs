//! Renewal reminder e-mails: what they say, and where they go (files under
//! the stack home locally, SMTP in production).
//!
//! Locally every message is a file `<uuid>.eml` in the mail directory, so a
//! developer (or a test) reads exactly what a user would receive without a
//! mail server.

use std::path::Path;

use anyhow::{Context, bail};
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
    /// or `smtp://host:587?tls=required` (TLS needs the `smtp-tls` build
    /// feature), or `smtp://host:25` in plain text to a relay on a trusted
    /// network.
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

#[cfg(feature = "smtp-tls")]
fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    Ok(AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
        .with_context(|| "the SMTP URL (smtp[s]://[user:pass@]host[:port])")?
        .build())
}

/// Without a TLS stack only a plain-text relay can be reached: refuse a TLS
/// URL rather than send in clear what the operator asked to encrypt.
#[cfg(not(feature = "smtp-tls"))]
fn smtp_transport(url: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    use lettre::transport::smtp::authentication::Credentials;
    let parsed = url::Url::parse(url).with_context(|| format!("SMTP URL {url:?}"))?;
    if parsed.scheme() != "smtp" || parsed.query().is_some_and(|q| q.contains("tls")) {
        bail!(
            "SMTP URL {url:?} asks for TLS, and this build has none: build region-core with \
             the `smtp-tls` feature, or use smtp://host:port for a plain-text relay"
        );
    }
    let host = parsed
        .host_str()
        .with_context(|| format!("SMTP URL {url:?} names no host"))?;
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(parsed.port().unwrap_or(25));
    if !parsed.username().is_empty() {
        builder = builder.credentials(Credentials::new(
            parsed.username().to_string(),
            parsed.password().unwrap_or_default().to_string(),
        ));
    }
    Ok(builder.build())
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
        assert!(Mailer::smtp("smtps://mail.example.com", "a@b.c", "x").is_err());
        assert!(Mailer::smtp("smtp://127.0.0.1:2525", "a@b.c", "x").is_ok());
    }
}
