//! Walking the lineage graph: from a dataset version, a run or a model
//! version, what it came from (upstream) and what came from it (downstream).
//!
//! Edges point upstream: `src --relation--> dst` means src was made from or
//! by dst (a run *used* a dataset version, a model version was *registered
//! from* a run).

use std::collections::HashSet;

use kiln_store::{MetaStore, StoreError, VersionSpec};
use serde::Serialize;

use crate::{ProjectError, Result};

/// One entity in the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Node {
    /// dataset_version, run, model_version, logged_model, model_artifact, …
    pub kind: String,
    pub id: String,
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let short = match self.kind.as_str() {
            "run" | "model_artifact" => self.id.chars().take(12).collect::<String>(),
            "dataset_version" => match self.id.split_once('@') {
                Some((n, v)) => format!("{n}@{}", &v[..v.len().min(12)]),
                None => self.id.clone(),
            },
            _ => self.id.clone(),
        };
        write!(f, "{} {short}", self.kind.replace('_', " "))
    }
}

/// A node with the edges walked from it.
#[derive(Clone, Debug, Serialize)]
pub struct Tree {
    #[serde(flatten)]
    pub node: Node,
    /// How the parent relates to this node (None at the root).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upstream: Vec<Tree>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub downstream: Vec<Tree>,
}

/// Resolves what a user typed: `MODEL@VERSION` or `MODEL@ALIAS` for a
/// registered model, `DATASET@VERSION` (tag, id prefix, `latest`), or a
/// run id (prefix).
pub async fn resolve(meta: &MetaStore, reference: &str) -> Result<Node> {
    if let Some((name, spec)) = reference.split_once('@') {
        // A model and a dataset may share a name: a model version or alias
        // wins, then a dataset version.
        let model = if meta.registered_model(name).await.is_ok() {
            match spec.parse::<i64>() {
                Ok(v) => Some(meta.model_version(name, v).await),
                Err(_) => Some(meta.model_version_by_alias(name, spec).await),
            }
        } else {
            None
        };
        if let Some(Ok(version)) = model {
            return Ok(Node {
                kind: "model_version".into(),
                id: format!("{}/{}", version.name, version.version),
            });
        }
        return match meta.resolve(name, &VersionSpec::parse(spec)).await {
            Ok(v) => Ok(Node {
                kind: "dataset_version".into(),
                id: format!("{}@{}", v.dataset, v.id.to_hex()),
            }),
            Err(e) => match model {
                Some(Err(model_error)) => Err(model_error.into()),
                _ => Err(e.into()),
            },
        };
    }
    if let Some(m) = reference.strip_prefix("m-") {
        let id = format!("m-{m}");
        meta.logged_model(&id).await?;
        return Ok(Node {
            kind: "logged_model".into(),
            id,
        });
    }
    match meta.run(reference).await {
        Ok(r) => Ok(Node {
            kind: "run".into(),
            id: r.id,
        }),
        Err(StoreError::UnknownRun(_)) => {
            if let Ok(v) = meta.resolve(reference, &VersionSpec::Latest).await {
                return Ok(Node {
                    kind: "dataset_version".into(),
                    id: format!("{}@{}", v.dataset, v.id.to_hex()),
                });
            }
            Err(ProjectError::WrongKind(format!(
                "`{reference}` names no run, model version (`MODEL@VERSION` or `MODEL@ALIAS`) or \
                 dataset version (`DATASET@VERSION`) in this project"
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// Walks `depth` edges up and down from `root`.
pub async fn walk(meta: &MetaStore, root: Node, depth: usize) -> Result<Tree> {
    let mut seen = HashSet::from([root.clone()]);
    let upstream = walk_dir(meta, &root, depth, true, &mut seen).await?;
    let mut seen = HashSet::from([root.clone()]);
    let downstream = walk_dir(meta, &root, depth, false, &mut seen).await?;
    Ok(Tree {
        node: root,
        relation: None,
        upstream,
        downstream,
    })
}

async fn walk_dir(
    meta: &MetaStore,
    from: &Node,
    depth: usize,
    up: bool,
    seen: &mut HashSet<Node>,
) -> Result<Vec<Tree>> {
    if depth == 0 {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for e in meta.lineage(&from.kind, &from.id).await? {
        let (next, relation) = if up && e.src_kind == from.kind && e.src_id == from.id {
            (
                Node {
                    kind: e.dst_kind,
                    id: e.dst_id,
                },
                e.relation.replace('_', " "),
            )
        } else if !up && e.dst_kind == from.kind && e.dst_id == from.id {
            (
                Node {
                    kind: e.src_kind,
                    id: e.src_id,
                },
                inverse(&e.relation),
            )
        } else {
            continue;
        };
        if !seen.insert(next.clone()) {
            continue;
        }
        let children = Box::pin(walk_dir(meta, &next, depth - 1, up, seen)).await?;
        let (upstream, downstream) = if up {
            (children, Vec::new())
        } else {
            (Vec::new(), children)
        };
        out.push(Tree {
            node: next,
            relation: Some(relation),
            upstream,
            downstream,
        });
    }
    Ok(out)
}

/// The relation read from the other end.
fn inverse(relation: &str) -> String {
    match relation {
        "used" => "used by",
        "produced_by" => "produced",
        "registered_from" => "registered as",
        "derived_from" => "derived into",
        "stores" => "stored in",
        "output_of" => "output",
        "deployed_from" => "deployed as",
        other => other,
    }
    .to_string()
}

/// The tree as text, one node a line, indented with box-drawing lines.
pub fn render(tree: &Tree) -> String {
    let mut out = format!("{}\n", tree.node);
    if !tree.upstream.is_empty() {
        out.push_str("upstream (what it came from):\n");
        render_children(&tree.upstream, "", &mut out, true);
    }
    if !tree.downstream.is_empty() {
        out.push_str("downstream (what came from it):\n");
        render_children(&tree.downstream, "", &mut out, false);
    }
    out
}

fn render_children(children: &[Tree], prefix: &str, out: &mut String, up: bool) {
    for (i, c) in children.iter().enumerate() {
        let last = i + 1 == children.len();
        out.push_str(&format!(
            "{prefix}{} {} {}\n",
            if last { "└─" } else { "├─" },
            c.relation.as_deref().unwrap_or(""),
            c.node
        ));
        let next = format!("{prefix}{}", if last { "   " } else { "│  " });
        render_children(if up { &c.upstream } else { &c.downstream }, &next, out, up);
    }
}
