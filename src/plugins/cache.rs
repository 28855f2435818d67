//! The on-disk cache of compiled plugin code (`plugin_cache`).
//!
//! A cached file is native code that wasmtime maps and runs as is, so the daemon loads
//! only files it wrote itself for the exact component at hand: each file is
//! `HMAC-SHA256(key, domain ‖ sha256(component) ‖ artifact) ‖ artifact`, where `key` is
//! a random per-cache secret in `cache.key` (created 0600). The tag is checked, in
//! constant time, on the bytes read into memory before they are deserialised, so a file
//! dropped in, swapped, truncated or copied from another component's entry is ignored
//! (and replaced). The folder must not be writable by group or others, and the key
//! file must be readable by its owner only; otherwise the cache is not used.
//!
//! wasmtime's own cache (`Config::cache`) is not used: it keys files by a hash of the
//! input but trusts their contents.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use wasmtime::Engine;
use wasmtime::component::Component;

const KEY_FILE: &str = "cache.key";
const DOMAIN: &[u8] = b"switchboard plugin code v1\0";
const TAG: usize = 32;

/// Why a cache folder cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use the plugin cache `{dir}`: {what}")]
    Unusable { dir: String, what: String },
}

#[derive(Debug)]
pub struct CodeCache {
    dir: PathBuf,
    key: [u8; 32],
    hits: AtomicUsize,
    misses: AtomicUsize,
    refused: AtomicUsize,
}

fn unusable(dir: &Path, what: impl Into<String>) -> CacheError {
    CacheError::Unusable { dir: dir.display().to_string(), what: what.into() }
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let mut inner = Sha256::new();
    inner.update(pad(0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(pad(0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

impl CodeCache {
    /// Opens (or creates) the cache in `dir`, with its key.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        fs::create_dir_all(dir).map_err(|e| unusable(dir, format!("cannot create it: {e}")))?;
        let meta = fs::metadata(dir).map_err(|e| unusable(dir, e.to_string()))?;
        if meta.permissions().mode() & 0o022 != 0 {
            return Err(unusable(dir, "it is writable by group or others (chmod go-w)"));
        }
        let path = dir.join(KEY_FILE);
        let key = match fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(mut file) => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| unusable(dir, format!("no randomness for a key: {e}")))?;
                file.write_all(&key).and_then(|()| file.sync_all()).map_err(|e| unusable(dir, e.to_string()))?;
                key
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let meta = fs::symlink_metadata(&path).map_err(|e| unusable(dir, e.to_string()))?;
                if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
                    return Err(unusable(dir, format!("`{KEY_FILE}` must be a file readable by its owner only")));
                }
                let bytes = fs::read(&path).map_err(|e| unusable(dir, e.to_string()))?;
                bytes.try_into().map_err(|_| unusable(dir, format!("`{KEY_FILE}` is not 32 bytes")))?
            }
            Err(e) => return Err(unusable(dir, format!("cannot create `{KEY_FILE}`: {e}"))),
        };
        Ok(Self {
            dir: dir.into(),
            key,
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        })
    }

    /// (hits, misses) since this cache was opened.
    pub fn stats(&self) -> (usize, usize) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }

    /// Cached files refused because their tag did not match.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}.cwasm"))
    }

    fn tag(&self, sha256: &str, artifact: &[u8]) -> [u8; 32] {
        hmac(&self.key, &[DOMAIN, sha256.as_bytes(), b"\0", artifact])
    }

    /// The component of `bytes` (whose SHA-256 is `sha256`): from the cache when a file
    /// this daemon wrote for it is there, else compiled and written.
    pub fn component(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> wasmtime::Result<Component> {
        let path = self.path(sha256);
        if let Ok(file) = fs::read(&path) {
            if let Some((tag, artifact)) = file.split_at_checked(TAG)
                && bool::from(tag.ct_eq(&self.tag(sha256, artifact)))
            {
                match trusted_deserialize(engine, artifact) {
                    Ok(component) => {
                        self.hits.fetch_add(1, Ordering::Relaxed);
                        return Ok(component);
                    }
                    // Written by another build or configuration of the engine.
                    Err(e) => tracing::debug!(path = %path.display(), "stale compiled plugin code: {e}"),
                }
            } else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    path = %path.display(),
                    "ignoring a cached plugin file that this daemon did not write for this component"
                );
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let artifact = engine.precompile_component(bytes)?;
        let component = trusted_deserialize(engine, &artifact)?;
        if let Err(e) = self.write(&path, sha256, &artifact) {
            tracing::warn!(path = %path.display(), "cannot cache compiled plugin code: {e}");
        }
        Ok(component)
    }

    /// Writes `tag ‖ artifact` beside `path`, then renames it into place.
    fn write(&self, path: &Path, sha256: &str, artifact: &[u8]) -> std::io::Result<()> {
        let tmp = self.dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        let mut file = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        file.write_all(&self.tag(sha256, artifact))?;
        file.write_all(artifact)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    }
}

/// Deserialises compiled code that this daemon produced: either just now, or read from
/// a cache file whose tag proved that this daemon wrote it for this component.
#[expect(unsafe_code, reason = "wasmtime loads compiled code only through an unsafe fn")]
fn trusted_deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `artifact` comes from `Engine::precompile_component` of this daemon
    // (the caller checked the HMAC tag, whose key only this daemon's user can read), and
    // it is a copy in memory, so it cannot change while wasmtime reads it. wasmtime
    // itself refuses artifacts of another engine version or configuration.
    unsafe { Component::deserialize(engine, artifact) }
}

#[cfg(test)]
mod tests {
    use super::hmac;

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231 test case 2 uses a 4-byte key; ours are 32 bytes, zero-padded to the
        // block like any key shorter than the block, so pad "Jefe" the same way.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let tag = hmac(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(tag), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
