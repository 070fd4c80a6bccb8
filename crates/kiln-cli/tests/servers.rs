//! The same commands on the team deployment: PostgreSQL metadata and S3
//! objects, on the real servers `scripts/test` starts.

mod common;

use common::{BIKES, Project, bikes_with};

const CHECKS: &str = "project: team
datasets:
  bikes:
    key: datetime
    checks:
      columns:
        bikers: { range: { min: 0, max: 1000 } }
";

#[tokio::test(flavor = "multi_thread")]
async fn every_data_command_works_on_postgresql_and_s3() {
    let p = Project::on_servers().await;
    // `kiln init` with shared stores migrates them instead of making local ones.
    let yaml = std::fs::read_to_string(p.path("kiln.yaml")).unwrap();
    assert!(
        yaml.contains("objects: s3://kiln-test/") && yaml.contains("store: postgres://"),
        "{yaml}"
    );
    assert!(!p.path(".kiln/kiln.db").exists());
    p.set_config(CHECKS);
    assert!(!p.path(".kiln/objects").join("ab").exists());

    p.kiln(&["data", "add", "bikes", BIKES, "-m", "v1"]).ok();
    let again = p.kiln(&["data", "add", "bikes", BIKES]).ok();
    assert!(again.stdout.contains("Unchanged"), "{}", again.stdout);
    p.kiln(&["data", "tag", "bikes@latest", "v1"]).ok();

    let bad = p.write(
        "bad.csv",
        bikes_with(|i, f| {
            if i == 7 {
                f[13] = "-1".into();
            }
            i > 0
        }),
    );
    let refused = p
        .kiln(&["data", "add", "bikes", bad.to_str().unwrap(), "--check"])
        .code(1);
    assert!(
        refused.stderr.contains("nothing was written"),
        "{}",
        refused.stderr
    );
    p.kiln(&["data", "add", "bikes", bad.to_str().unwrap()])
        .ok();
    let check = p.kiln(&["data", "check", "bikes"]).code(1);
    assert!(check.stdout.contains("row 7: -1"), "{}", check.stdout);

    let ls = p.kiln(&["data", "ls", "--json"]).ok().json();
    assert_eq!(ls[0]["versions"], 2);
    let show = p.kiln(&["data", "show", "bikes@v1", "--json"]).ok().json();
    assert_eq!(show["version"]["row_count"], 8645);
    assert_eq!(show["latest_check"]["passed"], true);

    let d = p
        .kiln(&["data", "diff", "bikes@v1", "bikes@latest", "--json"])
        .ok()
        .json();
    assert_eq!(
        (d["rows"]["removed"].as_u64(), d["rows"]["changed"].as_u64()),
        (Some(1), Some(1))
    );

    p.kiln(&["data", "get", "bikes@v1", "-o", "v1.csv"]).ok();
    assert!(std::fs::read(p.path("v1.csv")).unwrap() == std::fs::read(BIKES).unwrap());

    for i in 0..12 {
        p.write(&format!("docs/{i}.txt"), format!("doc {i}"));
    }
    p.kiln(&["data", "add", "docs", "docs"]).ok();
    p.write("docs/3.txt", "edited");
    p.kiln(&["data", "add", "docs", "docs"]).ok();
    let log = p.kiln(&["data", "log", "docs", "--json"]).ok().json();
    let first = log[0]["id"].as_str().unwrap();
    p.kiln(&[
        "data",
        "get",
        &format!("docs@{}", &first[..12]),
        "-o",
        "docs-v1",
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(p.path("docs-v1/3.txt")).unwrap(),
        "doc 3"
    );

    // Nothing went to the local embedded stores.
    assert!(!p.path(".kiln/objects").join(&first[..2]).exists());
}
