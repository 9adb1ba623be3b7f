//! The media store, both implementations through the one interface: the local directory and a
//! bucket of a real S3 server (s3s-fs, started by scripts/test). And a server whose bucket is
//! missing does not start.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use studio_api::config::Config;
use studio_media_core::store::s3::{PART_SIZE, S3Settings, S3Store};
use studio_media_core::store::{LocalDirStore, ObjectStore, StoreError};
use studio_tests::{TempDir, TestS3};

async fn local_store(dir: &TempDir) -> Arc<dyn ObjectStore> {
    Arc::new(LocalDirStore::new(dir.0.join("media")))
}

async fn s3_store() -> (Arc<dyn ObjectStore>, String) {
    let s3 = TestS3::from_env();
    let bucket = s3.fresh_bucket().await;
    let store = S3Store::connect(&s3.settings(&bucket, "some/prefix"))
        .await
        .expect("connecting to the test bucket");
    (Arc::new(store), bucket)
}

/// A file of `len` bytes whose every byte depends on its offset, so a part out of place shows.
fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i / 251) as u8)
        .collect()
}

async fn streamed(store: &dyn ObjectStore, key: &str, start: u64, end: u64) -> Option<Vec<u8>> {
    let chunks = store.stream_range(key, start, end).await.unwrap()?;
    let chunks: Vec<Bytes> = chunks.try_collect().await.unwrap();
    Some(chunks.concat())
}

/// What every store must do, as the server uses it.
async fn behaves_as_a_media_store(store: &dyn ObjectStore, scratch: &std::path::Path) {
    // Missing objects are None, not errors.
    assert!(store.get("hls/x/index.m3u8").await.unwrap().is_none());
    assert!(store.size("hls/x/index.m3u8").await.unwrap().is_none());
    assert!(
        store
            .get_range("hls/x/a.mp4", 0, 10)
            .await
            .unwrap()
            .is_none()
    );
    assert!(streamed(store, "hls/x/a.mp4", 0, 10).await.is_none());

    // Put replaces.
    store
        .put("hls/x/index.m3u8", Bytes::from_static(b"one"))
        .await
        .unwrap();
    store
        .put("hls/x/index.m3u8", Bytes::from_static(b"#EXTM3U\n"))
        .await
        .unwrap();
    assert_eq!(
        store.get("hls/x/index.m3u8").await.unwrap().unwrap(),
        &b"#EXTM3U\n"[..]
    );
    assert_eq!(store.size("hls/x/index.m3u8").await.unwrap(), Some(8));

    // Ranges: clamped at the end, empty past it.
    assert_eq!(
        store
            .get_range("hls/x/index.m3u8", 1, 4)
            .await
            .unwrap()
            .unwrap(),
        &b"EXT"[..]
    );
    assert_eq!(
        store
            .get_range("hls/x/index.m3u8", 4, 100)
            .await
            .unwrap()
            .unwrap(),
        &b"M3U\n"[..]
    );
    assert_eq!(
        store
            .get_range("hls/x/index.m3u8", 8, 20)
            .await
            .unwrap()
            .unwrap(),
        Bytes::new()
    );
    assert_eq!(
        store
            .get_range("hls/x/index.m3u8", 3, 3)
            .await
            .unwrap()
            .unwrap(),
        Bytes::new()
    );

    // A file larger than one part goes up in parts and comes back whole and in order.
    let len = 2 * PART_SIZE as usize + 12_345;
    let data = patterned(len);
    let file = scratch.join("big.mp4");
    tokio::fs::write(&file, &data).await.unwrap();
    store
        .put_file("hls/x/static360p0.mp4", &file)
        .await
        .unwrap();
    assert_eq!(
        store.size("hls/x/static360p0.mp4").await.unwrap(),
        Some(len as u64)
    );
    assert!(store.get("hls/x/static360p0.mp4").await.unwrap().unwrap() == data[..]);
    // A range across the parts' boundary, streamed and whole.
    let (start, end) = (PART_SIZE - 100, PART_SIZE + 100);
    let expected = &data[start as usize..end as usize];
    assert_eq!(
        streamed(store, "hls/x/static360p0.mp4", start, end)
            .await
            .unwrap(),
        expected
    );
    assert_eq!(
        store
            .get_range("hls/x/static360p0.mp4", start, end)
            .await
            .unwrap()
            .unwrap(),
        expected
    );
    let whole = streamed(store, "hls/x/static360p0.mp4", 0, u64::MAX)
        .await
        .unwrap();
    assert!(whole == data, "the streamed object differs from the file");
    // A small file in one piece.
    let small = scratch.join("small.ts");
    tokio::fs::write(&small, b"segment").await.unwrap();
    store.put_file("hls/x/source/0.ts", &small).await.unwrap();
    assert_eq!(
        store.get("hls/x/source/0.ts").await.unwrap().unwrap(),
        &b"segment"[..]
    );
    // An empty file is an empty object.
    let empty = scratch.join("empty.ts");
    tokio::fs::write(&empty, b"").await.unwrap();
    store.put_file("hls/x/source/1.ts", &empty).await.unwrap();
    assert_eq!(store.size("hls/x/source/1.ts").await.unwrap(), Some(0));
    assert_eq!(
        store.get("hls/x/source/1.ts").await.unwrap().unwrap(),
        Bytes::new()
    );
    // A file that is not there is an error, and stores nothing.
    assert!(
        store
            .put_file("hls/x/gone.mp4", &scratch.join("nope"))
            .await
            .is_err()
    );
    assert!(store.size("hls/x/gone.mp4").await.unwrap().is_none());

    // Removing: one object (twice is no error), a folder with everything below it and nothing
    // beside it, and a file handed over (moved in, gone from where it was).
    for key in ["del/a/1.ts", "del/a/deeper/2.ts", "del/b/1.ts"] {
        store.put(key, Bytes::from_static(b"x")).await.unwrap();
    }
    assert!(store.delete_folder("del/a").await.unwrap() >= 1);
    assert!(store.get("del/a/1.ts").await.unwrap().is_none());
    assert!(store.get("del/a/deeper/2.ts").await.unwrap().is_none());
    assert!(store.get("del/b/1.ts").await.unwrap().is_some());
    assert_eq!(store.delete_folder("del/a").await.unwrap(), 0);
    store.delete("del/b/1.ts").await.unwrap();
    store.delete("del/b/1.ts").await.unwrap();
    assert!(store.get("del/b/1.ts").await.unwrap().is_none());
    let handed = scratch.join("handed-over.bin");
    std::fs::write(&handed, b"handed over").unwrap();
    store
        .put_file_moved("del/moved.bin", &handed)
        .await
        .unwrap();
    assert!(!handed.exists());
    assert_eq!(
        store.get("del/moved.bin").await.unwrap().unwrap(),
        Bytes::from_static(b"handed over")
    );
    store.delete("del/moved.bin").await.unwrap();

    // Keys that could escape the store or mean something else are refused before any request.
    for bad in [
        "",
        "../etc/passwd",
        "hls/../x",
        "/abs",
        "a//b",
        "a b",
        "hls/x/",
    ] {
        assert!(
            matches!(store.get(bad).await, Err(StoreError::InvalidKey(_))),
            "{bad:?} accepted"
        );
        assert!(matches!(
            store.put(bad, Bytes::new()).await,
            Err(StoreError::InvalidKey(_))
        ));
        assert!(matches!(
            store.stream_range(bad, 0, 1).await,
            Err(StoreError::InvalidKey(_))
        ));
    }
}

#[tokio::test]
async fn the_local_directory_is_a_media_store() {
    let dir = TempDir::new();
    let store = local_store(&dir).await;
    behaves_as_a_media_store(store.as_ref(), &dir.0).await;
}

#[tokio::test]
async fn an_s3_bucket_is_a_media_store_below_its_prefix() {
    let dir = TempDir::new();
    let (store, bucket) = s3_store().await;
    behaves_as_a_media_store(store.as_ref(), &dir.0).await;
    let keys = TestS3::from_env().keys(&bucket).await;
    assert!(
        keys.contains(&"some/prefix/hls/x/static360p0.mp4".to_string()),
        "{keys:?}"
    );
    assert!(
        keys.iter().all(|k| k.starts_with("some/prefix/hls/")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_missing_bucket_is_a_clear_error() {
    let s3 = TestS3::from_env();
    let err = S3Store::connect(&s3.settings("no-such-bucket-here", ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"no-such-bucket-here\" does not exist"),
        "{err}"
    );
    assert!(!err.contains(&s3.secret_key), "the secret leaked: {err}");

    let wrong_secret = S3Settings {
        secret_access_key: Some("not-the-secret".into()),
        ..s3.settings(&s3.fresh_bucket().await, "")
    };
    let err = S3Store::connect(&wrong_secret)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused access"), "{err}");
    assert!(!err.contains("not-the-secret"), "the secret leaked: {err}");

    // Nothing listens there: a clear error within the connect timeout, not a hang.
    let unreachable = S3Settings {
        endpoint_url: Some("http://127.0.0.1:9".into()),
        ..s3.settings("some-bucket", "")
    };
    let started = std::time::Instant::now();
    let err = S3Store::connect(&unreachable)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot reach the S3 bucket \"some-bucket\""),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

/// The server refuses to start on a bucket that does not exist, saying so, and without the
/// secret in the message.
#[tokio::test]
async fn a_server_on_a_missing_bucket_does_not_start() {
    let s3 = TestS3::from_env();
    let dir = TempDir::new();
    let mut config = Config {
        data_dir: dir.0.join("data"),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        rtmp_addr: "127.0.0.1:0".parse().unwrap(),
        srt_addr: "127.0.0.1:0".parse().unwrap(),
        webrtc_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    s3.configure(&mut config, "missing-bucket", "media");
    let err = match studio_api::app::start(config).await {
        Ok(_) => panic!("the server started on a missing bucket"),
        Err(err) => format!("{err:#}"),
    };
    assert!(err.contains("storage.url"), "{err}");
    assert!(err.contains("\"missing-bucket\""), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    assert!(!err.contains(&s3.secret_key), "{err}");
}

/// `storage.url` from the environment, as an operator sets it, with the AWS variables.
#[tokio::test]
async fn storage_comes_from_the_environment() {
    let vars = [
        ("STUDIO_STORAGE__URL", "s3://media-bucket/studio/prod"),
        ("STUDIO_STORAGE__FORCE_PATH_STYLE", "true"),
        ("STUDIO_STORAGE__PUBLIC_BASE_URL", "https://cdn.example"),
        ("AWS_ENDPOINT_URL", "http://10.0.0.5:9000"),
        ("AWS_ACCESS_KEY_ID", "id"),
        ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ("AWS_REGION", "eu-west-1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let (config, ignored) = Config::from_sources(None, vars).unwrap();
    assert!(ignored.is_empty(), "{ignored:?}");
    config.validate().unwrap();
    assert_eq!(
        config.storage_location().unwrap(),
        studio_api::config::StorageLocation::S3 {
            bucket: "media-bucket".into(),
            prefix: "studio/prod".into()
        }
    );
    assert!(config.storage.force_path_style);
    assert_eq!(
        config.storage.aws.endpoint_url.as_deref(),
        Some("http://10.0.0.5:9000")
    );
    assert_eq!(config.storage.aws.region.as_deref(), Some("eu-west-1"));
    assert!(!format!("{config:?}").contains("very-secret"));

    let default = Config::default();
    assert_eq!(
        default.storage_location().unwrap(),
        studio_api::config::StorageLocation::LocalDir(default.data_dir.join("media"))
    );
    for (url, says) in [
        ("ftp://x/y", "file:///path or s3://bucket/prefix"),
        ("s3://Bad_Bucket/x", "bucket name"),
        ("s3://key:secret@bucket/x", "takes no credentials"),
        ("s3://bucket/a%20b", "prefix"),
        ("not a url", "not a URL"),
    ] {
        let config = Config {
            storage: studio_api::config::StorageConfig {
                url: Some(url.into()),
                ..Default::default()
            },
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("secret@"), "{err}");
    }
}

/// With `storage.public_base_url`, playback info sends players to the CDN (or bucket) instead of
/// this server; without it, to this server.
#[tokio::test]
async fn playback_info_points_at_the_public_base_url() {
    let app = studio_tests::TestApp::spawn_with(studio_tests::Backend::Sqlite, |c| {
        c.storage.public_base_url = Some("https://cdn.example/prod/".into());
    })
    .await;
    let stream = app.create_stream(serde_json::json!({"name": "cdn"})).await;
    let pid = stream["playbackId"].as_str().unwrap();
    let info = app.get(&format!("/playback/{pid}")).await;
    assert_eq!(info.status, 200, "{}", info.text);
    assert_eq!(
        info.json["meta"]["source"][0]["url"],
        format!("https://cdn.example/prod/hls/{pid}/index.m3u8")
    );

    let app = studio_tests::TestApp::spawn(studio_tests::Backend::Sqlite).await;
    let stream = app.create_stream(serde_json::json!({"name": "here"})).await;
    let pid = stream["playbackId"].as_str().unwrap();
    let info = app.get(&format!("/playback/{pid}")).await;
    assert_eq!(
        info.json["meta"]["source"][0]["url"],
        format!("{}/hls/{pid}/index.m3u8", app.base)
    );
}
