//! The object store's suite, run once on a local folder and once on a real
//! S3-compatible server (moto, started by `scripts/test`).

use std::path::Path;

use kiln_core::{ContentHash, NoProgress};
use kiln_store::{Objects, ObjectsUrl, StoreError};

struct Backend {
    objects: Objects,
    dir: tempfile::TempDir,
}

fn folder() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let objects = Objects::open(&ObjectsUrl::Folder(dir.path().join("objects"))).unwrap();
    Backend { objects, dir }
}

fn s3() -> Backend {
    let url = ObjectsUrl::parse(&kiln_test::s3_objects_url()).unwrap();
    let objects = Objects::open_with_endpoint(&url, Some(&kiln_test::s3_endpoint())).unwrap();
    Backend {
        objects,
        dir: tempfile::tempdir().unwrap(),
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn folder() {
                super::$name(super::folder()).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn s3() {
                super::$name(super::s3()).await
            }
        })*
    };
}

on_both!(
    a_file_round_trips_byte_for_byte_and_is_stored_once,
    a_large_file_streams_through_multipart,
    bytes_round_trip_and_missing_objects_are_reported,
    files_with_known_hashes_are_skipped_when_present,
);

/// Deterministic pseudo-random bytes (incompressible, unlike zeros).
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(dir: &Path, name: &str, content: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

async fn a_file_round_trips_byte_for_byte_and_is_stored_once(b: Backend) {
    let content = bytes(100_000, 1);
    let src = write(b.dir.path(), "a.bin", &content);
    let (hash, size, new) = b.objects.put_file(&src, &NoProgress).await.unwrap();
    assert_eq!(
        (hash, size, new),
        (ContentHash::of(&content), 100_000, true)
    );
    let (_, _, again) = b.objects.put_file(&src, &NoProgress).await.unwrap();
    assert!(!again, "identical content is stored once");
    assert!(b.objects.exists(&hash).await.unwrap());
    let out = b.dir.path().join("restored.bin");
    b.objects
        .get_to_file(&hash, &out, &NoProgress)
        .await
        .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
}

async fn a_large_file_streams_through_multipart(b: Backend) {
    // Over the 16 MiB part size, so S3 takes the multipart path.
    let content = bytes(40 << 20, 2);
    let src = write(b.dir.path(), "big.bin", &content);
    let (hash, size, _) = b.objects.put_file(&src, &NoProgress).await.unwrap();
    assert_eq!(size, 40 << 20);
    assert_eq!(hash, ContentHash::of(&content));
    let out = b.dir.path().join("big.out");
    b.objects
        .get_to_file(&hash, &out, &NoProgress)
        .await
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == content);
}

async fn bytes_round_trip_and_missing_objects_are_reported(b: Backend) {
    let h = b.objects.put_bytes(b"manifest".to_vec()).await.unwrap();
    assert_eq!(b.objects.get_bytes(&h).await.unwrap(), b"manifest");
    let missing = ContentHash::of(b"never stored");
    assert!(!b.objects.exists(&missing).await.unwrap());
    assert!(matches!(
        b.objects.get_bytes(&missing).await,
        Err(StoreError::MissingObject(_))
    ));
    let out = b.dir.path().join("x");
    assert!(matches!(
        b.objects.get_to_file(&missing, &out, &NoProgress).await,
        Err(StoreError::MissingObject(_))
    ));
    assert!(!out.exists(), "a failed restore leaves no file");
}

async fn files_with_known_hashes_are_skipped_when_present(b: Backend) {
    let content = bytes(5_000, 3);
    let src = write(b.dir.path(), "f.bin", &content);
    let h = ContentHash::of(&content);
    assert!(b.objects.put_file_hashed(&src, &h).await.unwrap());
    assert!(!b.objects.put_file_hashed(&src, &h).await.unwrap());
    // A file that does not match its claimed hash is refused.
    let other = write(b.dir.path(), "g.bin", b"different");
    let claimed = ContentHash::of(b"claimed");
    assert!(b.objects.put_file_hashed(&other, &claimed).await.is_err());
    assert!(!b.objects.exists(&claimed).await.unwrap());
}

#[tokio::test]
async fn a_corrupted_local_object_is_detected_on_read() {
    let b = folder();
    let h = b.objects.put_bytes(b"precious".to_vec()).await.unwrap();
    std::fs::write(b.objects.local_path(&h).unwrap(), b"tampered").unwrap();
    assert!(matches!(
        b.objects.get_bytes(&h).await,
        Err(StoreError::CorruptObject { .. })
    ));
}

#[tokio::test]
async fn taking_the_lock_removes_what_killed_writers_left() {
    let b = folder();
    let leftover = b.objects.scratch_dir().join("0190-half-written");
    std::fs::write(&leftover, b"partial").unwrap();
    let lock = b.objects.lock().unwrap();
    assert!(!leftover.exists());
    // While a writer holds the lock, readers leave its temporary files alone.
    let in_flight = b.objects.scratch_dir().join("in-flight");
    std::fs::write(&in_flight, b"x").unwrap();
    b.objects.tidy();
    assert!(in_flight.exists());
    drop(lock);
    b.objects.tidy();
    assert!(!in_flight.exists());
}

#[tokio::test]
async fn an_unreachable_s3_server_fails_fast_with_a_hint() {
    let url = ObjectsUrl::parse("s3://kiln-test/x").unwrap();
    let objects = Objects::open_with_endpoint(&url, Some("http://127.0.0.1:1")).unwrap();
    let started = std::time::Instant::now();
    let err = objects.exists(&ContentHash::of(b"x")).await.unwrap_err();
    assert!(
        started.elapsed().as_secs() < 30,
        "took {:?}",
        started.elapsed()
    );
    assert!(matches!(err, StoreError::Object { .. }), "{err:?}");
    assert!(err.hint().unwrap().contains("reachable"));
}
