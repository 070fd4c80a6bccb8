-- kiln metadata schema, version 1. Portable SQL: the same text runs on SQLite and
-- PostgreSQL. Integers are BIGINT, booleans are BIGINT 0/1, times are RFC 3339
-- TEXT in UTC (they sort as text), structured values are JSON TEXT.

CREATE TABLE projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE datasets (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects (id),
    name        TEXT NOT NULL,
    description TEXT,
    owner       TEXT,
    tags        TEXT NOT NULL DEFAULT '[]',
    created_at  TEXT NOT NULL,
    UNIQUE (project_id, name)
);

-- A dataset version is immutable: its id is the BLAKE3 of its content.
CREATE TABLE dataset_versions (
    dataset_id      TEXT NOT NULL REFERENCES datasets (id),
    id              TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    parent_id       TEXT,
    kind            TEXT NOT NULL,
    format          TEXT NOT NULL,
    source          TEXT NOT NULL,
    message         TEXT,
    author          TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    byte_size       BIGINT NOT NULL,
    file_count      BIGINT NOT NULL,
    row_count       BIGINT,
    schema_json     TEXT NOT NULL,
    profile_json    TEXT,
    original_object TEXT NOT NULL,
    columnar_object TEXT,
    PRIMARY KEY (dataset_id, id),
    UNIQUE (dataset_id, seq)
);

CREATE TABLE version_tags (
    dataset_id  TEXT NOT NULL REFERENCES datasets (id),
    tag         TEXT NOT NULL,
    version_id  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (dataset_id, tag),
    FOREIGN KEY (dataset_id, version_id) REFERENCES dataset_versions (dataset_id, id)
);

CREATE TABLE check_results (
    id           TEXT PRIMARY KEY,
    dataset_id   TEXT NOT NULL,
    version_id   TEXT NOT NULL,
    suite_hash   TEXT NOT NULL,
    passed       BIGINT NOT NULL,
    checks_total BIGINT NOT NULL,
    checks_failed BIGINT NOT NULL,
    results_json TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    FOREIGN KEY (dataset_id, version_id) REFERENCES dataset_versions (dataset_id, id)
);
CREATE INDEX check_results_by_version ON check_results (dataset_id, version_id, created_at);

-- Lineage: a directed edge between two kiln entities, e.g.
-- dataset_version:<dataset>@<id> --derived_from--> dataset_version:<dataset>@<parent>.
CREATE TABLE lineage_edges (
    project_id  TEXT NOT NULL REFERENCES projects (id),
    src_kind    TEXT NOT NULL,
    src_id      TEXT NOT NULL,
    relation    TEXT NOT NULL,
    dst_kind    TEXT NOT NULL,
    dst_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (src_kind, src_id, relation, dst_kind, dst_id)
);
CREATE INDEX lineage_by_dst ON lineage_edges (dst_kind, dst_id);

-- Who did what, when: one row for every mutation, written in its transaction.
CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    project_id  TEXT,
    at          TEXT NOT NULL,
    actor       TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_kind TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_by_project ON audit_log (project_id, at);
