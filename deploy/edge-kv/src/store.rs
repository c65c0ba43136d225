//! The KV namespace's data: every entry in memory, each also in a file of
//! its own under the namespace directory.
//!
//! Why files and not SQLite: the namespace is a handful of thousands of
//! pages and routes in a local stack, written by one process; a file per
//! key written to a temporary name and renamed over the old one is atomic
//! (a reader or a crash sees the old entry or the new one, never half),
//! needs no new native dependency in the orchestrator, and can be read with
//! `cat` when a test fails. Durability is that of the page cache: the
//! service survives its own crash and restart (what the supervisor does)
//! without fsync; a power cut may lose the last writes, which the publisher
//! writes again, since KV is rebuilt from the origin's outbox.
//!
//! A file is named by the SHA-256 of its key (keys are up to 512 bytes,
//! longer than a file name may be) and holds one JSON header line (key,
//! metadata, expiration) followed by the value's bytes. Reads never touch
//! the disk: the whole namespace is loaded at start.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use axum::body::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest key Cloudflare KV accepts, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 512;
/// Largest metadata Cloudflare KV accepts (serialized JSON).
pub const MAX_METADATA_BYTES: usize = 1024;
/// Largest value Cloudflare KV accepts.
pub const MAX_VALUE_BYTES: usize = 25 * 1024 * 1024;
/// Most keys one list call answers.
pub const MAX_LIST_KEYS: usize = 1000;

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The bytes as put.
    pub value: Bytes,
    /// Metadata as put (any JSON value).
    pub metadata: Option<serde_json::Value>,
    /// Unix seconds after which the entry is gone.
    pub expiration: Option<i64>,
}

impl Entry {
    fn live_at(&self, now: i64) -> bool {
        self.expiration.is_none_or(|at| at > now)
    }
}

/// One key of a list answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    /// The key.
    pub name: String,
    /// Unix seconds, when the key expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<i64>,
    /// The metadata as JSON text: workerd parses a string here into the
    /// object the Worker sees (as Miniflare sends it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<String>,
}

/// A page of keys.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    /// Keys in UTF-8 byte order.
    pub keys: Vec<Listed>,
    /// True when no key follows.
    pub list_complete: bool,
    /// Where the next page starts; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// Always null: there is no edge cache in front of this store.
    #[serde(rename = "cacheStatus")]
    pub cache_status: Option<String>,
}

/// The header line of an entry's file.
#[derive(Serialize, Deserialize)]
struct FileHeader {
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    metadata: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expiration: Option<i64>,
}

/// A namespace directory and its entries.
pub struct Store {
    dir: PathBuf,
    entries: RwLock<BTreeMap<String, Arc<Entry>>>,
    /// Held while a file is replaced and the map updated, so that the map
    /// and the directory agree on the order of two writes of one key.
    writing: Mutex<()>,
    temp_counter: AtomicU64,
}

impl Store {
    /// Opens (creating) `dir` and loads every entry in it. Leftover
    /// temporary files of an interrupted write are removed; an entry that
    /// expired while the service was down is removed too.
    pub fn open(dir: &Path, now: i64) -> Result<Store> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut entries = BTreeMap::new();
        for item in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = item?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.starts_with(".tmp-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let (key, entry) =
                decode(&bytes).with_context(|| format!("{} is not a KV entry", path.display()))?;
            if entry.live_at(now) {
                entries.insert(key, Arc::new(entry));
            } else {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(Store {
            dir: dir.to_owned(),
            entries: RwLock::new(entries),
            writing: Mutex::new(()),
            temp_counter: AtomicU64::new(0),
        })
    }

    /// Number of live and not yet swept entries.
    pub fn len(&self) -> usize {
        self.read_map().len()
    }

    /// True when the namespace holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entry of `key`, unless it is missing or expired.
    pub fn get(&self, key: &str, now: i64) -> Option<Arc<Entry>> {
        self.read_map().get(key).filter(|e| e.live_at(now)).cloned()
    }

    /// Stores `entry` under `key`, replacing any older entry.
    pub fn put(&self, key: &str, entry: Entry) -> Result<()> {
        let header = serde_json::to_vec(&FileHeader {
            key: key.to_owned(),
            metadata: entry.metadata.clone(),
            expiration: entry.expiration,
        })?;
        let _guard = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.file_of(key);
        let tmp = self.dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            self.temp_counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = (|| {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&header)?;
            file.write_all(b"\n")?;
            file.write_all(&entry.value)?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e).with_context(|| format!("writing {}", path.display()));
        }
        self.write_map().insert(key.to_owned(), Arc::new(entry));
        Ok(())
    }

    /// Removes `key`; a missing key is not an error (as in Cloudflare KV).
    pub fn delete(&self, key: &str) -> Result<()> {
        let _guard = self.writing.lock().unwrap_or_else(|p| p.into_inner());
        let path = self.file_of(key);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", path.display())),
        }
        self.write_map().remove(key);
        Ok(())
    }

    /// Up to `limit` live keys starting with `prefix`, after `cursor` (the
    /// cursor of the previous page).
    pub fn list(&self, prefix: &str, limit: usize, cursor: Option<&str>, now: i64) -> Listing {
        let after = cursor.and_then(decode_cursor);
        let map = self.read_map();
        let start = match &after {
            Some(key) => Bound::Excluded(key.as_str()),
            None => Bound::Included(prefix),
        };
        let mut keys = Vec::new();
        let mut more = false;
        for (key, entry) in map.range::<str, _>((start, Bound::Unbounded)) {
            if !key.starts_with(prefix) {
                if key.as_str() > prefix {
                    break;
                }
                continue;
            }
            if !entry.live_at(now) {
                continue;
            }
            if keys.len() == limit {
                more = true;
                break;
            }
            keys.push(Listed {
                name: key.clone(),
                expiration: entry.expiration,
                metadata: entry.metadata.as_ref().map(|m| m.to_string()),
            });
        }
        let cursor = match keys.last() {
            Some(last) if more => Some(hex::encode(last.name.as_bytes())),
            _ => None,
        };
        Listing {
            keys,
            list_complete: !more,
            cursor,
            cache_status: None,
        }
    }

    /// Deletes every entry that expired by `now`; returns how many.
    pub fn sweep(&self, now: i64) -> Result<usize> {
        let expired: Vec<String> = self
            .read_map()
            .iter()
            .filter(|(_, e)| !e.live_at(now))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &expired {
            // Put again since the scan? Then it is live: keep it.
            if self.read_map().get(key).is_some_and(|e| !e.live_at(now)) {
                self.delete(key)?;
            }
        }
        Ok(expired.len())
    }

    fn file_of(&self, key: &str) -> PathBuf {
        self.dir.join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    // A panic while holding the lock cannot leave the map half-updated
    // (each update is one insert or remove), so a poisoned lock is usable.
    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<Entry>>> {
        self.entries.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn decode(bytes: &[u8]) -> Result<(String, Entry)> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .context("no header line")?;
    let header: FileHeader = serde_json::from_slice(&bytes[..newline])?;
    Ok((
        header.key,
        Entry {
            value: Bytes::copy_from_slice(&bytes[newline + 1..]),
            metadata: header.metadata,
            expiration: header.expiration,
        },
    ))
}

/// Cursors are the last listed key in hex: opaque to the Worker, and safe
/// in a query string whatever the key holds.
fn decode_cursor(cursor: &str) -> Option<String> {
    String::from_utf8(hex::decode(cursor).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, expiration: Option<i64>) -> Entry {
        Entry {
            value: Bytes::from(value.to_owned()),
            metadata: Some(serde_json::json!({"version": 3, "city": "newyork"})),
            expiration,
        }
    }

    #[test]
    fn entries_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1000).unwrap();
        store.put("post:1", entry("<html>1</html>", None)).unwrap();
        store.put("post:2", entry("two", Some(5000))).unwrap();
        store.put("post:1", entry("<html>1b</html>", None)).unwrap();
        store.put("gone", entry("x", None)).unwrap();
        store.delete("gone").unwrap();
        drop(store);

        let store = Store::open(dir.path(), 1001).unwrap();
        assert_eq!(store.len(), 2);
        assert_eq!(
            store.get("post:1", 1001).unwrap().value,
            Bytes::from("<html>1b</html>")
        );
        assert_eq!(
            *store.get("post:2", 1001).unwrap(),
            entry("two", Some(5000))
        );
        assert!(store.get("gone", 1001).is_none());
    }

    #[test]
    fn an_expired_entry_is_not_read_listed_or_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 100).unwrap();
        store.put("a", entry("a", Some(200))).unwrap();
        store.put("b", entry("b", None)).unwrap();
        assert!(store.get("a", 199).is_some());
        assert!(store.get("a", 200).is_none());
        let names: Vec<_> = store
            .list("", 10, None, 200)
            .keys
            .into_iter()
            .map(|k| k.name)
            .collect();
        assert_eq!(names, ["b"]);
        drop(store);
        let store = Store::open(dir.path(), 300).unwrap();
        assert_eq!(store.len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn sweep_deletes_expired_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        store.put("a", entry("a", Some(10))).unwrap();
        store.put("b", entry("b", Some(20))).unwrap();
        assert_eq!(store.sweep(15).unwrap(), 1);
        assert_eq!(store.len(), 1);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn list_pages_through_a_prefix_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        for key in ["route:paris", "post:3", "post:1", "post:2", "postal", "p"] {
            store.put(key, entry(key, None)).unwrap();
        }
        let first = store.list("post:", 2, None, 0);
        assert_eq!(
            first
                .keys
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["post:1", "post:2"]
        );
        assert!(!first.list_complete);
        assert_eq!(
            first.keys[0].metadata.as_deref(),
            Some(r#"{"city":"newyork","version":3}"#)
        );
        let second = store.list("post:", 2, first.cursor.as_deref(), 0);
        assert_eq!(
            second
                .keys
                .iter()
                .map(|k| k.name.as_str())
                .collect::<Vec<_>>(),
            ["post:3"]
        );
        assert!(second.list_complete);
        assert_eq!(second.cursor, None);
        assert_eq!(store.list("", 1000, None, 0).keys.len(), 6);
    }

    #[test]
    fn a_long_key_gets_a_short_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        let key = "k/".repeat(256);
        store.put(&key, entry("v", None)).unwrap();
        drop(store);
        let store = Store::open(dir.path(), 0).unwrap();
        assert!(store.get(&key, 0).is_some());
    }

    #[test]
    fn a_leftover_temporary_file_is_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".tmp-1-0"), b"half").unwrap();
        let store = Store::open(dir.path(), 0).unwrap();
        assert!(store.is_empty());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
