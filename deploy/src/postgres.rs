//! Postgres instances of the stack: catalogs, shard primaries and their
//! streaming replicas, each its own cluster, port and data directory.
//!
//! Server binaries run as the `postgres` user (Postgres refuses root), so the
//! data root must be enterable by that user; we check that first and say so,
//! instead of letting initdb fail with a permission error deep inside.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use std::os::unix::process::CommandExt;

use anyhow::{Context, Result, bail};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};

use crate::secrets::read_secret;

/// Database every instance holds the stack's data in.
pub const DATABASE: &str = "cityboard";

/// The superuser: `cityboard` itself (initdb, roles, databases), `region-core
/// setup` (migrations, the owner's work) and `shard-tool` (on Postgres 15
/// only a superuser may create a subscription). No serving process uses it.
pub const ADMIN: &str = "postgres";

/// Every login of the stack's instances and its attributes beyond LOGIN:
/// the serving roles of [`region_core::privileges`] have none, the
/// replication role only REPLICATION. Passwords are secrets of their own
/// (`pg-<role>.password`), so each process can be given just its own.
pub const LOGINS: &[(&str, &str)] = &[
    ("cb_api", ""),
    ("cb_writer", ""),
    ("cb_relay", ""),
    ("cb_publisher", ""),
    ("cb_janitor", ""),
    (region_core::privileges::REPLICATION_ROLE, "REPLICATION"),
];

/// The secret file holding `user`'s password.
pub fn password_file(user: &str) -> String {
    format!("pg-{user}.password")
}

/// `user`'s password, from the stack's secrets.
pub fn password(secrets_dir: &Path, user: &str) -> Result<String> {
    read_secret(secrets_dir, &password_file(user))
}

/// Where [`client_env`] writes `user`'s password file.
pub fn passfile(secrets_dir: &Path, user: &str) -> PathBuf {
    secrets_dir.join(format!("pg-{user}.pgpass"))
}

/// The libpq environment that makes a process connect as `user`: `PGUSER`,
/// and `PGPASSFILE` naming a 0600 password file written beside the secrets
/// (libpq and sqlx both read it). The stack's URLs name no user, so this is
/// the only place a process's identity comes from, and the password never
/// appears on a command line or in a URL that could be logged.
pub fn client_env(
    secrets_dir: &Path,
    user: &str,
) -> Result<[(&'static str, std::ffi::OsString); 2]> {
    let pw = password(secrets_dir, user)?;
    let file = passfile(secrets_dir, user);
    // pgpass fields escape `:` and `\` with a backslash.
    let escaped = pw.replace('\\', "\\\\").replace(':', "\\:");
    crate::secrets::write_private(&file, format!("*:*:*:{user}:{escaped}\n").as_bytes())?;
    Ok([
        ("PGUSER", user.into()),
        ("PGPASSFILE", file.into_os_string()),
    ])
}

/// Settings passed on the command line of every instance, so that a replica
/// made by pg_basebackup runs with exactly the settings its primary has.
pub const SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    // TCP only: socket paths must stay under 107 bytes, and data roots in
    // temporary directories can be longer than that.
    ("unix_socket_directories", ""),
    // Logical replication moves cities between shards (shard-tool).
    ("wal_level", "logical"),
    // Room for moves beside the replicas' physical slots: a move holds a
    // forward slot and walsender, the reverse slot made before its cutover,
    // and one temporary tablesync slot per table being copied, on each side
    // it touches; and a cutover's preflight refuses when no slot is free.
    ("max_wal_senders", "32"),
    ("max_replication_slots", "32"),
    // A subscription's apply worker and its tablesync workers are logical
    // replication workers, taken from max_worker_processes (with parallel
    // query's); the defaults (4 of 8) fit one move's apply worker and two
    // table copies, and nothing for a second move on the same shard.
    ("max_logical_replication_workers", "8"),
    ("max_worker_processes", "16"),
    // Written out (it is the default): a city's tables are copied two at a
    // time, which leaves workers (and cores) for the load and other moves.
    ("max_sync_workers_per_subscription", "2"),
    // WAL a slot may hold back: a move left stuck (a subscriber down, a
    // killed shard-tool) invalidates its slot past this rather than fill the
    // disk (the move then restarts its copy). Applies to the replicas'
    // physical slots too: a replica that far behind is rebuilt.
    ("max_slot_wal_keep_size", "4GB"),
    // Written out (it is the default) because the move tests count on it: a
    // subscriber silent this long is dropped, and a large transaction of
    // another city, which the row filter leaves out, must not look silent.
    ("wal_sender_timeout", "60s"),
    // The logical replication launcher starts apply workers at most once per
    // this interval (default 5 s, for all subscriptions of the server): a
    // cutover enables the reverse subscription, and a rollback right after
    // would otherwise wait up to 5 s for its worker.
    ("wal_retrieve_retry_interval", "200ms"),
    ("hot_standby", "on"),
    ("max_connections", "200"),
    ("shared_buffers", "128MB"),
    ("log_min_messages", "warning"),
    ("log_line_prefix", "%m [%p] "),
];

/// Directory of the Postgres 15 server binaries.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("CITYBOARD_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Path of a Postgres server program, or an error naming the install step.
pub fn program(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} not found: the Postgres 15 server is not installed (run `deploy/install.sh base`, \
             or set CITYBOARD_PG_BIN to its bin directory)",
            path.display()
        )
    }
}

/// The `postgres` user's uid and gid.
pub fn postgres_user() -> Result<(u32, u32)> {
    let user = nix::unistd::User::from_name("postgres")
        .context("looking up the postgres user")?
        .context(
            "there is no `postgres` user: install the Postgres server (`deploy/install.sh base`)",
        )?;
    Ok((user.uid.as_raw(), user.gid.as_raw()))
}

/// Fails with a clear message if the `postgres` user cannot enter `dir`.
pub fn check_reachable(dir: &Path) -> Result<()> {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(dir)
        .stdin(Stdio::null())
        .status()
        .context("running runuser to check directory permissions")?;
    if !status.success() {
        bail!(
            "the postgres user cannot reach the data directory {}: every parent directory must be \
             enterable by others (e.g. /root is 0700). Choose another home with --home or CITYBOARD_HOME",
            dir.display()
        );
    }
    Ok(())
}

/// The command that runs an instance in the foreground.
pub fn command(data: &Path, port: u16) -> Result<Command> {
    let (uid, gid) = postgres_user()?;
    let mut cmd = Command::new(program("postgres")?);
    cmd.arg("-D").arg(data).arg("-p").arg(port.to_string());
    for (key, value) in SETTINGS {
        cmd.arg("-c").arg(format!("{key}={value}"));
    }
    cmd.uid(uid).gid(gid);
    if let Some(parent) = data.parent() {
        cmd.current_dir(parent);
    }
    Ok(cmd)
}

/// Creates a new cluster in `data` unless one is there. initdb writes into a
/// `.partial` directory that is renamed at the end, so a crash mid-way
/// leaves no cluster that looks complete.
///
/// Every connection authenticates with a scram-sha-256 password (the
/// superuser's from the secrets), replication connections included.
pub fn init_primary(data: &Path, log: &Path, secrets_dir: &Path) -> Result<()> {
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    let partial = partial_dir(data)?;
    // initdb reads the superuser's password from a file, as the postgres
    // user: a private copy beside the data directory, removed at once.
    let pwfile = data.with_extension("pwfile");
    crate::secrets::write_private(&pwfile, password(secrets_dir, ADMIN)?.as_bytes())?;
    let (uid, gid) = postgres_user()?;
    nix::unistd::chown(&pwfile, Some(uid.into()), Some(gid.into()))
        .with_context(|| format!("giving {} to the postgres user", pwfile.display()))?;
    let made = run_as_postgres(
        Command::new(program("initdb")?)
            .arg("-D")
            .arg(&partial)
            .args([
                "-U",
                ADMIN,
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ])
            .arg(format!("--pwfile={}", pwfile.display())),
        log,
        "initdb",
    );
    let _ = std::fs::remove_file(&pwfile);
    made?;
    // Defaults an operator (or a test) may change with ALTER SYSTEM, which
    // command-line settings would override. pg_basebackup copies the file,
    // so replicas get them too.
    let conf = partial.join("postgresql.conf");
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf)
        .with_context(|| format!("opening {}", conf.display()))?;
    std::io::Write::write_all(
        &mut file,
        b"\n# cityboard: replicas tell the primary which rows their queries still\n\
          # read, so vacuum rarely cancels replica reads with recovery conflicts.\n\
          hot_standby_feedback = on\n",
    )?;
    std::fs::rename(&partial, data).with_context(|| format!("renaming {}", partial.display()))?;
    Ok(())
}

/// Gives the stack about to be made in `home` the superuser password of the
/// stack whose secrets are in `from` (unless it has one), so that one libpq
/// environment (`PGUSER`, `PGPASSFILE`) reaches both: what tests and
/// benchmarks that make stacks of their own beside a shared one use.
pub fn share_admin_password(from: &Path, home: &crate::home::Home) -> Result<()> {
    let to = home.secrets_dir();
    let target = to.join(password_file(ADMIN));
    if target.exists() {
        return Ok(());
    }
    crate::secrets::private_dir(&to)?;
    crate::secrets::write_private(&target, password(from, ADMIN)?.as_bytes())
}

/// Makes a streaming replica of the primary on `primary_port` in `data`
/// unless one is there: pg_basebackup with a physical slot named `slot`, so
/// the primary keeps the WAL the replica has not replayed yet. It connects
/// as the replication role, which the replica then streams as.
pub async fn init_replica(
    data: &Path,
    primary_port: u16,
    slot: &str,
    log: &Path,
    secrets_dir: &Path,
) -> Result<()> {
    if data.join("PG_VERSION").exists() {
        return Ok(());
    }
    // A slot left by an earlier, interrupted attempt would make -C fail.
    let mut primary = connect(primary_port, "postgres", secrets_dir).await?;
    sqlx::query("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1 AND NOT active")
        .bind(slot)
        .execute(&mut primary)
        .await
        .context("dropping a stale replication slot")?;
    drop(primary);
    let partial = partial_dir(data)?;
    let role = region_core::privileges::REPLICATION_ROLE;
    // -R writes this connection's parameters, password included, into the
    // replica's postgresql.auto.conf (0600, the postgres user's): what its
    // walreceiver streams with.
    run_as_postgres(
        Command::new(program("pg_basebackup")?)
            .arg("-D")
            .arg(&partial)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary_port.to_string(),
                "-U",
                role,
            ])
            .env("PGPASSWORD", password(secrets_dir, role)?)
            .args(["-R", "-X", "stream", "-C", "-S", slot, "--checkpoint=fast"]),
        log,
        "pg_basebackup",
    )?;
    std::fs::rename(&partial, data).with_context(|| format!("renaming {}", partial.display()))?;
    Ok(())
}

fn partial_dir(data: &Path) -> Result<PathBuf> {
    let partial = data.with_extension("partial");
    if partial.exists() {
        std::fs::remove_dir_all(&partial)
            .with_context(|| format!("removing {}", partial.display()))?;
    }
    std::fs::create_dir_all(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let (uid, gid) = postgres_user()?;
    nix::unistd::chown(&partial, Some(uid.into()), Some(gid.into()))
        .with_context(|| format!("giving {} to the postgres user", partial.display()))?;
    std::fs::set_permissions(
        &partial,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )?;
    Ok(partial)
}

fn run_as_postgres(cmd: &mut Command, log: &Path, what: &str) -> Result<()> {
    let (uid, gid) = postgres_user()?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    if let Some(parent) = log.parent().and_then(Path::parent) {
        cmd.current_dir(parent);
    }
    let status = cmd
        .uid(uid)
        .gid(gid)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("running {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status}); see {}", log.display());
    }
    Ok(())
}

/// URL of a database on a local instance. It names no user: each process
/// connects as its own ([`client_env`]).
pub fn url(port: u16, database: &str) -> String {
    format!("postgres://127.0.0.1:{port}/{database}")
}

/// `url` (as the stack's state file has it, with no user) with the
/// superuser and its password in it: for a tool that connects to a stack
/// other than its environment's (the reshard benchmark's own stack).
/// Never print the result.
pub fn admin_url(url: &str, secrets_dir: &Path) -> Result<String> {
    let rest = url
        .strip_prefix("postgres://")
        .with_context(|| format!("{url} is not a postgres:// URL"))?;
    let pw = password(secrets_dir, ADMIN)?;
    let pw = percent_encoding::utf8_percent_encode(&pw, percent_encoding::NON_ALPHANUMERIC);
    Ok(format!("postgres://{ADMIN}:{pw}@{rest}"))
}

/// Connects to a local instance as the superuser, failing fast when it
/// does not answer.
pub async fn connect(port: u16, database: &str, secrets_dir: &Path) -> Result<PgConnection> {
    let url = url(port, database);
    let options = PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .database(database)
        .username(ADMIN)
        .password(&password(secrets_dir, ADMIN)?);
    tokio::time::timeout(Duration::from_secs(3), options.connect())
        .await
        .with_context(|| format!("connecting to {url}: timed out"))?
        .with_context(|| format!("connecting to {url} as {ADMIN}"))
}

/// Ready when it accepts queries and is in the role we expect of it.
pub async fn probe(port: u16, replica: bool, secrets_dir: &Path) -> Result<()> {
    let mut conn = connect(port, "postgres", secrets_dir).await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await?;
    if in_recovery != replica {
        bail!("pg_is_in_recovery() is {in_recovery}, expected {replica}");
    }
    Ok(())
}

/// Creates the stack's logins ([`LOGINS`]) on a primary, or sets their
/// passwords to the secrets' (a rotated secret takes effect at the next
/// `up`). Replicas get them by replication.
pub async fn ensure_roles(port: u16, secrets_dir: &Path) -> Result<()> {
    let mut conn = connect(port, "postgres", secrets_dir).await?;
    for (user, attributes) in LOGINS {
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(user)
                .fetch_one(&mut conn)
                .await?;
        let verb = if exists { "ALTER" } else { "CREATE" };
        // Neither a role name nor a password can be bound in these
        // statements: the name is a constant, and the password, hex from
        // `secrets::ensure` or an operator's file, is quoted as a literal.
        let pw = password(secrets_dir, user)?.replace('\'', "''");
        sqlx::query(&format!(
            "{verb} ROLE {user} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {attributes} \
             PASSWORD '{pw}'"
        ))
        .execute(&mut conn)
        .await
        .with_context(|| format!("{verb} ROLE {user} on port {port}"))?;
    }
    Ok(())
}

/// Creates the stack's database on a primary unless it exists.
pub async fn ensure_database(port: u16, secrets_dir: &Path) -> Result<()> {
    let mut conn = connect(port, "postgres", secrets_dir).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        // Identifiers cannot be bound; DATABASE is a constant.
        sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
            .execute(&mut conn)
            .await
            .context("creating the database")?;
    }
    Ok(())
}

/// Bytes of WAL the replica on `replica_port` has still to replay, measured
/// by LSN against its primary (a timestamp would make an idle primary's
/// replicas look stale).
pub async fn replay_lag_bytes(
    primary_port: u16,
    replica_port: u16,
    secrets_dir: &Path,
) -> Result<i64> {
    let mut replica = connect(replica_port, "postgres", secrets_dir).await?;
    let replayed: Option<String> = sqlx::query_scalar("SELECT pg_last_wal_replay_lsn()::text")
        .fetch_one(&mut replica)
        .await?;
    let replayed = replayed.context("the replica has replayed nothing yet")?;
    let mut primary = connect(primary_port, "postgres", secrets_dir).await?;
    let lag: i64 =
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
            .bind(replayed)
            .fetch_one(&mut primary)
            .await?;
    Ok(lag.max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_postgres_login_has_a_password() {
        let names: Vec<&str> = crate::secrets::SECRETS.iter().map(|(n, _)| *n).collect();
        for user in LOGINS.iter().map(|(u, _)| *u).chain([ADMIN]) {
            let file = password_file(user);
            assert!(names.contains(&file.as_str()), "{file}");
        }
    }
}
