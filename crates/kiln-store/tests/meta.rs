//! The metadata store's suite, run once on SQLite and once on a real
//! PostgreSQL (started by `scripts/test`).

use kiln_core::ContentHash;
use kiln_store::{MetaStore, NewVersion, StoreError, StoreUrl, VersionSpec};

enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn url(&self) -> StoreUrl {
        match self {
            Self::Sqlite(d) => StoreUrl::Sqlite(d.path().join("kiln.db")),
            Self::Postgres(u) => StoreUrl::Postgres(u.clone()),
        }
    }

    async fn open(&self, project: &str) -> MetaStore {
        MetaStore::open(&self.url(), project)
            .await
            .expect("open the store")
    }
}

async fn sqlite() -> Backend {
    Backend::Sqlite(tempfile::tempdir().unwrap())
}

async fn postgres() -> Backend {
    Backend::Postgres(kiln_test::postgres_url().await)
}

/// Runs a suite function on both backends.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$name(super::sqlite().await).await
            }
            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$name(super::postgres().await).await
            }
        })*
    };
}

on_both!(
    identical_content_makes_no_new_version,
    versions_resolve_by_latest_tag_and_prefix,
    ambiguous_prefixes_are_reported_with_candidates,
    every_mutation_is_audited,
    a_new_version_is_linked_to_its_parent,
    catalog_fields_and_check_results_are_stored,
    projects_in_one_store_are_isolated,
    reopening_applies_no_migration_twice,
    concurrent_writers_get_distinct_sequence_numbers,
);

fn version(content: &str) -> NewVersion {
    let id = ContentHash::of(content.as_bytes());
    NewVersion {
        id,
        kind: "table".into(),
        format: "csv".into(),
        source: format!("{content}.csv"),
        message: Some(format!("add {content}")),
        byte_size: content.len() as i64,
        file_count: 1,
        row_count: Some(3),
        schema: serde_json::json!({ "columns": [{ "name": "a", "type": "integer", "nullable": false }] }),
        profile: Some(serde_json::json!({ "rows": 3, "columns": [] })),
        original_object: id,
        columnar_object: Some(ContentHash::of(format!("{content}.parquet").as_bytes())),
    }
}

async fn identical_content_makes_no_new_version(b: Backend) {
    let store = b.open("p").await;
    let (v1, new1) = store.create_version("bikes", version("one")).await.unwrap();
    let (again, new2) = store.create_version("bikes", version("one")).await.unwrap();
    let (v2, new3) = store.create_version("bikes", version("two")).await.unwrap();
    assert!(new1 && !new2 && new3);
    assert_eq!(again.id, v1.id);
    assert_eq!((v1.seq, v2.seq), (1, 2));
    assert_eq!(store.versions("bikes").await.unwrap().len(), 2);
    assert_eq!(v2.row_count, Some(3));
    assert_eq!(v2.schema["columns"][0]["name"], "a");
}

async fn versions_resolve_by_latest_tag_and_prefix(b: Backend) {
    let store = b.open("p").await;
    let (v1, _) = store.create_version("d", version("one")).await.unwrap();
    let (v2, _) = store.create_version("d", version("two")).await.unwrap();
    store.tag_version("d", &v1.id, "gold").await.unwrap();
    assert_eq!(
        store.resolve("d", &VersionSpec::Latest).await.unwrap().id,
        v2.id
    );
    let tagged = store
        .resolve("d", &VersionSpec::parse("gold"))
        .await
        .unwrap();
    assert_eq!(
        (tagged.id, tagged.tags.clone()),
        (v1.id, vec!["gold".to_string()])
    );
    let by_prefix = store
        .resolve("d", &VersionSpec::parse(&v2.id.to_hex()[..8]))
        .await
        .unwrap();
    assert_eq!(by_prefix.id, v2.id);
    // Moving a tag leaves one version with it.
    store.tag_version("d", &v2.id, "gold").await.unwrap();
    assert_eq!(
        store
            .resolve("d", &VersionSpec::parse("gold"))
            .await
            .unwrap()
            .id,
        v2.id
    );
    assert!(matches!(
        store.resolve("d", &VersionSpec::parse("nope")).await,
        Err(StoreError::UnknownVersion { .. })
    ));
    assert!(matches!(
        store.resolve("missing", &VersionSpec::Latest).await,
        Err(StoreError::UnknownDataset { .. })
    ));
}

async fn ambiguous_prefixes_are_reported_with_candidates(b: Backend) {
    // Find two contents whose ids share their first four hex digits.
    let mut seen = std::collections::HashMap::new();
    let (x, y) = (0..)
        .find_map(|i: u32| {
            let c = format!("c{i}");
            let p = ContentHash::of(c.as_bytes()).to_hex()[..4].to_string();
            seen.insert(p, c.clone()).map(|other| (other, c))
        })
        .unwrap();
    let store = b.open("p").await;
    let (vx, _) = store.create_version("d", version(&x)).await.unwrap();
    store.create_version("d", version(&y)).await.unwrap();
    let prefix = &vx.id.to_hex()[..4];
    match store.resolve("d", &VersionSpec::parse(prefix)).await {
        Err(StoreError::AmbiguousVersion { candidates, .. }) => {
            assert!(candidates.contains(&vx.id.short()))
        }
        other => panic!("expected an ambiguity, got {other:?}"),
    }
}

async fn every_mutation_is_audited(b: Backend) {
    let store = b.open("p").await;
    let (v, _) = store.create_version("d", version("one")).await.unwrap();
    store.tag_version("d", &v.id, "t").await.unwrap();
    store.describe("d", Some("about"), None, &[]).await.unwrap();
    store
        .record_check("d", &v.id, "suite", 2, 0, &serde_json::json!([]))
        .await
        .unwrap();
    let actions: Vec<String> = store
        .audit_log(50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for a in [
        "dataset.create",
        "dataset_version.create",
        "dataset_version.tag",
        "dataset.describe",
        "check_result.create",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} missing from {actions:?}"
        );
    }
    assert!(
        store
            .audit_log(50)
            .await
            .unwrap()
            .iter()
            .all(|e| !e.actor.is_empty())
    );
}

async fn a_new_version_is_linked_to_its_parent(b: Backend) {
    let store = b.open("p").await;
    let (v1, _) = store.create_version("d", version("one")).await.unwrap();
    let (v2, _) = store.create_version("d", version("two")).await.unwrap();
    assert_eq!(v2.parent_id, Some(v1.id));
    let edges = store
        .lineage("dataset_version", &format!("d@{}", v2.id))
        .await
        .unwrap();
    assert_eq!(edges.len(), 1);
    assert_eq!(edges[0].relation, "derived_from");
    assert_eq!(edges[0].dst_id, format!("d@{}", v1.id));
}

async fn catalog_fields_and_check_results_are_stored(b: Backend) {
    let store = b.open("p").await;
    let (v, _) = store.create_version("d", version("one")).await.unwrap();
    assert!(store.latest_check("d", &v.id).await.unwrap().is_none());
    store
        .describe(
            "d",
            Some("Hourly rentals"),
            Some("ana"),
            &["demand".into(), "public".into()],
        )
        .await
        .unwrap();
    store
        .describe("d", None, None, &["demand".into()])
        .await
        .unwrap();
    let d = store.dataset("d").await.unwrap();
    assert_eq!(d.description.as_deref(), Some("Hourly rentals"));
    assert_eq!(d.owner.as_deref(), Some("ana"));
    assert_eq!(d.tags, vec!["demand", "public"]);
    store
        .record_check(
            "d",
            &v.id,
            "s",
            3,
            1,
            &serde_json::json!({ "passed": false }),
        )
        .await
        .unwrap();
    let c = store.latest_check("d", &v.id).await.unwrap().unwrap();
    assert!(!c.passed);
    assert_eq!((c.checks_total, c.checks_failed), (3, 1));
    assert_eq!(c.results["passed"], false);
}

async fn projects_in_one_store_are_isolated(b: Backend) {
    let a = b.open("alpha").await;
    let other = b.open("beta").await;
    a.create_version("d", version("one")).await.unwrap();
    assert_eq!(a.list_datasets().await.unwrap().len(), 1);
    assert!(other.list_datasets().await.unwrap().is_empty());
    assert!(matches!(
        other.dataset("d").await,
        Err(StoreError::UnknownDataset { .. })
    ));
}

async fn reopening_applies_no_migration_twice(b: Backend) {
    let first = b.open("p").await;
    first.create_version("d", version("one")).await.unwrap();
    first.close().await;
    let again = b.open("p").await;
    assert_eq!(again.versions("d").await.unwrap().len(), 1);
}

async fn concurrent_writers_get_distinct_sequence_numbers(b: Backend) {
    let store = b.open("p").await;
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = store.clone();
            tokio::spawn(async move { s.create_version("d", version(&format!("v{i}"))).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let mut seqs: Vec<i64> = store
        .versions("d")
        .await
        .unwrap()
        .iter()
        .map(|v| v.seq)
        .collect();
    seqs.sort();
    assert_eq!(seqs, (1..=6).collect::<Vec<_>>());
}
