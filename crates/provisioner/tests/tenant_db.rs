#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The schema step's database work against a real PostgreSQL.
//!
//! Every test makes its own project database the way the Supabase simulator does (owner role,
//! `CREATE DATABASE ... OWNER`, the bootstrap script as superuser; see the top of
//! `supabase_bootstrap.sql`), then works as the owner role, as the schema step will.

mod tenant_support;

use std::sync::Arc;

use provisioner::templates::MigrationSet;
use provisioner::tenant_db::{
    CheckName, CheckOptions, CheckReport, Finding, MigrationsApplied, TenantDbError,
    apply_migrations, check_schema, schema_checksum,
};
use secrecy::SecretString;
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};
use tenant_support::{BOOTSTRAP_SQL, Cluster, Project};

const TEMPLATE_SCHEMA: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../templates/migrations/0001_init.sql"
));
const N8N_TEMPLATE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../templates/n8n-workflow.json"
));
const N8N_SPEC: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../sandbox/specs/n8n-public-api-v1-subset.n8n-2.41.3.json"
));

/// `sql` given to the tenant as the schema step gives its migrations: a set of one file.
async fn apply_schema(url: &SecretString, sql: &str) -> Result<MigrationsApplied, TenantDbError> {
    let set = MigrationSet::from_files(
        "the test's fixture",
        [("0001_fixture.sql".to_owned(), sql.as_bytes().to_vec())],
    )
    .unwrap_or_else(|e| panic!("the fixture loads: {e}"));
    apply_migrations(url, &set).await
}

async fn public_tables(conn: &mut PgConnection) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    )
    .fetch_all(conn)
    .await
    .unwrap()
}

fn failures_of(report: &CheckReport, check: CheckName) -> Vec<(String, Option<String>, String)> {
    report
        .failures()
        .filter(|f| f.check == check)
        .map(|f| (f.table.clone(), f.column.clone(), f.cause.clone()))
        .collect()
}

fn findings_of(report: &CheckReport, check: CheckName) -> Vec<Finding> {
    report
        .failures()
        .filter(|f| f.check == check)
        .cloned()
        .collect()
}

fn check_passed(report: &CheckReport, check: CheckName) -> bool {
    report
        .checks
        .iter()
        .find(|c| c.check == check)
        .expect("every check is reported")
        .passed
}

#[tokio::test]
async fn the_template_applies_and_passes_every_check() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);

    let applied = apply_schema(&url, TEMPLATE_SCHEMA).await.unwrap();
    assert_eq!(applied.applied_now, vec!["0001".to_owned()]);
    assert_eq!(
        MigrationSet::built_in().unwrap().latest().checksum,
        schema_checksum(TEMPLATE_SCHEMA)
    );

    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    assert!(report.passed, "template failed its checks:\n{report}");
    let mut owner = project.owner(&cluster).await;
    let tables = public_tables(&mut owner).await;
    assert!(
        tables.len() >= 20,
        "only {} tables: {tables:?}",
        tables.len()
    );
    for wanted in [
        "organisations",
        "members",
        "contacts",
        "companies",
        "deals",
        "pipelines",
        "pipeline_stages",
        "tasks",
        "notes",
        "content_posts",
        "campaigns",
        "email_templates",
        "social_accounts",
        "media",
        "invoices",
        "subscriptions",
        "usage_events",
        "audit_log",
        "webhooks",
        "automations",
        "settings",
    ] {
        assert!(tables.iter().any(|t| t == wanted), "no table {wanted}");
    }
    let examined = |name: CheckName| {
        report
            .checks
            .iter()
            .find(|c| c.check == name)
            .expect("every check is reported")
            .relations_examined
    };
    assert!(examined(CheckName::RlsEnabled) >= 20, "{report}");
    assert!(
        examined(CheckName::SelectableAsAuthenticated) >= 20,
        "{report}"
    );
    // Anon reads nothing; the secret-looking columns members read are their own tenant's.
    assert_eq!(examined(CheckName::NoAnonSecretColumns), 0, "{report}");
    assert!(examined(CheckName::NoSharedSecretColumns) >= 2, "{report}");
    // Every table got both synthetic rows: the probe met the template with rows everywhere.
    let warnings: Vec<String> = report.warnings().map(Finding::line).collect();
    assert!(warnings.is_empty(), "{warnings:#?}");

    // Every foreign key's columns lead some index of its table.
    let unindexed: Vec<String> = sqlx::query_scalar(
        "SELECT format('%s(%s)', c.conrelid::regclass, c.conkey::text)
         FROM pg_constraint c
         JOIN pg_namespace n ON n.oid = c.connamespace
         WHERE c.contype = 'f' AND n.nspname = 'public'
           AND NOT EXISTS (
               SELECT 1 FROM pg_index i
               WHERE i.indrelid = c.conrelid
                 AND (i.indkey::int2[])[0:array_length(c.conkey, 1) - 1] = c.conkey
           )",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
    project.drop(&cluster).await;
}

#[tokio::test]
async fn the_template_keeps_organisations_apart() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    apply_schema(&project.owner_url(&cluster), TEMPLATE_SCHEMA)
        .await
        .unwrap();
    let alice = uuid::Uuid::new_v4();
    let bob = uuid::Uuid::new_v4();
    let mut admin = project.superuser(&cluster).await;
    sqlx::query("INSERT INTO auth.users (id, email) VALUES ($1, 'alice@example.test'), ($2, 'bob@example.test')")
        .bind(alice)
        .bind(bob)
        .execute(&mut admin)
        .await
        .unwrap();

    let mut owner = project.owner(&cluster).await;
    let as_user =
        |user: uuid::Uuid| serde_json::json!({"sub": user, "role": "authenticated"}).to_string();
    let mut tx = owner.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(as_user(alice))
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO public.organisations (name, slug) VALUES ('Acme', 'acme');
         INSERT INTO public.contacts (organisation_id, email)
             SELECT id, 'c@acme.test' FROM public.organisations;
         INSERT INTO public.webhooks (organisation_id, target_url)
             SELECT id, 'https://hooks.acme.test' FROM public.organisations;",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    let alice_sees: i64 = sqlx::query_scalar("SELECT count(*) FROM public.contacts")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let alice_role: String = sqlx::query_scalar("SELECT role::text FROM public.members")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((alice_sees, alice_role.as_str()), (1, "owner"));

    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(as_user(bob))
        .execute(&mut *tx)
        .await
        .unwrap();
    for table in ["organisations", "members", "contacts", "webhooks"] {
        let seen: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT count(*) FROM public.{table}"
        )))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(seen, 0, "bob sees {seen} rows of {table}");
    }
    let bob_insert = sqlx::raw_sql(
        "INSERT INTO public.contacts (organisation_id, email)
         SELECT id, 'x@x.test' FROM public.organisations WHERE slug = 'acme'",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    assert_eq!(
        bob_insert.rows_affected(),
        0,
        "bob cannot even see acme to write into it"
    );
    tx.rollback().await.unwrap();

    // anon reads nothing at all.
    let mut tx = owner.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL ROLE anon")
        .execute(&mut *tx)
        .await
        .unwrap();
    let anon = sqlx::raw_sql("SELECT * FROM public.contacts")
        .execute(&mut *tx)
        .await;
    assert!(anon.unwrap_err().to_string().contains("permission denied"));
    drop(tx);
    project.drop(&cluster).await;
}

const RECURSIVE_POLICY_FIXTURE: &str = "
CREATE TABLE public.teams (id uuid PRIMARY KEY, name text);
CREATE TABLE public.team_members (team_id uuid NOT NULL, user_id uuid NOT NULL);
ALTER TABLE public.teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.team_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY teams_select ON public.teams FOR SELECT TO authenticated USING (true);
-- The classic mistake: the membership policy looks itself up.
CREATE POLICY team_members_select ON public.team_members FOR SELECT TO authenticated
    USING (team_id IN (SELECT team_id FROM public.team_members WHERE user_id = auth.uid()));
";

#[tokio::test]
async fn a_recursive_policy_fails_the_authenticated_check() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    apply_schema(&url, RECURSIVE_POLICY_FIXTURE).await.unwrap();

    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    assert!(!report.passed);
    assert!(check_passed(&report, CheckName::RlsEnabled));
    let failures = failures_of(&report, CheckName::SelectableAsAuthenticated);
    assert_eq!(failures.len(), 1, "{report}");
    let (table, column, message) = &failures[0];
    assert_eq!((table.as_str(), column), ("team_members", &None));
    assert!(message.contains("infinite recursion"), "{message}");
    assert!(report.to_string().contains("SECURITY DEFINER"), "{report}");
    assert!(
        findings_of(&report, CheckName::SelectableAsAuthenticated)[0]
            .also_failing
            .is_empty()
    );
    project.drop(&cluster).await;
}

/// What PostgreSQL answers when its lock table is full (as 100 projects' migrations at once on
/// one server made it): SQLSTATE 53200, the insufficient-resources class.
const SHORT_OF_MEMORY: &str = "RAISE EXCEPTION 'out of shared memory' USING ERRCODE = '53200', \
     HINT = 'You might need to increase max_locks_per_transaction.'";

#[tokio::test]
async fn a_migration_the_server_had_no_memory_for_is_retried_and_keeps_nothing() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    let error = apply_schema(
        &url,
        &format!(
            "CREATE TABLE public.companies (id int);
             DO $$ BEGIN {SHORT_OF_MEMORY}; END $$;"
        ),
    )
    .await
    .expect_err("the migration fails");
    assert!(
        matches!(&error, TenantDbError::MigrationFailed { code: Some(code), .. } if code == "53200"),
        "{error}"
    );
    assert!(error.is_retryable(), "{error}");
    let mut owner = project.owner(&cluster).await;
    assert!(public_tables(&mut owner).await.is_empty(), "nothing kept");
    owner.close().await.unwrap();
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_probe_the_server_had_no_memory_for_is_an_error_to_retry_not_a_failed_check() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    apply_schema(
        &url,
        &format!(
            "CREATE FUNCTION public.short_of_memory() RETURNS boolean LANGUAGE plpgsql AS $$
             BEGIN {SHORT_OF_MEMORY}; END $$;
             CREATE TABLE public.notes (id int);
             ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
             CREATE POLICY notes_select ON public.notes FOR SELECT TO authenticated
                 USING (public.short_of_memory());"
        ),
    )
    .await
    .unwrap();
    let error = check_schema(&url, &CheckOptions::default())
        .await
        .expect_err("the probe could not run: no report on the table");
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("public.notes"), "{error}");
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_table_authenticated_may_not_select_fails_with_the_grant_to_add() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    apply_schema(
        &url,
        "CREATE TABLE public.reports (id int);
         ALTER TABLE public.reports ENABLE ROW LEVEL SECURITY;
         REVOKE ALL ON public.reports FROM authenticated;",
    )
    .await
    .unwrap();

    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    let failure = report
        .failures()
        .find(|f| f.check == CheckName::SelectableAsAuthenticated)
        .cloned()
        .expect("a failure for reports");
    assert_eq!(failure.table, "reports");
    assert!(
        failure.cause.contains("permission denied"),
        "{}",
        failure.cause
    );
    assert!(failure.hint.contains("GRANT SELECT"), "{}", failure.hint);
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_table_without_rls_fails_the_rls_check() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    apply_schema(
        &url,
        "CREATE TABLE public.guarded (id int);
         ALTER TABLE public.guarded ENABLE ROW LEVEL SECURITY;
         CREATE TABLE public.open_notes (id int, body text);",
    )
    .await
    .unwrap();

    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    assert!(!report.passed);
    let failures = failures_of(&report, CheckName::RlsEnabled);
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0].0, "open_notes");
    // Readable, but nothing in it looks secret.
    assert!(check_passed(&report, CheckName::SelectableAsAuthenticated));
    assert!(check_passed(&report, CheckName::NoAnonSecretColumns));
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["checks"][0]["check"], "rlsEnabled");
    assert_eq!(json["findings"][0]["check"], "rlsEnabled");
    assert_eq!(json["findings"][0]["table"], "open_notes");
    assert!(
        json["findings"][0]["hint"]
            .as_str()
            .unwrap()
            .contains("ENABLE ROW LEVEL SECURITY")
    );
    project.drop(&cluster).await;
}

const ANON_SECRET_FIXTURE: &str = "
CREATE TABLE public.integrations (id int PRIMARY KEY, monkey text, api_token text);
ALTER TABLE public.integrations ENABLE ROW LEVEL SECURITY;
CREATE POLICY integrations_public ON public.integrations FOR SELECT TO anon USING (true);
CREATE TABLE public.team_logins (id int PRIMARY KEY, password_hash text);
ALTER TABLE public.team_logins ENABLE ROW LEVEL SECURITY;
CREATE POLICY team_logins_everyone ON public.team_logins FOR SELECT USING (true);
CREATE TABLE public.vault (id int PRIMARY KEY, client_secret text);
ALTER TABLE public.vault ENABLE ROW LEVEL SECURITY;
CREATE POLICY vault_users ON public.vault FOR SELECT TO authenticated USING (true);
";

#[tokio::test]
async fn an_anon_readable_secret_column_fails_unless_allowed() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    apply_schema(&url, ANON_SECRET_FIXTURE).await.unwrap();

    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    assert!(!report.passed);
    assert!(check_passed(&report, CheckName::RlsEnabled));
    assert!(check_passed(&report, CheckName::SelectableAsAuthenticated));
    let shared: Vec<(String, Option<String>)> =
        failures_of(&report, CheckName::NoSharedSecretColumns)
            .into_iter()
            .map(|(t, c, _)| (t, c))
            .collect();
    assert_eq!(
        shared,
        vec![
            ("team_logins".to_owned(), Some("password_hash".to_owned())),
            ("vault".to_owned(), Some("client_secret".to_owned())),
        ],
        "{report}"
    );
    let failures = failures_of(&report, CheckName::NoAnonSecretColumns);
    let located: Vec<(&str, Option<&str>)> = failures
        .iter()
        .map(|(t, c, _)| (t.as_str(), c.as_deref()))
        .collect();
    // Not `monkey`; not `vault`, which only authenticated may read.
    assert_eq!(
        located,
        vec![
            ("integrations", Some("api_token")),
            ("team_logins", Some("password_hash"))
        ],
        "{report}"
    );
    assert!(
        failures[0].2.contains("integrations_public"),
        "{}",
        failures[0].2
    );

    let allowing = CheckOptions {
        allow_anon_secret_columns: vec![
            "integrations.api_token".to_owned(),
            "public.team_logins.password_hash".to_owned(),
        ],
        // Any signed-in user reads these two as well (policies for PUBLIC / authenticated
        // with USING (true)): a failure of its own, allowed separately.
        allow_authenticated_secret_columns: vec![
            "team_logins.password_hash".to_owned(),
            "vault.client_secret".to_owned(),
        ],
        ..CheckOptions::default()
    };
    let report = check_schema(&url, &allowing).await.unwrap();
    assert!(report.passed, "{report}");
    let anon_check = report
        .checks
        .iter()
        .find(|c| c.check == CheckName::NoAnonSecretColumns)
        .unwrap();
    assert_eq!(
        anon_check.allowed,
        vec![
            "public.integrations.api_token",
            "public.team_logins.password_hash"
        ]
    );
    project.drop(&cluster).await;
}

/// Applies `schema` to a fresh project and checks it with `options`.
async fn checked(
    cluster: &Cluster,
    schema: &str,
    options: &CheckOptions,
) -> (Project, CheckReport) {
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(cluster);
    apply_schema(&url, schema).await.unwrap();
    let report = check_schema(&url, options).await.unwrap();
    (project, report)
}

/// The example: the membership lookup is a plain SQL function reading
/// `team_members`, called from the policies of `team_members` and `teams`.
const RECURSION_THROUGH_A_FUNCTION: &str = "
CREATE TABLE public.teams (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);
CREATE TABLE public.team_members (
    team_id uuid NOT NULL REFERENCES public.teams (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
create function public.is_member(t uuid) returns boolean language sql stable as $$ select
exists (select 1 from public.team_members m where m.team_id = t and m.user_id = auth.uid())
$$;
ALTER TABLE public.teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.team_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY team_members_select ON public.team_members FOR SELECT TO authenticated
    USING (public.is_member(team_id));
CREATE POLICY teams_select ON public.teams FOR SELECT TO authenticated
    USING (public.is_member(id));
";

#[tokio::test]
async fn a_policy_recursing_through_a_function_fails_once_its_table_has_rows() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let (project, report) = checked(
        &cluster,
        RECURSION_THROUGH_A_FUNCTION,
        &CheckOptions::default(),
    )
    .await;

    // What the check did before: read the empty tables as authenticated. It passes, which is
    // why the check must give the tables rows first.
    let mut owner = project.owner(&cluster).await;
    let mut tx = owner.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    for table in ["teams", "team_members"] {
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SELECT 1 FROM public.{table} LIMIT 1"
        )))
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("the empty {table} reads fine: {e}"));
    }
    tx.rollback().await.unwrap();

    assert!(!report.passed, "{report}");
    let failures = findings_of(&report, CheckName::SelectableAsAuthenticated);
    assert_eq!(failures.len(), 1, "one root cause: {report}");
    let root = &failures[0];
    assert_eq!(root.table, "team_members", "{report}");
    assert!(
        root.cause.contains("stack depth limit exceeded") && root.cause.contains("function"),
        "{}",
        root.cause
    );
    assert_eq!(root.also_failing, vec!["public.teams"], "{report}");
    assert!(root.hint.contains("SECURITY DEFINER"), "{}", root.hint);
    project.drop(&cluster).await;
}

/// The agency's schema: `users`' own policy selects from `users`, and twenty other tables'
/// policies select from `users`.
fn self_recursive_users_and_twenty_readers() -> String {
    let mut schema = String::from(
        "CREATE TABLE public.users (id uuid PRIMARY KEY, agency_id uuid NOT NULL, email text);
         ALTER TABLE public.users ENABLE ROW LEVEL SECURITY;
         CREATE POLICY users_same_agency ON public.users FOR SELECT TO authenticated
             USING (agency_id IN (SELECT u.agency_id FROM public.users u WHERE u.id = auth.uid()));
        ",
    );
    for i in 1..=20 {
        schema.push_str(&format!(
            "CREATE TABLE public.records_{i:02} (
                 id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                 agency_id uuid NOT NULL,
                 body text
             );
             ALTER TABLE public.records_{i:02} ENABLE ROW LEVEL SECURITY;
             CREATE POLICY records_{i:02}_agency ON public.records_{i:02} FOR SELECT TO authenticated
                 USING (agency_id IN (SELECT u.agency_id FROM public.users u WHERE u.id = auth.uid()));
            "
        ));
    }
    schema
}

#[tokio::test]
async fn a_recursing_policy_every_table_reads_is_reported_once_as_the_root_cause() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let (project, report) = checked(
        &cluster,
        &self_recursive_users_and_twenty_readers(),
        &CheckOptions::default(),
    )
    .await;

    let failures = findings_of(&report, CheckName::SelectableAsAuthenticated);
    assert_eq!(failures.len(), 1, "{report}");
    let root = &failures[0];
    assert_eq!(root.table, "users");
    assert!(
        root.cause.contains("a policy on it reads users itself")
            && root.cause.contains("infinite recursion"),
        "{}",
        root.cause
    );
    let expected: Vec<String> = (1..=20).map(|i| format!("public.records_{i:02}")).collect();
    assert_eq!(root.also_failing, expected);
    // No table is blamed for querying itself but users.
    assert!(
        !report.to_string().contains("records_01 itself"),
        "{report}"
    );

    // What the step reports: one line per root cause, short.
    let brief = report.brief();
    assert_eq!(brief.lines().count(), 1, "{brief}");
    assert!(
        brief.starts_with("SelectableAsAuthenticated on users: "),
        "{brief}"
    );
    assert!(
        brief.contains("(20 other tables fail because of it: records_01, "),
        "{brief}"
    );
    assert!(brief.len() < 800, "{} bytes: {brief}", brief.len());
    // The whole report stays data, for the step's error detail.
    let json = serde_json::to_value(&report).unwrap();
    let finding = &json["findings"][0];
    assert_eq!(
        (&finding["check"], &finding["table"]),
        (
            &serde_json::json!("selectableAsAuthenticated"),
            &serde_json::json!("users")
        )
    );
    assert_eq!(finding["alsoFailing"].as_array().unwrap().len(), 20);
    assert!(
        finding["hint"]
            .as_str()
            .unwrap()
            .contains("SECURITY DEFINER")
    );
    project.drop(&cluster).await;
}

const MUTUAL_RECURSION: &str = "
CREATE TABLE public.a (id uuid PRIMARY KEY, b_id uuid);
CREATE TABLE public.b (id uuid PRIMARY KEY, a_id uuid);
CREATE TABLE public.c (id uuid PRIMARY KEY, a_id uuid);
ALTER TABLE public.a ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.b ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.c ENABLE ROW LEVEL SECURITY;
CREATE POLICY a_via_b ON public.a FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.b WHERE b.a_id = a.id));
CREATE POLICY b_via_a ON public.b FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.a WHERE a.b_id = b.id));
CREATE POLICY c_via_a ON public.c FOR SELECT TO authenticated
    USING (EXISTS (SELECT 1 FROM public.a WHERE a.id = c.a_id));
";

#[tokio::test]
async fn tables_whose_policies_read_each_other_are_one_root_cause() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let (project, report) = checked(&cluster, MUTUAL_RECURSION, &CheckOptions::default()).await;
    let failures = findings_of(&report, CheckName::SelectableAsAuthenticated);
    assert_eq!(failures.len(), 1, "{report}");
    let root = &failures[0];
    assert_eq!(root.table, "a");
    assert!(
        root.cause
            .contains("the policies on a and b read each other's tables (a → b → a)"),
        "{}",
        root.cause
    );
    assert_eq!(root.also_failing, vec!["public.c"], "{report}");
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_table_the_probe_cannot_fill_is_a_warning_and_the_others_still_get_rows() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    // No sample value for a point: the insert into places fails on NOT NULL, which must not
    // keep the rows of the other tables (and so the recursion) from the probe.
    let schema = format!(
        "{RECURSION_THROUGH_A_FUNCTION}
         CREATE TABLE public.places (id int PRIMARY KEY, location point NOT NULL);
         ALTER TABLE public.places ENABLE ROW LEVEL SECURITY;"
    );
    let (project, report) = checked(&cluster, &schema, &CheckOptions::default()).await;
    let warned: Vec<String> = report.warnings().map(Finding::object).collect();
    assert_eq!(warned, vec!["places", "places"], "{report}");
    assert!(
        report
            .warnings()
            .all(|w| w.cause.contains("could not give it synthetic row")
                && w.cause.contains("null value")),
        "{report}"
    );
    let failures = findings_of(&report, CheckName::SelectableAsAuthenticated);
    assert_eq!(failures.len(), 1, "{report}");
    assert_eq!(failures[0].table, "team_members");
    project.drop(&cluster).await;
}

#[tokio::test]
async fn the_probe_leaves_nothing_behind() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let url = project.owner_url(&cluster);
    apply_schema(&url, TEMPLATE_SCHEMA).await.unwrap();
    let mut owner = project.owner(&cluster).await;
    // Rows of every table, and the constraints, triggers and row level security flags the
    // probe sets aside for a moment.
    let snapshot = "SELECT
        (SELECT string_agg(format('%s=%s', c.relname,
                    (xpath('/row/n/text()',
                           query_to_xml(format('SELECT count(*) AS n FROM %I.%I', n.nspname, c.relname),
                                        false, true, '')))[1]::text), ',' ORDER BY c.relname)
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r') AS row_counts,
        (SELECT string_agg(format('%s:%s:%s', conrelid::regclass, conname, contype), ',' ORDER BY 1)
         FROM pg_constraint WHERE connamespace = 'public'::regnamespace) AS constraints,
        (SELECT string_agg(format('%s:%s:%s', tgrelid::regclass, tgname, tgenabled), ',' ORDER BY 1)
         FROM pg_trigger WHERE NOT tgisinternal) AS triggers,
        (SELECT string_agg(format('%s:%s', oid::regclass, relrowsecurity), ',' ORDER BY 1)
         FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind = 'r') AS rls";
    let before: (String, String, String, String) = sqlx::query_as(snapshot)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert!(before.0.contains("organisations=0"), "{}", before.0);
    assert!(before.1.contains(":f"), "the template has foreign keys");
    assert!(before.2.contains(":O"), "and enabled triggers");

    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    assert!(report.passed, "{report}");
    let after: (String, String, String, String) = sqlx::query_as(snapshot)
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_eq!(before, after);
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_definer_function_anon_may_execute_fails() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let schema = "
        CREATE TABLE public.payouts (id int PRIMARY KEY, amount numeric NOT NULL);
        ALTER TABLE public.payouts ENABLE ROW LEVEL SECURITY;
        -- Executable by anon through the default privileges on functions.
        CREATE FUNCTION public.total_payouts() RETURNS numeric
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
            AS $$ SELECT sum(amount) FROM public.payouts $$;
        -- The same, kept from anon: fine.
        CREATE FUNCTION public.my_payouts(since date) RETURNS numeric
            LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
            AS $$ SELECT sum(amount) FROM public.payouts $$;
        REVOKE EXECUTE ON FUNCTION public.my_payouts(date) FROM PUBLIC, anon;
        -- Invoker functions and trigger functions are not reachable as definer through /rpc.
        CREATE FUNCTION public.double(x int) RETURNS int LANGUAGE sql AS $$ SELECT 2 * x $$;
        CREATE FUNCTION public.touch() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            AS $$ BEGIN RETURN NEW; END $$;
    ";
    let (project, report) = checked(&cluster, schema, &CheckOptions::default()).await;
    let failures = findings_of(&report, CheckName::NoAnonDefinerFunctions);
    let named: Vec<&str> = failures.iter().map(|f| f.table.as_str()).collect();
    assert_eq!(named, vec!["total_payouts()"], "{report}");
    assert!(
        failures[0].cause.contains("/rpc/total_payouts"),
        "{}",
        failures[0].cause
    );
    assert!(
        failures[0].hint.starts_with(
            "REVOKE EXECUTE ON FUNCTION \"public\".\"total_payouts\"() FROM PUBLIC, anon"
        ),
        "{}",
        failures[0].hint
    );
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_view_that_skips_row_level_security_fails() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let schema = "
        CREATE TABLE public.salaries (id int PRIMARY KEY, employee uuid NOT NULL, amount int);
        ALTER TABLE public.salaries ENABLE ROW LEVEL SECURITY;
        CREATE POLICY own_salary ON public.salaries FOR SELECT TO authenticated
            USING (employee = auth.uid());
        CREATE VIEW public.salary_overview AS SELECT employee, amount FROM public.salaries;
        CREATE VIEW public.salary_nested AS SELECT * FROM public.salary_overview;
        CREATE VIEW public.my_salary WITH (security_invoker = true) AS
            SELECT employee, amount FROM public.salaries;
        CREATE MATERIALIZED VIEW public.salary_totals AS SELECT sum(amount) FROM public.salaries;
        CREATE VIEW public.private_overview AS SELECT * FROM public.salaries;
        REVOKE ALL ON public.private_overview FROM anon, authenticated;
    ";
    let (project, report) = checked(&cluster, schema, &CheckOptions::default()).await;
    let failures = findings_of(&report, CheckName::NoRlsBypassingViews);
    let named: Vec<&str> = failures.iter().map(|f| f.table.as_str()).collect();
    assert_eq!(
        named,
        vec!["salary_nested", "salary_overview", "salary_totals"],
        "{report}"
    );
    let plain = &failures[1];
    assert!(
        plain.cause.contains("anon, authenticated") && plain.cause.contains("of public.salaries"),
        "{}",
        plain.cause
    );
    assert!(
        plain.hint.contains("security_invoker = true"),
        "{}",
        plain.hint
    );
    assert!(
        failures[2].hint.starts_with("REVOKE SELECT"),
        "{}",
        failures[2].hint
    );
    project.drop(&cluster).await;
}

#[tokio::test]
async fn every_exposed_schema_is_checked() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let schema = "
        CREATE SCHEMA IF NOT EXISTS graphql_public;
        GRANT USAGE ON SCHEMA graphql_public TO anon, authenticated;
        CREATE TABLE graphql_public.exposed_by_default (id int PRIMARY KEY, note text);
        GRANT SELECT ON graphql_public.exposed_by_default TO anon, authenticated;
        CREATE SCHEMA api;
        GRANT USAGE ON SCHEMA api TO anon, authenticated;
        CREATE TABLE api.orders (id int PRIMARY KEY, api_key text);
        GRANT SELECT ON api.orders TO anon, authenticated;
    ";
    let (project, report) = checked(&cluster, schema, &CheckOptions::default()).await;
    let unprotected: Vec<String> = report
        .failures()
        .filter(|f| f.check == CheckName::RlsEnabled)
        .map(Finding::object)
        .collect();
    assert_eq!(
        unprotected,
        vec!["graphql_public.exposed_by_default"],
        "{report}"
    );

    let with_api = CheckOptions {
        exposed_schemas: vec!["public".into(), "graphql_public".into(), "api".into()],
        ..CheckOptions::default()
    };
    let report = check_schema(&project.owner_url(&cluster), &with_api)
        .await
        .unwrap();
    let objects: Vec<(CheckName, String)> =
        report.failures().map(|f| (f.check, f.object())).collect();
    assert!(
        objects.contains(&(CheckName::RlsEnabled, "api.orders".to_owned()))
            && objects.contains(&(
                CheckName::NoAnonSecretColumns,
                "api.orders.api_key".to_owned()
            )),
        "{report}"
    );
    assert!(
        report
            .failures()
            .any(|f| f.hint.contains("ALTER TABLE \"api\".\"orders\" ENABLE")),
        "{report}"
    );
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_function_shadowing_a_catalog_one_does_not_blind_the_checks() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    // An exact-type match beats pg_catalog.unnest(anyarray) wherever public is on the search
    // path: a check that calls unnest(polroles) unqualified would see no role in any policy.
    let schema = format!(
        "{ANON_SECRET_FIXTURE}
         CREATE FUNCTION public.unnest(oid[]) RETURNS SETOF oid LANGUAGE sql IMMUTABLE
             AS $$ SELECT NULL::oid WHERE false $$;"
    );
    let (project, report) = checked(&cluster, &schema, &CheckOptions::default()).await;
    let located: Vec<(String, Option<String>)> =
        failures_of(&report, CheckName::NoAnonSecretColumns)
            .into_iter()
            .map(|(t, c, _)| (t, c))
            .collect();
    assert_eq!(
        located,
        vec![
            ("integrations".to_owned(), Some("api_token".to_owned())),
            ("team_logins".to_owned(), Some("password_hash".to_owned())),
        ],
        "{report}"
    );
    // The shadow is real: on the database's own search path it hides every policy role.
    let mut owner = project.owner(&cluster).await;
    let seen: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_policy p, unnest(p.polroles) AS r(role_oid)")
            .fetch_one(&mut owner)
            .await
            .unwrap();
    assert_eq!(seen, 0);
    project.drop(&cluster).await;
}

#[tokio::test]
async fn a_secret_column_any_signed_in_user_reads_in_other_tenants_rows_fails() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let schema = "
        CREATE TABLE public.integrations (
            id uuid PRIMARY KEY, owner_id uuid NOT NULL, label text, refresh_token text
        );
        ALTER TABLE public.integrations ENABLE ROW LEVEL SECURITY;
        CREATE POLICY integrations_everyone ON public.integrations FOR SELECT TO authenticated
            USING (true);
        CREATE TABLE public.own_credentials (
            id uuid PRIMARY KEY, owner_id uuid NOT NULL, credential text
        );
        ALTER TABLE public.own_credentials ENABLE ROW LEVEL SECURITY;
        CREATE POLICY own_only ON public.own_credentials FOR SELECT TO authenticated
            USING (owner_id = auth.uid());
        CREATE TABLE public.announcements (id uuid PRIMARY KEY, body text);
        ALTER TABLE public.announcements ENABLE ROW LEVEL SECURITY;
        CREATE POLICY everyone ON public.announcements FOR SELECT TO authenticated USING (true);
    ";
    let (project, report) = checked(&cluster, schema, &CheckOptions::default()).await;
    let objects: Vec<String> = report
        .failures()
        .filter(|f| f.check == CheckName::NoSharedSecretColumns)
        .map(Finding::object)
        .collect();
    // Not own_credentials (each user reads their own), not announcements (nothing secret).
    assert_eq!(objects, vec!["integrations.refresh_token"], "{report}");
    assert!(!report.passed && report.failures().count() == 1, "{report}");

    let allowing = CheckOptions {
        allow_authenticated_secret_columns: vec!["public.integrations.refresh_token".into()],
        ..CheckOptions::default()
    };
    let report = check_schema(&project.owner_url(&cluster), &allowing)
        .await
        .unwrap();
    assert!(report.passed, "{report}");
    project.drop(&cluster).await;
}

#[tokio::test]
async fn the_bootstrap_runs_concurrently_on_five_fresh_databases() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let cluster = Arc::new(cluster);
    let mut projects = Vec::new();
    for _ in 0..5 {
        projects.push(cluster.create_project().await);
    }
    // Connect first, then release all five scripts at once so they overlap.
    let start = Arc::new(tokio::sync::Barrier::new(5));
    let mut runs = Vec::new();
    for project in &projects {
        let mut conn = project.superuser(&cluster).await;
        let start = Arc::clone(&start);
        runs.push(tokio::spawn(async move {
            start.wait().await;
            sqlx::raw_sql(BOOTSTRAP_SQL).execute(&mut conn).await
        }));
    }
    for run in runs {
        run.await
            .unwrap()
            .expect("every concurrent bootstrap succeeds");
    }

    let mut admin = cluster.admin().await;
    let roles: Vec<(String, bool, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin, rolinherit, rolbypassrls FROM pg_roles
         WHERE rolname IN ('anon', 'authenticated', 'service_role', 'authenticator')
         ORDER BY rolname",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        roles,
        vec![
            ("anon".to_owned(), false, false, false),
            ("authenticated".to_owned(), false, false, false),
            ("authenticator".to_owned(), true, false, false),
            ("service_role".to_owned(), false, false, true),
        ]
    );

    for project in &projects {
        let mut owner = project.owner(&cluster).await;
        let row = sqlx::query(
            "SELECT current_setting('search_path') AS search_path,
                    pg_has_role('authenticator', 'authenticated', 'MEMBER') AS authenticator_member,
                    pg_has_role(current_user, 'service_role', 'MEMBER') AS owner_member,
                    (SELECT count(*) FROM pg_extension
                     WHERE extname IN ('uuid-ossp', 'pgcrypto')
                       AND extnamespace = 'extensions'::regnamespace) AS extensions,
                    has_table_privilege('anon', 'auth.users', 'SELECT') AS anon_reads_users,
                    extensions.uuid_generate_v4() IS NOT NULL AS uuid_ossp_works",
        )
        .fetch_one(&mut owner)
        .await
        .unwrap();
        assert_eq!(
            row.get::<String, _>("search_path"),
            "\"$user\", public, extensions"
        );
        assert!(row.get::<bool, _>("authenticator_member"));
        assert!(row.get::<bool, _>("owner_member"));
        assert_eq!(row.get::<i64, _>("extensions"), 2);
        assert!(!row.get::<bool, _>("anon_reads_users"));
        assert!(row.get::<bool, _>("uuid_ossp_works"));

        // Default privileges: what the owner creates later is granted to the API roles.
        sqlx::raw_sql("CREATE TABLE public.later (id int)")
            .execute(&mut owner)
            .await
            .unwrap();
        let granted: bool = sqlx::query_scalar(
            "SELECT has_table_privilege('authenticated', 'public.later', 'SELECT')
                AND has_table_privilege('service_role', 'public.later', 'INSERT')",
        )
        .fetch_one(&mut owner)
        .await
        .unwrap();
        assert!(granted);
    }

    // Running it again on a bootstrapped database changes nothing and does not fail.
    projects[0].bootstrap(&cluster).await;
    for project in projects {
        project.drop(&cluster).await;
    }
}

#[tokio::test]
async fn the_bootstrap_also_works_run_as_the_owner_once_the_roles_exist() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    // Make sure the cluster-wide roles exist (a no-op on a database already bootstrapped).
    let first = cluster.bootstrapped_project().await;
    first.drop(&cluster).await;

    let project = cluster.create_project().await;
    let mut admin = cluster.admin().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "GRANT anon, authenticated, service_role TO \"{}\"",
        project.owner
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let mut conn = project.superuser(&cluster).await;
    let mut tx = conn.begin().await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET LOCAL ROLE \"{}\"",
        project.owner
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::raw_sql(BOOTSTRAP_SQL)
        .execute(&mut *tx)
        .await
        .expect("the bootstrap runs as the database owner");
    tx.commit().await.unwrap();

    let url = project.owner_url(&cluster);
    apply_schema(&url, TEMPLATE_SCHEMA).await.unwrap();
    let report = check_schema(&url, &CheckOptions::default()).await.unwrap();
    assert!(report.passed, "{report}");
    project.drop(&cluster).await;
}

/// The bootstrap's role and membership blocks, with the four role names made unique, so the
/// race between bootstraps that all find the roles missing can be run for real on a cluster
/// where the real roles already exist (they are never dropped).
fn role_blocks_with_suffix(suffix: &str) -> String {
    let start = BOOTSTRAP_SQL
        .find("DO $roles$")
        .expect("the bootstrap has a $roles$ block");
    let end_marker = "$memberships$;";
    let end = BOOTSTRAP_SQL[start..]
        .rfind(end_marker)
        .expect("the bootstrap has a $memberships$ block after it")
        + start
        + end_marker.len();
    let mut blocks = BOOTSTRAP_SQL[start..end].to_owned();
    for role in ["service_role", "authenticator", "authenticated", "anon"] {
        blocks = blocks.replace(&format!("'{role}'"), &format!("'{role}_{suffix}'"));
    }
    assert!(
        blocks.contains(&format!("'anon_{suffix}'")),
        "role names were renamed"
    );
    blocks
}

#[tokio::test]
async fn roles_missing_everywhere_are_created_once_by_racing_bootstraps() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..10];
    let blocks = Arc::new(role_blocks_with_suffix(suffix));
    let start = Arc::new(tokio::sync::Barrier::new(5));
    let mut runs = Vec::new();
    for _ in 0..5 {
        let mut conn = cluster.admin().await;
        let (start, blocks) = (Arc::clone(&start), Arc::clone(&blocks));
        runs.push(tokio::spawn(async move {
            start.wait().await;
            // One implicit transaction, as when the whole bootstrap runs: every run checks,
            // finds the roles missing, and creates them at the same moment.
            sqlx::raw_sql(AssertSqlSafe(blocks.as_str()))
                .execute(&mut conn)
                .await
        }));
    }
    let outcomes: Vec<Result<_, sqlx::Error>> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|joined| joined.unwrap())
        .collect();

    let mut admin = cluster.admin().await;
    let created: Vec<(String, bool, bool)> = sqlx::query_as(
        "SELECT rolname::text, rolcanlogin, rolbypassrls FROM pg_roles
         WHERE rolname LIKE '%\\_' || $1 ORDER BY rolname",
    )
    .bind(suffix)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let memberships: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_auth_members m
         JOIN pg_roles member ON member.oid = m.member
         WHERE member.rolname = 'authenticator_' || $1",
    )
    .bind(suffix)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP ROLE IF EXISTS anon_{suffix}, authenticated_{suffix}, service_role_{suffix}, \
         authenticator_{suffix}"
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    for outcome in outcomes {
        outcome.expect("no bootstrap loses the race");
    }
    assert_eq!(
        created,
        vec![
            (format!("anon_{suffix}"), false, false),
            (format!("authenticated_{suffix}"), false, false),
            (format!("authenticator_{suffix}"), true, false),
            (format!("service_role_{suffix}"), false, true),
        ]
    );
    assert_eq!(memberships, 3);
}

#[tokio::test]
async fn auth_uid_returns_the_synthetic_users_id_under_the_claims() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    let project = cluster.bootstrapped_project().await;
    let mut owner = project.owner(&cluster).await;
    let user = uuid::Uuid::new_v4();

    let mut tx = owner.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    let before: Option<uuid::Uuid> = sqlx::query_scalar("SELECT auth.uid()")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(before, None, "no claims, no user");
    sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
        .bind(
            serde_json::json!({"sub": user, "role": "authenticated", "email": "u@x.test"})
                .to_string(),
        )
        .execute(&mut *tx)
        .await
        .unwrap();
    let (uid, role, email): (Option<uuid::Uuid>, Option<String>, Option<String>) =
        sqlx::query_as("SELECT auth.uid(), auth.role(), auth.jwt() ->> 'email'")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(uid, Some(user));
    assert_eq!(role.as_deref(), Some("authenticated"));
    assert_eq!(email.as_deref(), Some("u@x.test"));
    tx.rollback().await.unwrap();

    // The claims were transaction-local; the older per-claim settings still work.
    let older = uuid::Uuid::new_v4();
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("SELECT set_config('request.jwt.claim.sub', $1, true), set_config('request.jwt.claim.role', 'anon', true)")
        .bind(older.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let (uid, role): (Option<uuid::Uuid>, Option<String>) =
        sqlx::query_as("SELECT auth.uid(), auth.role()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!((uid, role.as_deref()), (Some(older), Some("anon")));
    tx.rollback().await.unwrap();
    project.drop(&cluster).await;
}

#[tokio::test]
async fn errors_never_contain_the_connection_password() {
    let Some(cluster) = Cluster::find().await else {
        return;
    };
    const CANARY: &str = "CANARY-pw-7f3a91";
    let project = cluster.bootstrapped_project().await;
    let mut admin = cluster.admin().await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "ALTER ROLE \"{}\" PASSWORD '{CANARY}'",
        project.owner
    )))
    .execute(&mut admin)
    .await
    .unwrap();

    // A loopback port that was free a moment ago: nothing listens there.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut unreachable = cluster.url_for(&project.owner, Some(CANARY), &project.database);
    unreachable.set_host(Some("127.0.0.1")).unwrap();
    unreachable.set_port(Some(closed_port)).unwrap();
    let missing_db = cluster.url_for(&project.owner, Some(CANARY), "tenantdb_no_such_database");
    let good = cluster.url_for(&project.owner, Some(CANARY), &project.database);
    // PostgreSQL quotes the offending value back, so without scrubbing this error would carry it.
    let echoing_schema = format!("CREATE TABLE public.t (note text);\nSELECT '{CANARY}'::int;");

    let mut errors: Vec<TenantDbError> = Vec::new();
    let as_secret = |u: &url::Url| SecretString::from(u.to_string());
    errors.push(
        apply_schema(&as_secret(&unreachable), "SELECT 1")
            .await
            .unwrap_err(),
    );
    errors.push(
        check_schema(&as_secret(&unreachable), &CheckOptions::default())
            .await
            .unwrap_err(),
    );
    errors.push(
        apply_schema(&as_secret(&missing_db), "SELECT 1")
            .await
            .unwrap_err(),
    );
    errors.push(
        apply_schema(&as_secret(&good), &echoing_schema)
            .await
            .unwrap_err(),
    );
    errors.push(
        apply_schema(
            &SecretString::from(format!("postgres://u:{CANARY}@127.0.0.1:notaport/db")),
            "SELECT 1",
        )
        .await
        .unwrap_err(),
    );

    assert!(
        matches!(errors[0], TenantDbError::Connect { .. }),
        "{}",
        errors[0]
    );
    assert!(
        matches!(errors[2], TenantDbError::Connect { .. }),
        "{}",
        errors[2]
    );
    assert!(
        matches!(errors[3], TenantDbError::MigrationFailed { .. }),
        "{}",
        errors[3]
    );
    assert!(
        errors[3].to_string().contains("[REDACTED]"),
        "{}",
        errors[3]
    );
    assert!(
        matches!(errors[4], TenantDbError::InvalidUrl { .. }),
        "{}",
        errors[4]
    );
    // Nothing listening may come up later; a database that does not exist will not.
    assert!(errors[0].is_retryable(), "{}", errors[0]);
    assert!(!errors[2].is_retryable(), "{}", errors[2]);
    assert!(!errors[3].is_retryable(), "{}", errors[3]);
    for err in &errors {
        let shown = format!("{err} / {err:?}");
        assert!(!shown.contains(CANARY), "password leaked: {shown}");
    }
    let url_debug = format!("{:?}", as_secret(&good));
    assert!(!url_debug.contains(CANARY));
    drop(admin);
    project.drop(&cluster).await;
}

/// Replaces the template's placeholders inside string values, so a client name with quotes or
/// backslashes cannot break the JSON.
fn fill_placeholders(value: &mut serde_json::Value, fills: &[(&str, &str)]) {
    match value {
        serde_json::Value::String(s) => {
            for (placeholder, fill) in fills {
                *s = s.replace(placeholder, fill);
            }
        }
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| fill_placeholders(v, fills))
        }
        serde_json::Value::Object(map) => {
            map.values_mut().for_each(|v| fill_placeholders(v, fills))
        }
        _ => {}
    }
}

/// Properties marked `readOnly` that `instance` carries, at the top level and in each node:
/// the real n8n rejects them ("request/body/active is read-only").
fn read_only_fields_present(
    schema: &serde_json::Value,
    instance: &serde_json::Value,
) -> Vec<String> {
    let read_only =
        |props: &serde_json::Value, object: &serde_json::Value, at: &str| -> Vec<String> {
            props
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(name, p)| p["readOnly"] == true && object.get(name.as_str()).is_some())
                .map(|(name, _)| format!("{at}{name}"))
                .collect()
        };
    let mut found = read_only(&schema["properties"], instance, "");
    for (i, node) in instance["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        found.extend(read_only(
            &schema["properties"]["nodes"]["items"]["properties"],
            node,
            &format!("nodes[{i}]."),
        ));
    }
    found
}

#[test]
fn the_n8n_template_is_a_valid_create_workflow_body() {
    for placeholder in [
        "{{slug}}",
        "{{clientName}}",
        "{{webhookId}}",
        "{{webhookPath}}",
    ] {
        assert!(
            N8N_TEMPLATE.contains(placeholder),
            "template lacks {placeholder}"
        );
    }
    let mut body: serde_json::Value = serde_json::from_str(N8N_TEMPLATE).unwrap();
    let webhook_id = "4c1f9a52-8d7e-4b3a-9f10-2e6d5c7b8a90";
    fill_placeholders(
        &mut body,
        &[
            ("{{slug}}", "acme"),
            ("{{clientName}}", "Acme \"Rockets\" Ltd"),
            ("{{webhookId}}", webhook_id),
            ("{{webhookPath}}", "client-acme/content"),
        ],
    );
    assert!(
        !body.to_string().contains("{{"),
        "a placeholder was left: {body}"
    );

    let spec: serde_json::Value = serde_json::from_str(N8N_SPEC).unwrap();
    let schema = &spec["paths"]["/workflows"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    assert_eq!(
        schema["additionalProperties"], false,
        "the spec's body schema as expected"
    );
    let validator = jsonschema::validator_for(schema).unwrap();
    let problems: Vec<String> = validator
        .iter_errors(&body)
        .map(|e| e.to_string())
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    assert!(read_only_fields_present(schema, &body).is_empty());

    // The validation can fail: an unknown field and a read-only one are both caught.
    let mut with_extra = body.clone();
    with_extra["owner"] = serde_json::json!("someone");
    assert!(!validator.is_valid(&with_extra));
    let mut with_active = body.clone();
    with_active["active"] = serde_json::json!(true);
    assert_eq!(
        read_only_fields_present(schema, &with_active),
        vec!["active"]
    );

    assert_eq!(body["name"], "Client acme - Acme \"Rockets\" Ltd");
    assert_eq!(
        body["settings"],
        serde_json::json!({"executionOrder": "v1"})
    );
    let nodes = body["nodes"].as_array().unwrap();
    let webhook = nodes
        .iter()
        .find(|n| n["type"] == "n8n-nodes-base.webhook")
        .expect("a Webhook node");
    assert_eq!(webhook["webhookId"], webhook_id);
    assert_eq!(webhook["parameters"]["httpMethod"], "POST");
    assert_eq!(webhook["parameters"]["path"], "client-acme/content");
    assert_eq!(webhook["parameters"]["responseMode"], "responseNode");
    let respond = nodes
        .iter()
        .find(|n| n["type"] == "n8n-nodes-base.respondToWebhook")
        .expect("a Respond to Webhook node");
    assert_eq!(respond["parameters"]["respondWith"], "json");
    let answer: serde_json::Value =
        serde_json::from_str(respond["parameters"]["responseBody"].as_str().unwrap()).unwrap();
    assert_eq!(answer["client"], "acme");
    let webhook_name = webhook["name"].as_str().unwrap();
    assert_eq!(
        body["connections"][webhook_name]["main"][0][0]["node"],
        respond["name"]
    );
}
