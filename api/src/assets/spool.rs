//! Spooling an upload's bytes to a scratch file as they arrive (a direct `PUT`, a TUS piece).
//!
//! The file is handed to the media store once complete, and the store makes it durable before a
//! database row names it. Left to the page cache, all of a large upload would reach the disk
//! only then, after the last byte arrived; instead the spool has the bytes written so far synced
//! in the background every [`SYNC_EVERY`] bytes, so the disk works while the network does and
//! the final sync has little left to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

/// Buffered before each write to the file.
const BUFFER: usize = 1 << 20;
/// Bytes written between background syncs.
const SYNC_EVERY: u64 = 16 << 20;

/// A scratch file being written.
pub struct Spool {
    path: PathBuf,
    file: tokio::io::BufWriter<tokio::fs::File>,
    /// The same file, for the background syncs.
    sync_handle: Arc<std::fs::File>,
    syncing: Option<JoinHandle<std::io::Result<()>>>,
    size: u64,
    synced_at: u64,
}

impl Spool {
    /// Creates the file at `path` (and its directory).
    pub async fn create(path: PathBuf) -> std::io::Result<Spool> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let file = tokio::fs::File::create(&path).await?;
        let sync_handle = Arc::new(file.try_clone().await?.into_std().await);
        Ok(Spool {
            path,
            file: tokio::io::BufWriter::with_capacity(BUFFER, file),
            sync_handle,
            syncing: None,
            size: 0,
            synced_at: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `data`; every [`SYNC_EVERY`] bytes, what was written goes to disk in the
    /// background (one sync at a time: a disk slower than the network slows the upload down
    /// rather than piling up dirty pages).
    pub async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data).await?;
        self.size += data.len() as u64;
        if self.size - self.synced_at >= SYNC_EVERY {
            self.file.flush().await?;
            if let Some(previous) = self.syncing.take() {
                join(previous).await?;
            }
            let file = self.sync_handle.clone();
            self.syncing = Some(tokio::task::spawn_blocking(move || file.sync_data()));
            self.synced_at = self.size;
        }
        Ok(())
    }

    /// Flushes the file and waits for the background sync; returns its path and size. The file
    /// stays for the caller to move into the store (or remove), which makes it durable.
    pub async fn finish(mut self) -> std::io::Result<(PathBuf, u64)> {
        self.file.flush().await?;
        if let Some(previous) = self.syncing.take() {
            join(previous).await?;
        }
        Ok((self.path, self.size))
    }

    /// Removes the file (an upload that failed).
    pub async fn discard(self) {
        if let Some(syncing) = self.syncing {
            let _ = syncing.await;
        }
        let _ = tokio::fs::remove_file(&self.path).await;
    }
}

async fn join(sync: JoinHandle<std::io::Result<()>>) -> std::io::Result<()> {
    sync.await.map_err(std::io::Error::other)?
}
