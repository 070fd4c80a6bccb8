//! `kiln gc`: delete for good the runs marked deleted, then remove objects
//! no live record points to.
//!
//! Safe beside other writers: every writer stores its objects before it
//! records them, and refreshes the time of an object it finds already
//! stored, so an object younger than the grace period may be about to be
//! recorded and is kept.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use crate::{Project, Result};

/// What a collection found and did.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub runs_purged: Vec<String>,
    pub objects_total: usize,
    pub objects_live: usize,
    pub objects_removed: usize,
    pub bytes_removed: u64,
    /// Unreferenced, but younger than the grace period.
    pub objects_kept_young: usize,
}

impl Project {
    pub async fn gc(&self, dry_run: bool, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport {
            dry_run,
            ..GcReport::default()
        };
        let mut deleted_prefixes = Vec::new();
        for (id, uri) in self.meta.deleted_runs().await? {
            let prefix = uri
                .as_deref()
                .and_then(|u| u.strip_prefix("mlflow-artifacts:"))
                .map(|p| p.trim_matches('/').to_string());
            if !dry_run {
                self.meta.purge_run(&id, prefix.as_deref()).await?;
            }
            deleted_prefixes.extend(prefix);
            report.runs_purged.push(id);
        }
        // List the objects before reading what is live: an object written
        // after the listing is not a candidate at all.
        let objects = self.objects.list().await?;
        let (mut live, manifests) = self.meta.live_objects(&deleted_prefixes).await?;
        for m in manifests {
            let bytes = self.objects.get_bytes(&m).await?;
            if let Ok(manifest) = serde_json::from_slice::<crate::folders::Manifest>(&bytes) {
                for f in manifest.files {
                    live.insert(f.pack.unwrap_or(f.hash));
                }
            }
        }
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
        report.objects_total = objects.len();
        let mut seen = HashSet::new();
        for (hash, size, modified) in objects {
            if !seen.insert(hash) {
                continue;
            }
            if live.contains(&hash) {
                report.objects_live += 1;
            } else if modified > cutoff {
                report.objects_kept_young += 1;
            } else {
                if !dry_run {
                    self.objects.delete(&hash).await?;
                }
                report.objects_removed += 1;
                report.bytes_removed += size;
            }
        }
        Ok(report)
    }
}
