//! The schema step's way into a client's database, end to end through the provision saga
//! against the sandbox: the session pooler by default, `SUPABASE_DB_URL_TEMPLATE` as an
//! override, and the two explicit ways to adopt a project another pipeline made with a
//! password the provisioner never saw (the SQL endpoint, an operator-approved password reset),
//! which are refused unless chosen and never used on a project the provisioner created.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::time::Duration;

use providers::supabase::{CreateProject, RegionSelection};
use provisioner::app::App;
use provisioner::client::Client;
use provisioner::config::{AdoptedDatabase, Settings};
use provisioner::record::ResourceRecord;
use provisioner::steps::{database_schema, supabase_project};
use provisioner::templates::MigrationSet;
use provisioner::tenant_db::{self, SqlEndpoint, TenantDbError};
use saga::{RunEvent, RunStatus};
use sandbox::Provider;
use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;

const POOLER: &str = "GET /v1/projects/{ref}/config/database/pooler";
const QUERY: &str = "POST /v1/projects/{ref}/database/query";
const PASSWORD: &str = "PATCH /v1/projects/{ref}/database/password";

async fn provision(world: &support::World, client: &Client) -> (ResourceRecord, saga::RunView) {
    let started = world.app.provision(client).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    (App::record(&view), view)
}

async fn finish(world: support::World) {
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

fn calls(world: &support::World, endpoint: &str) -> usize {
    world
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.provider == Provider::Supabase && r.endpoint == endpoint)
        .count()
}

fn settings_with(adopted: AdoptedDatabase) -> Settings {
    let mut settings = support::quick_settings();
    settings.supabase.adopted_database = adopted;
    settings
}

async fn schema_output(world: &support::World, run_id: uuid::Uuid) -> serde_json::Value {
    world
        .app
        .engine
        .output::<serde_json::Value>(run_id, database_schema::NAME)
        .await
        .unwrap()
}

fn step_error(view: &saga::RunView, step: &str) -> String {
    view.steps
        .iter()
        .find(|s| s.name == step)
        .and_then(|s| s.last_error.clone())
        .unwrap_or_default()
}

/// Every journal event of the run as text, and the schema step's failed attempts.
async fn journal_of(
    world: &support::World,
    run_id: uuid::Uuid,
) -> (String, Vec<(String, serde_json::Value)>) {
    let events = world.app.engine.events_since(run_id, 0).await.unwrap();
    let text = events
        .iter()
        .map(|e| serde_json::to_string(&e.event).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let failures = events
        .into_iter()
        .filter_map(|e| match e.event {
            RunEvent::StepFailed {
                step,
                error,
                detail,
                ..
            } if step == database_schema::NAME => Some((error, detail.unwrap_or_default())),
            _ => None,
        })
        .collect();
    (text, failures)
}

/// What the old pipeline did: the client's project, named as the provisioner names it, with
/// a password the provisioner never saw. Returns its ref and that password.
async fn project_made_elsewhere(world: &support::World, client: &Client) -> (String, String) {
    let password = format!("old-pipeline-{}", uuid::Uuid::new_v4().simple());
    let stack = &world.app.stack;
    let project = stack
        .supabase
        .create_project(&CreateProject {
            name: supabase_project::project_name(&client.client_id),
            organization_slug: stack.env.supabase_org_slug.clone(),
            db_pass: SecretString::from(password.clone()),
            region_selection: Some(RegionSelection::Specific {
                code: stack.settings.supabase.region.clone(),
            }),
            desired_instance_size: None,
        })
        .await
        .unwrap();
    // Supabase's project times are to the second, and the provisioner's run must not take
    // the project for one it made: let a second pass.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    (project.project_ref, password)
}

/// Logs in to the project's database through the pooler route the sandbox serves, as its
/// pooler user with `password` and TLS required, as the route does; the session's user, the
/// role it acts as, and whether the server side of the session is encrypted (the pooler
/// hands it on over the loopback, so only the client side is).
async fn log_in(
    world: &support::World,
    project_ref: &str,
    password: &str,
) -> Result<(String, String), sqlx::Error> {
    let routes = world
        .app
        .stack
        .supabase
        .pooler_config(project_ref)
        .await
        .unwrap();
    let route = &routes[0];
    let options = sqlx::postgres::PgConnectOptions::new()
        .host(&route.db_host)
        .port(route.db_port)
        .username(&route.db_user)
        .password(password)
        .database(&route.db_name)
        .ssl_mode(sqlx::postgres::PgSslMode::Require);
    let mut conn = sqlx::PgConnection::connect_with(&options).await?;
    let row: (String, String) = sqlx::query_as("SELECT session_user::text, current_user::text")
        .fetch_one(&mut conn)
        .await?;
    let _ = conn.close().await;
    Ok(row)
}

/// The project's database as the admin sees it.
async fn admin_connection(project_ref: &str) -> sqlx::PgConnection {
    let mut url = url::Url::parse(&support::admin_url().await.unwrap()).unwrap();
    url.set_path(&format!("/sandbox_{project_ref}"));
    sqlx::PgConnection::connect(url.as_str()).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schema_step_logs_in_through_the_session_pooler_by_default() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    assert!(world.config.providers.supabase_db_url_template.is_none());
    let client = support::client(&support::unique_slug("pooler"));
    let (record, view) = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let output = schema_output(&world, view.id).await;
    assert_eq!(output["access"], "pooler");
    assert_eq!(calls(&world, POOLER), 1);
    assert_eq!(calls(&world, QUERY), 0);
    assert_eq!(calls(&world, PASSWORD), 0);

    // The route the pooler names: user postgres.{ref}, TLS, acting as the project's role.
    let project_ref = record.supabase.as_ref().unwrap().project_ref.clone();
    let password = world
        .app
        .stack
        .database_password(&supabase_project::project_name(&client.client_id));
    let route = world
        .app
        .stack
        .database_route(&project_ref, "unused", &password)
        .await
        .unwrap();
    assert_eq!(route.user, format!("postgres.{project_ref}"));
    assert!(route.url.expose_secret().ends_with("?sslmode=require"));
    // The routes the run read answer the next connections too (a retrying schema step, a
    // migration), within POOLER_ROUTES_KEPT_FOR.
    let again = world
        .app
        .stack
        .database_route(&project_ref, "unused", &password)
        .await
        .unwrap();
    assert_eq!(again.user, route.user);
    assert_eq!(calls(&world, POOLER), 1, "the routes were read again");
    let (session_user, current_user) = log_in(&world, &project_ref, password.expose_secret())
        .await
        .unwrap();
    assert_eq!(session_user, format!("postgres.{project_ref}"));
    assert_eq!(current_user, format!("sandbox_{project_ref}"));
    assert!(log_in(&world, &project_ref, "wrong").await.is_err());
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_url_template_overrides_the_pooler() {
    let Some(admin) = support::admin_url().await else {
        return;
    };
    let sandbox = support::sandbox_with(&admin, |_| {}).await;
    let template = sandbox.direct_db_url_template().unwrap();
    let mut env = support::env_map(&sandbox);
    env.insert("SUPABASE_DB_URL_TEMPLATE".into(), template);
    let mut config = provisioner::config::Config::load(None, &|k| env.get(k).cloned()).unwrap();
    config.settings = support::quick_settings();
    let dir = tempfile::tempdir().unwrap();
    let (_, key) = saga::SealingKey::generate();
    let key = SecretString::from(key);
    let journal = provisioner::app::open_sqlite(&dir.path().join("journal.sqlite"))
        .await
        .unwrap();
    let app = App::start(&config, journal, &key, support::fast_options())
        .await
        .unwrap();
    let client = support::client(&support::unique_slug("override"));
    let started = app.provision(&client).await.unwrap();
    let view = app.wait(started.run_id).await.unwrap();
    assert_eq!(
        view.status,
        RunStatus::Succeeded,
        "{:#?}",
        App::record(&view)
    );
    let output: serde_json::Value = app
        .engine
        .output(started.run_id, database_schema::NAME)
        .await
        .unwrap();
    assert_eq!(output["access"], "override_template");
    let pooler_calls = sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == POOLER)
        .count();
    assert_eq!(pooler_calls, 0, "the override is used as it is");
    app.shutdown(Duration::from_secs(5)).await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopted_project_with_a_password_we_never_saw_stops_naming_both_choices() {
    let Some(world) = support::world_with(|_| {}, settings_with(AdoptedDatabase::Refuse)).await
    else {
        return;
    };
    let client = support::client(&support::unique_slug("refuse"));
    let (project_ref, old_password) = project_made_elsewhere(&world, &client).await;
    let (record, view) = provision(&world, &client).await;
    assert_ne!(view.status, RunStatus::Succeeded);
    let error = step_error(&view, database_schema::NAME);
    assert!(error.contains("adopted_database = \"sql_api\""), "{error}");
    assert!(
        error.contains("adopted_database = \"reset_password\""),
        "{error}"
    );
    assert!(error.contains(&project_ref), "{error}");
    assert!(!error.contains(&old_password));
    assert_eq!(calls(&world, PASSWORD), 0);
    assert_eq!(calls(&world, QUERY), 0);
    // Permanent: one attempt, not a retry loop.
    let (_, failures) = journal_of(&world, view.id).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    // The adopted project is not the run's to delete.
    assert!(
        world
            .sandbox
            .inventory()
            .await
            .supabase_projects
            .iter()
            .any(|p| p.reference == project_ref),
        "{record:#?}"
    );
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopted_project_is_given_its_schema_through_the_sql_endpoint() {
    let Some(world) = support::world_with(|_| {}, settings_with(AdoptedDatabase::SqlApi)).await
    else {
        return;
    };
    let client = support::client(&support::unique_slug("sqlapi"));
    let (project_ref, old_password) = project_made_elsewhere(&world, &client).await;
    let (record, view) = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    let output = schema_output(&world, view.id).await;
    assert_eq!(output["access"], "sql_api");
    assert_eq!(output["alreadyApplied"], false);
    assert_eq!(output["checks"]["passed"], true);
    assert!(
        calls(&world, QUERY) >= 2,
        "apply and checks went through the endpoint"
    );
    assert_eq!(calls(&world, PASSWORD), 0, "no reset without being asked");

    // The schema and its version are really there; the old password still works (nothing
    // was changed) and the probe left nothing behind.
    let schema_checksum = output["checksum"].as_str().unwrap().to_owned();
    assert_eq!(output["version"], "0001");
    assert_eq!(output["appliedNow"], serde_json::json!(["0001"]));
    let (_, current) = log_in(&world, &project_ref, &old_password).await.unwrap();
    assert_eq!(current, format!("sandbox_{project_ref}"));
    let mut conn = admin_connection(&project_ref).await;
    let recorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.version, c.checksum FROM supabase_migrations.schema_migrations m \
         JOIN provisioner.migration_checksums c USING (version)",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(recorded, vec![("0001".to_owned(), schema_checksum.clone())]);
    let synthetic_rows: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM public.organisations) + (SELECT count(*) FROM public.members) \
         + (SELECT count(*) FROM public.profiles)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        synthetic_rows, 0,
        "the probe's synthetic rows were rolled back"
    );
    let foreign_keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_catalog.pg_constraint \
         WHERE contype = 'f' AND connamespace = 'public'::regnamespace",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        foreign_keys > 0,
        "the foreign keys the probe set aside are back"
    );

    // Through the endpoint again: the version is found, nothing is applied twice; an edited
    // applied file is refused as drift; a failing second file keeps nothing of itself and
    // leaves the first applied.
    let endpoint = SqlEndpoint::new(world.app.stack.supabase.clone(), &project_ref);
    let set = &world.app.stack.templates.migrations;
    let again = tenant_db::apply_migrations_over_endpoint(&endpoint, set)
        .await
        .unwrap();
    assert!(again.applied_now.is_empty(), "{again:?}");
    assert_eq!(again.already_applied, vec!["0001".to_owned()]);
    let edited = MigrationSet::from_files(
        "test",
        [(
            "0001_init.sql".to_owned(),
            b"CREATE TABLE public.other (id int);".to_vec(),
        )],
    )
    .unwrap();
    let other = tenant_db::apply_migrations_over_endpoint(&endpoint, &edited)
        .await
        .unwrap_err();
    assert!(
        matches!(other, TenantDbError::MigrationDrift { .. }),
        "{other}"
    );
    let first = &set.migrations()[0];
    let with_broken = MigrationSet::from_files(
        "test",
        [
            (first.file_name.clone(), first.sql.as_bytes().to_vec()),
            (
                "0002_broken.sql".to_owned(),
                b"CREATE TABLE public.half_made (id int);\nINSERT INTO public.missing VALUES (1);\n"
                    .to_vec(),
            ),
        ],
    )
    .unwrap();
    let failed = tenant_db::apply_migrations_over_endpoint(&endpoint, &with_broken)
        .await
        .unwrap_err();
    assert!(
        matches!(&failed, TenantDbError::MigrationFailed { file_name, line: Some(2), code: Some(code), .. }
            if file_name == "0002_broken.sql" && code == "42P01"),
        "{failed:?}"
    );
    assert!(failed.to_string().contains("missing"), "{failed}");
    assert!(
        failed.to_string().contains("INSERT INTO public.missing"),
        "{failed}"
    );
    let (half_made, versions): (bool, Vec<String>) = sqlx::query_as(
        "SELECT to_regclass('public.half_made') IS NOT NULL, \
                (SELECT array_agg(version ORDER BY version) FROM supabase_migrations.schema_migrations)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(
        !half_made,
        "the failed file's first statement was rolled back"
    );
    assert_eq!(
        versions,
        vec!["0001".to_owned()],
        "the first file stays applied"
    );
    let _ = conn.close().await;
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_adopted_project_has_its_password_reset_when_the_operator_allows_it() {
    let Some(world) =
        support::world_with(|_| {}, settings_with(AdoptedDatabase::ResetPassword)).await
    else {
        return;
    };
    let client = support::client(&support::unique_slug("reset"));
    let (project_ref, old_password) = project_made_elsewhere(&world, &client).await;
    let (record, view) = provision(&world, &client).await;
    assert_eq!(view.status, RunStatus::Succeeded, "{record:#?}");
    assert_eq!(calls(&world, PASSWORD), 1);
    let output = schema_output(&world, view.id).await;
    assert_eq!(output["access"], "pooler");

    // Journaled: the attempt that reset it says so, with the project, never a password.
    let derived = world
        .app
        .stack
        .database_password(&supabase_project::project_name(&client.client_id));
    let (journal, failures) = journal_of(&world, view.id).await;
    let (message, detail) = failures
        .iter()
        .find(|(m, _)| m.contains("reset the database password"))
        .expect("the reset is in the journal");
    assert!(message.contains(&project_ref), "{message}");
    assert_eq!(detail["passwordReset"]["projectRef"], project_ref.as_str());
    assert!(!journal.contains(derived.expose_secret()));
    assert!(!journal.contains(&old_password));

    // The old password is gone, the derived one works.
    assert!(log_in(&world, &project_ref, &old_password).await.is_err());
    log_in(&world, &project_ref, derived.expose_secret())
        .await
        .unwrap();
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_password_of_a_project_the_provisioner_created_is_never_reset() {
    let Some(world) =
        support::world_with(|_| {}, settings_with(AdoptedDatabase::ResetPassword)).await
    else {
        return;
    };
    // The schema step's first call is held, so the password can change under the run after
    // its project exists and before its schema step logs in.
    world.sandbox.faults().add(
        sandbox::FaultRule::new(
            Provider::Supabase,
            POOLER,
            sandbox::FaultKind::Latency { millis: 3000 },
        )
        .times(1),
    );
    let client = support::client(&support::unique_slug("ours"));
    let started = world.app.provision(&client).await.unwrap();
    let name = supabase_project::project_name(&client.client_id);
    let project_ref = loop {
        let inventory = world.sandbox.inventory().await;
        if let Some(p) = inventory.supabase_projects.iter().find(|p| p.name == name) {
            break p.reference.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let changed_by_hand = SecretString::from(format!("by-hand-{}", uuid::Uuid::new_v4().simple()));
    world
        .app
        .stack
        .supabase
        .update_database_password(&project_ref, &changed_by_hand)
        .await
        .unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    assert_ne!(view.status, RunStatus::Succeeded);
    let error = step_error(&view, database_schema::NAME);
    assert!(
        error.contains("although this provisioner created the project"),
        "{error}"
    );
    assert!(error.contains("nothing was reset"), "{error}");
    assert_eq!(calls(&world, PASSWORD), 1, "only the change made by hand");
    // The run made the project, so its undo removes it.
    assert_eq!(view.status, RunStatus::Compensated);
    finish(world).await;
}

/// Policies that recurse, through the table itself and through each other: tracing them to
/// their root causes takes probes beyond the first round.
const RECURSING_SCHEMA: &str = "
CREATE TABLE public.team_members (team_id uuid NOT NULL, user_id uuid NOT NULL, PRIMARY KEY (team_id, user_id));
ALTER TABLE public.team_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY team_members_select ON public.team_members FOR SELECT TO authenticated
    USING (team_id IN (SELECT team_id FROM public.team_members WHERE user_id = auth.uid()));
CREATE TABLE public.alpha (id uuid PRIMARY KEY, beta_id uuid);
CREATE TABLE public.beta (id uuid PRIMARY KEY, alpha_id uuid);
ALTER TABLE public.alpha ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.beta ENABLE ROW LEVEL SECURITY;
CREATE POLICY alpha_select ON public.alpha FOR SELECT TO authenticated
    USING (beta_id IN (SELECT id FROM public.beta));
CREATE POLICY beta_select ON public.beta FOR SELECT TO authenticated
    USING (alpha_id IN (SELECT id FROM public.alpha));
CREATE TABLE public.notes (id uuid PRIMARY KEY, owner_id uuid, api_key text);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_select ON public.notes FOR SELECT TO authenticated USING (true);
";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checks_through_the_sql_endpoint_report_what_a_connection_reports() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let client = support::client(&support::unique_slug("samecheck"));
    let (project_ref, _) = project_made_elsewhere(&world, &client).await;
    let stack = &world.app.stack;
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
    let fixture = MigrationSet::from_files(
        "test",
        [(
            "0001_recursing.sql".to_owned(),
            RECURSING_SCHEMA.as_bytes().to_vec(),
        )],
    )
    .unwrap();
    let applied = tenant_db::apply_migrations_over_endpoint(&endpoint, &fixture)
        .await
        .unwrap();
    assert_eq!(applied.applied_now, vec!["0001".to_owned()]);

    let options = tenant_db::CheckOptions::default();
    let over_endpoint = tenant_db::check_schema_over_endpoint(&endpoint, &options)
        .await
        .unwrap();
    // The project's own role over a direct connection (the test server trusts loopback).
    let direct = world
        .sandbox
        .direct_db_url_template()
        .unwrap()
        .replace("{ref}", &project_ref)
        .replace("{host}", "127.0.0.1")
        .replace("{password}", "unused");
    let over_connection = tenant_db::check_schema(&SecretString::from(direct), &options)
        .await
        .unwrap();
    assert!(!over_endpoint.passed);
    assert_eq!(
        serde_json::to_value(&over_endpoint).unwrap(),
        serde_json::to_value(&over_connection).unwrap()
    );
    let brief = over_endpoint.brief();
    assert!(brief.contains("team_members"), "{brief}");
    assert!(brief.contains("alpha") && brief.contains("beta"), "{brief}");
    assert!(brief.contains("notes"), "{brief}");

    // Every probe round was rolled back: no synthetic row, every policy and flag in place.
    let mut conn = admin_connection(&project_ref).await;
    let (rows, rls_off): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM public.team_members) + (SELECT count(*) FROM public.alpha) \
                + (SELECT count(*) FROM public.beta) + (SELECT count(*) FROM public.notes), \
                (SELECT count(*) FROM pg_catalog.pg_class c \
                 WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r' \
                   AND NOT c.relrowsecurity)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((rows, rls_off), (0, 0));
    let _ = conn.close().await;
    finish(world).await;
}
