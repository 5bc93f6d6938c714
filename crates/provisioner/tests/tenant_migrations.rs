#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A tenant database's migrations against a real PostgreSQL: loading a directory (and what it
//! refuses), applying in order, each file once and in its own transaction, the no-transaction
//! marker, the Supabase CLI's history table, drift, tenants provisioned before migrations,
//! concurrent appliers and a crash mid-file; and the same through the sandbox's SQL endpoint.

mod support;
mod tenant_support;

use std::time::Duration;

use provisioner::templates::{MigrationSet, TemplateError};
use provisioner::tenant_db::{
    self, AppliedMigration, MigrationDrift, SqlEndpoint, TenantDbError, apply_migrations,
    migration_state,
};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tenant_support::Cluster;

/// A migrations directory holding `files`.
fn dir_of(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The set loaded from a directory of `files`.
fn set_of(files: &[(&str, &str)]) -> MigrationSet {
    let bytes: Vec<(&str, &[u8])> = files.iter().map(|(n, t)| (*n, t.as_bytes())).collect();
    let dir = dir_of(&bytes);
    MigrationSet::from_dir(dir.path()).unwrap_or_else(|e| panic!("the set loads: {e}"))
}

fn load_error(files: &[(&str, &[u8])]) -> TemplateError {
    let dir = dir_of(files);
    MigrationSet::from_dir(dir.path()).expect_err("the directory is refused")
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

async fn public_tables(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

/// `(version, name, statements)` of every row of the CLI's table, by version.
async fn cli_history(conn: &mut PgConnection) -> Vec<(String, Option<String>, Vec<String>)> {
    sqlx::query_as(
        "SELECT version, name, statements FROM supabase_migrations.schema_migrations \
         ORDER BY version",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

const FIRST: &str = "-- the first table\nCREATE TABLE public.alpha (id int PRIMARY KEY);\n";
const SECOND: &str = "CREATE TABLE public.beta (id int PRIMARY KEY REFERENCES public.alpha);\n\
                      INSERT INTO public.alpha VALUES (1);\nINSERT INTO public.beta VALUES (1);\n";
const TENTH: &str = "ALTER TABLE public.beta ADD COLUMN note text;\n";

#[test]
fn a_directory_loads_in_version_order_and_ignores_what_is_not_a_migration() {
    let dir = dir_of(&[
        ("0010_note.sql", TENTH.as_bytes()),
        ("0001_alpha.sql", FIRST.as_bytes()),
        ("2_beta-table.sql", SECOND.as_bytes()),
        ("README.md", b"not a migration"),
        (".0003_hidden.sql", b"not a migration either"),
    ]);
    std::fs::create_dir(dir.path().join("0004_a_directory.sql")).unwrap();
    let set = MigrationSet::from_dir(dir.path()).unwrap();
    let versions: Vec<&str> = set
        .migrations()
        .iter()
        .map(|m| m.version.as_str())
        .collect();
    assert_eq!(versions, vec!["0001", "2", "0010"], "gaps are allowed");
    assert_eq!(set.latest_version(), "0010");
    assert_eq!(set.migrations()[1].name, "beta-table");
    assert_eq!(
        set.migrations()[1].statements,
        strings(&[
            "CREATE TABLE public.beta (id int PRIMARY KEY REFERENCES public.alpha)",
            "INSERT INTO public.alpha VALUES (1)",
            "INSERT INTO public.beta VALUES (1)",
        ])
    );
    assert_eq!(
        set.migrations()[0].statements,
        strings(&["CREATE TABLE public.alpha (id int PRIMARY KEY)"]),
        "the comment before a statement is not part of it"
    );
    assert_eq!(
        set.migrations()[0].checksum,
        tenant_db::schema_checksum(FIRST)
    );
    assert_eq!(
        set.get("10").map(|m| m.file_name.as_str()),
        Some("0010_note.sql")
    );
    assert_eq!(set.get("0002").map(|m| m.name.as_str()), Some("beta-table"));
    assert!(set.get("3").is_none());

    let cut = set.up_to("2").unwrap();
    assert_eq!(cut.latest_version(), "2");
    assert_eq!(cut.migrations().len(), 2);
    assert!(
        cut.get("10").is_none(),
        "a cut set does not apply what comes after"
    );
    let err = set.up_to("0007").unwrap_err();
    assert!(
        matches!(&err, TemplateError::UnknownMigrationVersion { version, known }
            if version == "0007" && known == &strings(&["0001", "2", "0010"])),
        "{err:?}"
    );
    assert!(err.to_string().contains("0007") && err.to_string().contains("0001, 2, 0010"));
}

#[test]
fn the_built_in_schema_is_migration_0001_byte_for_byte_as_the_old_schema_file() {
    let set = MigrationSet::built_in().unwrap();
    assert_eq!(set.migrations().len(), 1);
    let first = &set.migrations()[0];
    assert_eq!(
        (first.version.as_str(), first.name.as_str()),
        ("0001", "init")
    );
    // The checksum tenants provisioned from the old templates/schema.sql have recorded.
    assert_eq!(
        first.checksum,
        "ea76ded0986ae6e1ab904ee50b38af9c096e9004a547e1bacc2efcdd6f634e3e"
    );
    assert!(!first.outside_transaction);
}

/// A directory's files (name, bytes) and the words its refusal must hold.
type RefusedCase = (Vec<(&'static str, &'static [u8])>, &'static [&'static str]);

#[test]
fn bad_directories_and_files_are_refused_naming_the_file_and_the_rule() {
    let cases: Vec<RefusedCase> = vec![
        (vec![], &["holds no migration", "NNNN_name.sql"]),
        (
            vec![("README.md", b"x")],
            &["holds no migration"],
        ),
        (
            vec![("add_table.sql", b"SELECT 1;")],
            &["\"add_table.sql\"", "is not all digits"],
        ),
        (
            vec![("0001-init.sql", b"SELECT 1;")],
            &["\"0001-init.sql\"", "no `_`"],
        ),
        (
            vec![("0001_.sql", b"SELECT 1;")],
            &["\"0001_.sql\"", "no name"],
        ),
        (
            vec![("0001_in it.sql", b"SELECT 1;")],
            &["\"0001_in it.sql\"", "' '"],
        ),
        (
            vec![("0000_zero.sql", b"SELECT 1;")],
            &["\"0000_zero.sql\"", "versions start at 1"],
        ),
        (
            vec![("0001_init.SQL", b"SELECT 1;")],
            &["\"0001_init.SQL\"", "does not end in .sql"],
        ),
        (
            vec![("1_a.sql", b"SELECT 1;"), ("0001_b.sql", b"SELECT 2;")],
            &["\"0001_b.sql\"", "\"1_a.sql\"", "same version"],
        ),
        (
            vec![("0001_latin1.sql", b"SELECT 'caf\xe9';")],
            &["0001_latin1.sql", "not UTF-8", "offset 11"],
        ),
        (
            vec![("0001_comments.sql", b"-- nothing yet\n")],
            &["0001_comments.sql", "holds no SQL statement"],
        ),
        (
            vec![("0001_meta.sql", b"\\i other.sql\n")],
            &["0001_meta.sql", "parser rejects it"],
        ),
        (
            vec![(
                "0001_commits.sql",
                b"CREATE TABLE public.a (id int);\nCOMMIT;\n",
            )],
            &["0001_commits.sql", "line 2: `COMMIT`", "transaction control"],
        ),
        (
            vec![(
                "0002_index.sql",
                b"CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id ON public.a (id);\n",
            )],
            &[
                "0002_index.sql",
                "line 1",
                "-- provisioner:no-transaction",
            ],
        ),
        (
            vec![(
                "0002_two.sql",
                b"-- provisioner:no-transaction\n\
                  CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id ON public.a (id);\n\
                  CREATE INDEX CONCURRENTLY IF NOT EXISTS a_id2 ON public.a (id);\n",
            )],
            &["0002_two.sql", "exactly one statement", "holds 2", "line 3"],
        ),
        (
            vec![(
                "0002_bare.sql",
                b"-- provisioner:no-transaction\nCREATE INDEX CONCURRENTLY a_id ON public.a (id);\n",
            )],
            &["0002_bare.sql", "without IF NOT EXISTS", "run again"],
        ),
        (
            vec![(
                "0002_drop.sql",
                b"-- provisioner:no-transaction\nDROP INDEX CONCURRENTLY public.a_id;\n",
            )],
            &["0002_drop.sql", "without IF EXISTS"],
        ),
        (
            vec![(
                "0002_role.sql",
                b"-- provisioner:no-transaction\nSET ROLE anon;\n",
            )],
            &["0002_role.sql", "changes the role"],
        ),
    ];
    for (files, expected) in cases {
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        let message = load_error(&files).to_string();
        for part in expected {
            assert!(
                message.contains(part),
                "{names:?}: {part:?} not in: {message}"
            );
        }
    }
    let missing = MigrationSet::from_dir(std::path::Path::new("/nonexistent/migrations"))
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("/nonexistent/migrations") && missing.contains("templates.migrations"),
        "{missing}"
    );
}

#[tokio::test]
async fn migrations_apply_in_order_once_and_are_recorded_as_the_supabase_cli_records_them() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    let set = set_of(&[
        ("0010_note.sql", TENTH),
        ("0002_beta.sql", SECOND),
        ("0001_alpha.sql", FIRST),
    ]);

    let before = migration_state(&url, &set).await.unwrap();
    assert!(before.applied.is_empty());
    assert_eq!(before.pending, strings(&["0001", "0002", "0010"]));
    assert_eq!(before.version(), None);
    let mut owner = project.owner(&cluster).await;
    let created: Option<String> =
        sqlx::query_scalar("SELECT to_regnamespace('supabase_migrations')::text")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert_eq!(created, None, "reading the state creates nothing");

    let applied = apply_migrations(&url, &set).await.unwrap();
    assert_eq!(applied.applied_now, strings(&["0001", "0002", "0010"]));
    assert!(applied.already_applied.is_empty());
    assert_eq!(applied.version, "0010");
    assert_eq!(public_tables(&mut owner).await, strings(&["alpha", "beta"]));

    // The CLI's table: exactly its columns and types, one row per file.
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text, is_nullable::text \
         FROM information_schema.columns \
         WHERE table_schema = 'supabase_migrations' AND table_name = 'schema_migrations' \
         ORDER BY ordinal_position",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        columns,
        vec![
            ("version".into(), "text".into(), "NO".into()),
            ("statements".into(), "ARRAY".into(), "YES".into()),
            ("name".into(), "text".into(), "YES".into()),
        ]
    );
    let primary_key: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         WHERE i.indrelid = 'supabase_migrations.schema_migrations'::regclass AND i.indisprimary",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(primary_key, strings(&["version"]));
    let element_type: String = sqlx::query_scalar(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute \
         WHERE attrelid = 'supabase_migrations.schema_migrations'::regclass \
         AND attname = 'statements'",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(element_type, "text[]");
    let history = cli_history(&mut owner).await;
    let expected: Vec<(String, Option<String>, Vec<String>)> = set
        .migrations()
        .iter()
        .map(|m| {
            (
                m.version.clone(),
                Some(m.name.clone()),
                m.statements.clone(),
            )
        })
        .collect();
    assert_eq!(history, expected);
    assert_eq!(history[1].2.len(), 3, "the second file's three statements");

    // Our checksums beside it, out of the API roles' reach.
    let checksums: Vec<(String, String)> =
        sqlx::query_as("SELECT version, checksum FROM provisioner.migration_checksums ORDER BY 1")
            .fetch_all(&mut owner)
            .await
            .unwrap();
    let expected: Vec<(String, String)> = set
        .migrations()
        .iter()
        .map(|m| (m.version.clone(), m.checksum.clone()))
        .collect();
    assert_eq!(checksums, expected);
    for role in ["anon", "authenticated"] {
        let mut tx = owner.begin().await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("SET LOCAL ROLE {role}")))
            .execute(&mut *tx)
            .await
            .unwrap();
        let read = sqlx::raw_sql("SELECT * FROM provisioner.migration_checksums")
            .execute(&mut *tx)
            .await;
        let message = read
            .expect_err("the API roles cannot read our checksums")
            .to_string();
        assert!(message.contains("permission denied"), "{role}: {message}");
    }

    // Again: nothing runs (SECOND's inserts would fail on their primary keys if it did).
    let again = apply_migrations(&url, &set).await.unwrap();
    assert!(again.applied_now.is_empty(), "{again:?}");
    assert_eq!(again.already_applied, strings(&["0001", "0002", "0010"]));
    let state = migration_state(&url, &set).await.unwrap();
    assert!(
        state.pending.is_empty() && state.drift.is_empty(),
        "{state:?}"
    );
    assert_eq!(state.version(), Some("0010"));
    assert_eq!(
        state.applied[0],
        AppliedMigration {
            version: "0001".into(),
            name: Some("alpha".into()),
            checksum: Some(set.migrations()[0].checksum.clone()),
        }
    );
    let _ = owner.close().await;
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_failing_file_keeps_nothing_of_itself_and_the_earlier_files_stay_applied() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    let set = set_of(&[
        ("0001_alpha.sql", FIRST),
        (
            "0002_broken.sql",
            "CREATE TABLE public.half (id int);\n\n-- the mistake:\nINSERT INTO public.missing\n  VALUES (1);\n",
        ),
    ]);

    let err = apply_migrations(&url, &set).await.unwrap_err();
    match &err {
        TenantDbError::MigrationFailed {
            version,
            file_name,
            statement,
            line,
            code,
            message,
            outside_transaction,
            ..
        } => {
            assert_eq!(version, "0002");
            assert_eq!(file_name, "0002_broken.sql");
            assert_eq!(statement, "INSERT INTO public.missing…");
            assert_eq!(*line, Some(4));
            assert_eq!(code.as_deref(), Some("42P01"));
            assert!(message.contains("public.missing"), "{message}");
            assert!(!outside_transaction);
        }
        other => panic!("expected MigrationFailed, got {other:?}"),
    }
    let text = err.to_string();
    for part in [
        "migration 0002_broken.sql (version 0002) failed at line 4",
        "`INSERT INTO public.missing…`",
        "(SQLSTATE 42P01)",
        "nothing of this file was kept; earlier files stay applied",
    ] {
        assert!(text.contains(part), "{part:?} not in: {text}");
    }
    assert!(!err.is_retryable());

    let mut owner = project.owner(&cluster).await;
    assert_eq!(public_tables(&mut owner).await, strings(&["alpha"]));
    let state = migration_state(&url, &set).await.unwrap();
    assert_eq!(state.version(), Some("0001"));
    assert_eq!(state.pending, strings(&["0002"]));

    // A failure PostgreSQL gives no position for is named by the statement that failed.
    let set = set_of(&[
        ("0001_alpha.sql", FIRST),
        (
            "0002_twice.sql",
            "INSERT INTO public.alpha VALUES (7);\nCREATE TABLE public.kept_out (id int);\n\
             INSERT INTO public.alpha VALUES (7);\n",
        ),
    ]);
    let err = apply_migrations(&url, &set).await.unwrap_err();
    assert!(
        matches!(&err, TenantDbError::MigrationFailed { statement, line: Some(3), code: Some(code), .. }
            if statement == "INSERT INTO public.alpha VALUES (7)" && code == "23505"),
        "{err:?}"
    );
    assert_eq!(public_tables(&mut owner).await, strings(&["alpha"]));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM public.alpha")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(rows, 0, "the failed file's first insert was rolled back");
    let _ = owner.close().await;
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_no_transaction_file_runs_create_index_concurrently_and_reruns_if_never_recorded() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    let index = "-- provisioner:no-transaction\n\
                 CREATE INDEX CONCURRENTLY IF NOT EXISTS alpha_by_id ON public.alpha (id);\n";
    let set = set_of(&[("0001_alpha.sql", FIRST), ("0002_index.sql", index)]);
    assert!(set.migrations()[1].outside_transaction);
    assert!(!set.migrations()[0].outside_transaction);

    let applied = apply_migrations(&url, &set).await.unwrap();
    assert_eq!(applied.applied_now, strings(&["0001", "0002"]));
    let mut owner = project.owner(&cluster).await;
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.alpha_by_id')",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert_eq!(valid, Some(true));
    assert_eq!(
        cli_history(&mut owner).await[1].2,
        strings(&["CREATE INDEX CONCURRENTLY IF NOT EXISTS alpha_by_id ON public.alpha (id)"])
    );

    // The process died after the statement ran and before it was recorded: the index is
    // there, the record is not. The next apply runs the statement again (IF NOT EXISTS makes
    // that harmless) and records it.
    sqlx::raw_sql(
        "DELETE FROM supabase_migrations.schema_migrations WHERE version = '0002'; \
         DELETE FROM provisioner.migration_checksums WHERE version = '0002'",
    )
    .execute(&mut owner)
    .await
    .unwrap();
    let state = migration_state(&url, &set).await.unwrap();
    assert_eq!(state.pending, strings(&["0002"]));
    let again = apply_migrations(&url, &set).await.unwrap();
    assert_eq!(again.applied_now, strings(&["0002"]));
    assert_eq!(again.already_applied, strings(&["0001"]));
    assert_eq!(cli_history(&mut owner).await.len(), 2);

    // A failing one says that what it did may remain.
    let set = set_of(&[
        ("0001_alpha.sql", FIRST),
        ("0002_index.sql", index),
        (
            "0003_unique.sql",
            "-- provisioner:no-transaction\n\
             CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS alpha_constant ON public.alpha ((1));\n",
        ),
    ]);
    sqlx::raw_sql("INSERT INTO public.alpha VALUES (1), (2)")
        .execute(&mut owner)
        .await
        .unwrap();
    let err = apply_migrations(&url, &set).await.unwrap_err();
    assert!(
        matches!(&err, TenantDbError::MigrationFailed { file_name, outside_transaction: true, line: Some(2), .. }
            if file_name == "0003_unique.sql"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("ran outside a transaction")
            && err.to_string().contains("invalid index"),
        "{err}"
    );
    let state = migration_state(&url, &set).await.unwrap();
    assert_eq!(state.pending, strings(&["0003"]));
    let _ = owner.close().await;
    project.drop(&cluster).await;
}

#[tokio::test]
async fn an_edited_applied_file_is_reported_and_refused_and_an_unknown_version_is_reported() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    let set = set_of(&[("0001_alpha.sql", FIRST), ("0002_beta.sql", SECOND)]);
    apply_migrations(&url, &set).await.unwrap();

    // 0001 edited after it was applied, and a new 0003.
    let edited = set_of(&[
        (
            "0001_alpha.sql",
            "CREATE TABLE public.alpha (id bigint PRIMARY KEY);\n",
        ),
        ("0002_beta.sql", SECOND),
        ("0003_gamma.sql", "CREATE TABLE public.gamma (id int);\n"),
    ]);
    let state = migration_state(&url, &edited).await.unwrap();
    assert_eq!(
        state.drift,
        vec![MigrationDrift::Edited {
            version: "0001".into(),
            file_name: "0001_alpha.sql".into(),
        }]
    );
    assert_eq!(state.pending, strings(&["0003"]));
    let err = apply_migrations(&url, &edited).await.unwrap_err();
    let TenantDbError::MigrationDrift { drift } = &err else {
        panic!("expected MigrationDrift, got {err:?}");
    };
    assert_eq!(drift, &state.drift);
    let text = err.to_string();
    assert!(text.contains("nothing was run"), "{text}");
    assert!(
        text.contains("version 0001 was applied from a different 0001_alpha.sql")
            && text.contains("put the change in a new migration"),
        "{text}"
    );
    let mut owner = project.owner(&cluster).await;
    assert_eq!(
        public_tables(&mut owner).await,
        strings(&["alpha", "beta"]),
        "0003 did not run"
    );

    // A set without 0002: the tenant has a version no file has.
    let fewer = set_of(&[("0001_alpha.sql", FIRST)]);
    let state = migration_state(&url, &fewer).await.unwrap();
    assert_eq!(
        state.drift,
        vec![MigrationDrift::Unknown {
            version: "0002".into(),
            name: Some("beta".into()),
        }]
    );
    let err = apply_migrations(&url, &fewer).await.unwrap_err();
    assert!(
        err.to_string().contains(
            "version 0002 (beta) is applied in the database but no migration file has it"
        ),
        "{err}"
    );
    // Cut with --to below what the tenant has: ahead, not unknown, and nothing to do.
    let cut = set.up_to("1").unwrap();
    let state = migration_state(&url, &cut).await.unwrap();
    assert!(
        state.drift.is_empty() && state.pending.is_empty(),
        "{state:?}"
    );
    let applied = apply_migrations(&url, &cut).await.unwrap();
    assert!(applied.applied_now.is_empty());
    assert_eq!(applied.version, "0002");
    let _ = owner.close().await;
    project.drop(&cluster).await;
}

/// A tenant as the schema step made them before migrations: the one schema file run, its
/// checksum in `provisioner.schema_versions`.
async fn provision_the_old_way(owner: &mut PgConnection, schema: &str) {
    sqlx::raw_sql(AssertSqlSafe(schema))
        .execute(&mut *owner)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE SCHEMA provisioner;
         REVOKE ALL ON SCHEMA provisioner FROM PUBLIC;
         CREATE TABLE provisioner.schema_versions (
             checksum text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());
         REVOKE ALL ON provisioner.schema_versions FROM PUBLIC;",
    )
    .execute(&mut *owner)
    .await
    .unwrap();
    sqlx::query("INSERT INTO provisioner.schema_versions (checksum) VALUES ($1)")
        .bind(tenant_db::schema_checksum(schema))
        .execute(&mut *owner)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenant_provisioned_before_migrations_has_0001_recorded_without_running_it() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    let built_in = MigrationSet::built_in().unwrap();
    let first = &built_in.migrations()[0];
    let mut owner = project.owner(&cluster).await;
    provision_the_old_way(&mut owner, &first.sql).await;

    let set = MigrationSet::from_files(
        "test",
        [
            (first.file_name.clone(), first.sql.as_bytes().to_vec()),
            (
                "0002_later_notes.sql".to_owned(),
                b"CREATE TABLE public.later_notes (id int);\n".to_vec(),
            ),
        ],
    )
    .unwrap();
    let state = migration_state(&url, &set).await.unwrap();
    assert!(state.drift.is_empty(), "{state:?}");
    assert_eq!(state.version(), Some("0001"));
    assert_eq!(state.pending, strings(&["0002"]));

    // Running 0001 again would fail: its CREATE TABLEs have no IF NOT EXISTS.
    let applied = apply_migrations(&url, &set).await.unwrap();
    assert_eq!(applied.applied_now, strings(&["0002"]));
    assert_eq!(applied.already_applied, strings(&["0001"]));
    assert_eq!(applied.version, "0002");
    let history = cli_history(&mut owner).await;
    assert_eq!(
        history
            .iter()
            .map(|(v, n, _)| (v.as_str(), n.as_deref()))
            .collect::<Vec<_>>(),
        vec![("0001", Some("init")), ("0002", Some("later_notes"))]
    );
    assert_eq!(history[0].2, first.statements);
    let state = migration_state(&url, &set).await.unwrap();
    assert_eq!(
        state.applied[0].checksum.as_deref(),
        Some(first.checksum.as_str())
    );

    // An old-way tenant given some other schema file is drift, refused.
    let other = cluster.bootstrapped_project().await;
    let mut other_owner = other.owner(&cluster).await;
    provision_the_old_way(&mut other_owner, "CREATE TABLE public.custom (id int);").await;
    let other_url = other.owner_url(&cluster);
    let state = migration_state(&other_url, &set).await.unwrap();
    assert_eq!(
        state.drift,
        vec![MigrationDrift::UnrecognisedLegacySchema {
            checksum: tenant_db::schema_checksum("CREATE TABLE public.custom (id int);"),
        }]
    );
    let err = apply_migrations(&other_url, &set).await.unwrap_err();
    assert!(
        err.to_string().contains("before migrations existed"),
        "{err}"
    );
    assert_eq!(public_tables(&mut other_owner).await, strings(&["custom"]));
    let _ = other_owner.close().await;
    let _ = owner.close().await;
    other.drop(&cluster).await;
    project.drop(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_applies_run_each_file_exactly_once() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    // Every file fails if it runs twice (CREATE TABLE without IF NOT EXISTS, a primary key).
    let set = set_of(&[
        ("0001_alpha.sql", FIRST),
        ("0002_beta.sql", SECOND),
        (
            "0003_index.sql",
            "-- provisioner:no-transaction\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS beta_by_id ON public.beta (id);\n",
        ),
        (
            "0004_gamma.sql",
            "CREATE TABLE public.gamma (id int PRIMARY KEY);\nINSERT INTO public.gamma VALUES (1);\n",
        ),
    ]);
    let appliers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            let set = set.clone();
            tokio::spawn(async move { apply_migrations(&url, &set).await })
        })
        .collect();
    let mut ran: Vec<String> = Vec::new();
    for applier in appliers {
        let applied = applier.await.unwrap().unwrap();
        assert_eq!(applied.version, "0004");
        ran.extend(applied.applied_now);
    }
    ran.sort();
    assert_eq!(ran, strings(&["0001", "0002", "0003", "0004"]));
    let mut owner = project.owner(&cluster).await;
    assert_eq!(cli_history(&mut owner).await.len(), 4);
    let _ = owner.close().await;
    project.drop(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_lost_mid_file_keeps_nothing_and_the_next_apply_runs_the_file_once() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    // Sleeps while the database's test setting says so, so the test can kill it mid-file.
    let set = set_of(&[
        ("0001_alpha.sql", FIRST),
        (
            "0002_slow.sql",
            "CREATE TABLE public.once (id int);\n\
             SELECT pg_sleep(CASE WHEN current_setting('provisioner_test.slow', true) = 'on' \
             THEN 60 ELSE 0 END);\n",
        ),
    ]);
    let mut admin = cluster.admin().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" SET provisioner_test.slow = 'on'",
        project.database
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let applier = {
        let url = url.clone();
        let set = set.clone();
        tokio::spawn(async move { apply_migrations(&url, &set).await })
    };
    let mut killed = false;
    for _ in 0..200 {
        let terminated: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND query LIKE '%pg_sleep%' AND state = 'active' \
             AND pid <> pg_backend_pid()",
        )
        .bind(&project.database)
        .fetch_all(&mut admin)
        .await
        .unwrap();
        if terminated.iter().any(|t| *t) {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(killed, "the slow file was seen running");
    let err = applier.await.unwrap().unwrap_err();
    assert!(
        !matches!(err, TenantDbError::MigrationDrift { .. }),
        "{err:?}"
    );
    let state = migration_state(&url, &set).await.unwrap();
    assert_eq!(state.version(), Some("0001"));
    assert_eq!(state.pending, strings(&["0002"]));
    let mut owner = project.owner(&cluster).await;
    assert_eq!(
        public_tables(&mut owner).await,
        strings(&["alpha"]),
        "nothing of the killed file remains"
    );

    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER DATABASE \"{}\" RESET provisioner_test.slow",
        project.database
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    // CREATE TABLE public.once would fail had any of the first run been kept.
    let applied = apply_migrations(&url, &set).await.unwrap();
    assert_eq!(applied.applied_now, strings(&["0002"]));
    assert_eq!(public_tables(&mut owner).await, strings(&["alpha", "once"]));
    let _ = owner.close().await;
    let _ = admin.close().await;
    project.drop(&cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_the_sql_endpoint_migrations_keep_the_same_guarantees() {
    let Some(admin_url) = support::admin_url().await else {
        return;
    };
    let sandbox = support::sandbox_with(&admin_url, |_| {}).await;
    let stack = support::stack_for(&sandbox, support::quick_settings());
    let project = stack
        .supabase
        .create_project(&providers::supabase::CreateProject {
            name: format!("client-{}-prod", support::unique_slug("migsql")),
            organization_slug: stack.env.supabase_org_slug.clone(),
            db_pass: SecretString::from(format!("pw-{}", uuid::Uuid::new_v4().simple())),
            region_selection: Some(providers::supabase::RegionSelection::Specific {
                code: stack.settings.supabase.region.clone(),
            }),
            desired_instance_size: None,
        })
        .await
        .unwrap();
    let project_ref = project.project_ref;
    stack
        .supabase_projects
        .wait(
            &stack.env.supabase_org_slug,
            &project_ref,
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let endpoint = SqlEndpoint::new(stack.supabase.clone(), &project_ref);
    let mut admin = {
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/sandbox_{project_ref}"));
        PgConnection::connect(url.as_str()).await.unwrap()
    };

    // An old-way tenant: adopted as 0001 without running it.
    let built_in = MigrationSet::built_in().unwrap();
    let first = &built_in.migrations()[0];
    // As the project's own role, which the endpoint acts as.
    sqlx::raw_sql(AssertSqlSafe(format!("SET ROLE \"sandbox_{project_ref}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    provision_the_old_way(&mut admin, &first.sql).await;
    sqlx::raw_sql("RESET ROLE")
        .execute(&mut admin)
        .await
        .unwrap();
    let set = MigrationSet::from_files(
        "test",
        [
            (first.file_name.clone(), first.sql.as_bytes().to_vec()),
            (
                "0002_later_notes.sql".to_owned(),
                b"CREATE TABLE public.later_notes (id int PRIMARY KEY);\nINSERT INTO public.later_notes VALUES (1);\n"
                    .to_vec(),
            ),
            (
                "0003_index.sql".to_owned(),
                b"-- provisioner:no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS later_notes_by_id ON public.later_notes (id);\n"
                    .to_vec(),
            ),
        ],
    )
    .unwrap();
    let state = tenant_db::migration_state_over_endpoint(&endpoint, &set)
        .await
        .unwrap();
    assert!(state.drift.is_empty(), "{state:?}");
    assert_eq!(state.version(), Some("0001"));
    assert_eq!(state.pending, strings(&["0002", "0003"]));

    // Two appliers at once: each transactional file runs once (0002's insert would fail
    // twice), and both answer the same version.
    let (a, b) = tokio::join!(
        tenant_db::apply_migrations_over_endpoint(&endpoint, &set),
        tenant_db::apply_migrations_over_endpoint(&endpoint, &set),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.version.as_str(), b.version.as_str()), ("0003", "0003"));
    assert!(
        a.applied_now.contains(&"0002".to_owned()) != b.applied_now.contains(&"0002".to_owned()),
        "{a:?} {b:?}"
    );
    let history = cli_history(&mut admin).await;
    assert_eq!(
        history
            .iter()
            .map(|(v, n, _)| (v.as_str(), n.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            ("0001", Some("init")),
            ("0002", Some("later_notes")),
            ("0003", Some("index"))
        ]
    );
    assert_eq!(history[1].2, set.migrations()[1].statements);
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('public.later_notes_by_id')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(valid, Some(true));

    // A failing file keeps nothing and is named; an edited one is drift.
    let mut files: Vec<(String, Vec<u8>)> = set
        .migrations()
        .iter()
        .map(|m| (m.file_name.clone(), m.sql.as_bytes().to_vec()))
        .collect();
    files.push((
        "0004_broken.sql".to_owned(),
        b"CREATE TABLE public.half (id int);\nINSERT INTO public.later_notes VALUES (1);\n"
            .to_vec(),
    ));
    let broken = MigrationSet::from_files("test", files.clone()).unwrap();
    let err = tenant_db::apply_migrations_over_endpoint(&endpoint, &broken)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, TenantDbError::MigrationFailed { file_name, statement, line: Some(2), code: Some(code), .. }
            if file_name == "0004_broken.sql" && statement == "INSERT INTO public.later_notes VALUES (1)" && code == "23505"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("nothing of this file was kept; earlier files stay applied"),
        "{err}"
    );
    let half: Option<String> = sqlx::query_scalar("SELECT to_regclass('public.half')::text")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(half, None);
    files[1].1 = b"CREATE TABLE public.later_notes (id bigint PRIMARY KEY);\n".to_vec();
    let edited = MigrationSet::from_files("test", files).unwrap();
    let state = tenant_db::migration_state_over_endpoint(&endpoint, &edited)
        .await
        .unwrap();
    assert_eq!(
        state.drift,
        vec![MigrationDrift::Edited {
            version: "0002".into(),
            file_name: "0002_later_notes.sql".into(),
        }]
    );
    let err = tenant_db::apply_migrations_over_endpoint(&endpoint, &edited)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TenantDbError::MigrationDrift { .. }),
        "{err:?}"
    );
    let _ = admin.close().await;
    sandbox.shutdown().await;
}
