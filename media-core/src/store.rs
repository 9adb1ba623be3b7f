//! Where media objects (segments, playlists, recordings) are kept: one interface, and two
//! implementations: a local directory ([`LocalDirStore`], the embedded default) and an
//! S3-compatible bucket ([`s3::S3Store`], what several nodes share).

pub mod s3;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;

/// A boxed future, so stores can be chosen at run time (`Arc<dyn ObjectStore>`).
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Bytes of an object as they arrive, so a large object is served without being held whole.
pub type ObjectStream = Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send + 'static>>;

/// Size of the chunks a local file is read in when streamed.
const READ_CHUNK: usize = 64 * 1024;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Keys are relative paths of `[A-Za-z0-9._-]` segments separated by `/`, without `..`, at
    /// most [`MAX_KEY_LEN`] bytes: nothing a key holds can escape the store.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The storage itself failed.
    #[error("object store I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A remote store (S3) refused or failed a request; the text names the operation and key,
    /// never credentials.
    #[error("object store: {0}")]
    Remote(String),
}

/// Objects by key.
pub trait ObjectStore: Send + Sync + 'static {
    /// Stores `body` under `key`, replacing what was there; readers see the old or the new
    /// object, never a partial one.
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> StoreFuture<'a, ()>;
    /// The object under `key`, if any.
    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>>;
    /// Stores the file at `path` under `key`, like [`ObjectStore::put`], without holding it in
    /// memory (recordings and uploads can be gigabytes). The object is durable when this returns
    /// (a local directory syncs it to disk), so a database row may name it at once.
    fn put_file<'a>(&'a self, key: &'a str, path: &'a Path) -> StoreFuture<'a, ()>;
    /// Like [`ObjectStore::put_file`], for a file the caller no longer needs: the store may take
    /// it (the local directory moves it in, when it is on the same filesystem, instead of
    /// copying it). The file is gone afterwards either way.
    fn put_file_moved<'a>(&'a self, key: &'a str, path: &'a Path) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            self.put_file(key, path).await?;
            let _ = tokio::fs::remove_file(path).await;
            Ok(())
        })
    }
    /// The size in bytes of the object under `key`, if any.
    fn size<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<u64>>;
    /// Removes the object under `key`; nothing to remove is no error.
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()>;
    /// Removes every object whose key starts with `folder/` (an asset's media, an upload's
    /// pieces); returns how many were removed (for the local directory, 0 or 1: the folder).
    fn delete_folder<'a>(&'a self, folder: &'a str) -> StoreFuture<'a, u64>;
    /// Bytes `start..end` of the object under `key` (`end` is clamped to its size), if it
    /// exists: what a player's `Range` request asks for.
    fn get_range<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> StoreFuture<'a, Option<Bytes>>;
    /// Like [`ObjectStore::get_range`], as a stream of chunks: memory stays bounded whatever the
    /// range (a 1 GiB MP4 is served chunk by chunk).
    fn stream_range<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> StoreFuture<'a, Option<ObjectStream>>;
}

/// Checks a key (see [`StoreError::InvalidKey`]).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.chars().take(80).collect()))
    }
}

/// Flushes the file at `path` to disk.
async fn sync_file(path: &Path) -> std::io::Result<()> {
    tokio::fs::File::open(path).await?.sync_all().await
}

/// Flushes the directory entry of `path` (a rename into it) to disk.
async fn sync_parent(path: &Path) -> Result<(), StoreError> {
    if let Some(parent) = path.parent() {
        tokio::fs::File::open(parent).await?.sync_all().await?;
    }
    Ok(())
}

/// Objects as files below a directory.
#[derive(Debug, Clone)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    pub fn new(root: impl Into<PathBuf>) -> LocalDirStore {
        LocalDirStore { root: root.into() }
    }
}

impl ObjectStore for LocalDirStore {
    fn put<'a>(&'a self, key: &'a str, body: Bytes) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_key(key)?;
            let path = self.root.join(key);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            // Write aside, then rename: a playlist rewritten while a player reads it is never torn.
            let temp = path.with_extension(format!("tmp{}", std::process::id()));
            // The body moves to the blocking thread as it is (`tokio::fs::write` would copy it).
            let written = temp.clone();
            tokio::task::spawn_blocking(move || std::fs::write(&written, &body))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))??;
            tokio::fs::rename(&temp, &path).await?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            validate_key(key)?;
            match tokio::fs::read(self.root.join(key)).await {
                Ok(data) => Ok(Some(Bytes::from(data))),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }

    fn put_file<'a>(&'a self, key: &'a str, path: &'a Path) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_key(key)?;
            let target = self.root.join(key);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let temp = target.with_extension(format!("tmp{}", std::process::id()));
            tokio::fs::copy(path, &temp).await?;
            sync_file(&temp).await?;
            tokio::fs::rename(&temp, &target).await?;
            sync_parent(&target).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_key(key)?;
            match tokio::fs::remove_file(self.root.join(key)).await {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
                _ => Ok(()),
            }
        })
    }

    fn put_file_moved<'a>(&'a self, key: &'a str, path: &'a Path) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            validate_key(key)?;
            let target = self.root.join(key);
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            // On disk before it is named: a machine that dies right after never shows the name
            // with a torn file behind it.
            sync_file(path).await?;
            // Another filesystem (EXDEV and the like): copy, then let the file go.
            if tokio::fs::rename(path, &target).await.is_err() {
                self.put_file(key, path).await?;
                let _ = tokio::fs::remove_file(path).await;
                return Ok(());
            }
            sync_parent(&target).await
        })
    }

    fn delete_folder<'a>(&'a self, folder: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            validate_key(folder)?;
            match tokio::fs::remove_dir_all(self.root.join(folder)).await {
                Ok(()) => Ok(1),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(0),
                Err(err) => Err(err.into()),
            }
        })
    }

    fn size<'a>(&'a self, key: &'a str) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            validate_key(key)?;
            match tokio::fs::metadata(self.root.join(key)).await {
                Ok(meta) => Ok(Some(meta.len())),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(err) => Err(err.into()),
            }
        })
    }

    fn get_range<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> StoreFuture<'a, Option<Bytes>> {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            validate_key(key)?;
            let mut file = match tokio::fs::File::open(self.root.join(key)).await {
                Ok(file) => file,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            let end = end.min(file.metadata().await?.len());
            let mut data = Vec::with_capacity(end.saturating_sub(start) as usize);
            if end > start {
                file.seek(std::io::SeekFrom::Start(start)).await?;
                file.take(end - start).read_to_end(&mut data).await?;
            }
            Ok(Some(Bytes::from(data)))
        })
    }

    fn stream_range<'a>(
        &'a self,
        key: &'a str,
        start: u64,
        end: u64,
    ) -> StoreFuture<'a, Option<ObjectStream>> {
        Box::pin(async move {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            validate_key(key)?;
            let mut file = match tokio::fs::File::open(self.root.join(key)).await {
                Ok(file) => file,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err.into()),
            };
            let end = end.min(file.metadata().await?.len());
            let remaining = end.saturating_sub(start);
            if remaining > 0 {
                file.seek(std::io::SeekFrom::Start(start)).await?;
            }
            let chunks = futures_util::stream::try_unfold(
                (file.take(remaining), vec![0u8; READ_CHUNK]),
                |(mut reader, mut buf)| async move {
                    let n = reader.read(&mut buf).await?;
                    if n == 0 {
                        return Ok(None);
                    }
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    Ok(Some((chunk, (reader, buf))))
                },
            );
            Ok(Some(Box::pin(chunks) as ObjectStream))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_store() {
        for bad in [
            "", "/abs", "a/../b", "..", "a//b", "a/./b", "a b", "a\\b", "a/b/",
        ] {
            assert!(validate_key(bad).is_err(), "{bad:?}");
        }
        for good in ["hls/abc/index.m3u8", "hls/abc/source/0_12.ts", "a-b_c.d"] {
            assert!(validate_key(good).is_ok(), "{good:?}");
        }
        assert!(validate_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }

    #[tokio::test]
    async fn put_replaces_and_get_reads() {
        let dir = std::env::temp_dir().join(format!("store-test-{}", std::process::id()));
        let store = LocalDirStore::new(&dir);
        assert!(store.get("x/y.txt").await.unwrap().is_none());
        store
            .put("x/y.txt", Bytes::from_static(b"one"))
            .await
            .unwrap();
        store
            .put("x/y.txt", Bytes::from_static(b"two"))
            .await
            .unwrap();
        assert_eq!(
            store.get("x/y.txt").await.unwrap().unwrap(),
            Bytes::from_static(b"two")
        );
        assert!(store.get("../etc/passwd").await.is_err());
        assert_eq!(store.size("x/y.txt").await.unwrap(), Some(3));
        assert_eq!(
            store.get_range("x/y.txt", 1, 100).await.unwrap().unwrap(),
            Bytes::from_static(b"wo")
        );
        assert_eq!(
            store.get_range("x/y.txt", 5, 9).await.unwrap().unwrap(),
            Bytes::new()
        );
        assert!(store.get_range("x/none", 0, 1).await.unwrap().is_none());
        let file = dir.join("source.bin");
        std::fs::write(&file, b"from a file").unwrap();
        store.put_file("x/z.bin", &file).await.unwrap();
        assert_eq!(
            store.get("x/z.bin").await.unwrap().unwrap(),
            Bytes::from_static(b"from a file")
        );
        // A file handed over is moved in, and gone from where it was.
        store.put_file_moved("w/moved.bin", &file).await.unwrap();
        assert!(!file.exists());
        assert_eq!(
            store.get("w/moved.bin").await.unwrap().unwrap(),
            Bytes::from_static(b"from a file")
        );
        // Removing: one object, then a folder and everything below it.
        store.delete("x/y.txt").await.unwrap();
        store.delete("x/y.txt").await.unwrap();
        assert!(store.get("x/y.txt").await.unwrap().is_none());
        assert_eq!(store.delete_folder("x").await.unwrap(), 1);
        assert!(store.get("x/z.bin").await.unwrap().is_none());
        assert_eq!(store.delete_folder("x").await.unwrap(), 0);
        std::fs::remove_dir_all(&dir).ok();
    }
}
