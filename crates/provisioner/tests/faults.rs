//! The client stack against misbehaving providers: every run ends succeeded, compensated or
//! needs_attention with the exact list, and the sandbox's inventory is checked at the end.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

mod support;

use std::time::Duration;

use provisioner::app::App;
use provisioner::client::Client;
use provisioner::record::ResourceRecord;
use saga::RunStatus;
use sandbox::{FaultKind, FaultRule, Provider};

const SUPABASE_CREATE: &str = "POST /v1/projects";
const GITHUB_CREATE: &str = "POST /repos/{template_owner}/{template_repo}/generate";
const VERCEL_CREATE: &str = "POST /v11/projects";
const VERCEL_DEPLOY: &str = "POST /v13/deployments";
const N8N_CREATE: &str = "POST /api/v1/workflows";
const VERCEL_ENV: &str = "POST /v10/projects/{idOrName}/env";

const SUPABASE_DELETE: &str = "DELETE /v1/projects/{ref}";
const GITHUB_DELETE: &str = "DELETE /repos/{owner}/{repo}";
const VERCEL_DELETE: &str = "DELETE /v9/projects/{idOrName}";
const N8N_DELETE: &str = "DELETE /api/v1/workflows/{workflowId}";
const N8N_DEACTIVATE: &str = "POST /api/v1/workflows/{workflowId}/deactivate";
const N8N_UNPUBLISH: &str = "POST /api/v1/workflows/{workflowId}/unpublish";

async fn provision(world: &support::World, client: &Client) -> (ResourceRecord, saga::RunView) {
    let started = world.app.provision(client).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    (App::record(&view), view)
}

async fn finish(world: support::World) {
    world.app.shutdown(Duration::from_secs(5)).await;
    world.sandbox.shutdown().await;
}

/// Calls of `endpoint` as (status, connection dropped), in order.
fn calls(world: &support::World, provider: Provider, endpoint: &str) -> Vec<(u16, bool)> {
    world
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.provider == provider && r.endpoint == endpoint)
        .map(|r| (r.status, r.connection_dropped))
        .collect()
}

fn step_error(view: &saga::RunView, step: &str) -> String {
    view.steps
        .iter()
        .find(|s| s.name == step)
        .and_then(|s| s.last_error.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_storm_on_supabase_is_waited_out_as_the_headers_say() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let storm = 4;
    world.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            "*",
            FaultKind::Status {
                status: 429,
                message: None,
                retry_after_secs: Some(1),
            },
        )
        .times(storm),
    );
    let client = support::client(&support::unique_slug("storm"));

    let (record, _) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::Succeeded, "{record:#?}");
    let supabase: Vec<_> = world
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.provider == Provider::Supabase)
        .collect();
    let limited: Vec<_> = supabase
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == 429)
        .collect();
    assert_eq!(limited.len(), storm as usize);
    // Nobody sharing the credential called Supabase again before `Retry-After: 1` was up.
    for (i, answer) in limited {
        let next = supabase
            .get(i + 1)
            .expect("a call follows every 429: the run succeeded");
        let waited = next.at - answer.at;
        assert!(
            waited >= chrono::Duration::seconds(1),
            "{} came {waited} after a 429 that asked for 1 s",
            next.endpoint
        );
    }
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        support::full_stack_names(&client)
    );
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_answers_to_every_create_are_found_again_not_repeated() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let creates = [
        (Provider::Supabase, SUPABASE_CREATE),
        (Provider::Github, GITHUB_CREATE),
        (Provider::Vercel, VERCEL_CREATE),
        (Provider::Vercel, VERCEL_DEPLOY),
        (Provider::N8n, N8N_CREATE),
    ];
    for (provider, endpoint) in creates {
        world
            .sandbox
            .faults()
            .add(FaultRule::new(provider, endpoint, FaultKind::DropConnection).times(1));
    }
    let client = support::client(&support::unique_slug("lost"));

    let (record, _) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::Succeeded, "{record:#?}");
    for (provider, endpoint) in creates {
        // Performed once, its answer lost, and the retry adopted it instead of creating again.
        let made = calls(&world, provider, endpoint);
        assert_eq!(made.len(), 1, "{endpoint}: {made:?}");
        assert!(made[0].1, "{endpoint}: the answer was not dropped");
        assert!((200..300).contains(&made[0].0), "{endpoint}: {made:?}");
    }
    // Made by this run, so an undo would remove them: not "adopted".
    assert!(!record.supabase.unwrap().adopted);
    assert!(!record.github.unwrap().adopted);
    assert!(!record.vercel.unwrap().adopted);
    assert!(!record.n8n.unwrap().adopted);
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        support::full_stack_names(&client)
    );
    finish(world).await;
}

/// Supabase has no idempotency key: a create sent by an earlier attempt (whose caller died or
/// gave up) can land after the next attempt looked and created its own. Here the late one is
/// made by hand while the run waits for its project; the step notices the second project,
/// keeps the older one and removes the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_supabase_create_that_lands_late_is_removed_not_kept_twice() {
    // The late create must land while the run's project is still coming up (before the
    // step's second lookup); a long coming-up window keeps that true on a loaded machine.
    let Some(world) = support::world_with(
        |c| c.supabase_ready_after = Duration::from_millis(4000),
        support::quick_settings(),
    )
    .await
    else {
        return;
    };
    let client = support::client(&support::unique_slug("late"));
    let name = provisioner::steps::supabase_project::project_name(&client.client_id);
    let started = world.app.provision(&client).await.unwrap();
    // The run's own create has been answered; its project is still coming up.
    while calls(&world, Provider::Supabase, SUPABASE_CREATE).is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stack = &world.app.stack;
    let late = stack
        .supabase
        .create_project(&providers::supabase::CreateProject {
            name: name.clone(),
            organization_slug: stack.env.supabase_org_slug.clone(),
            db_pass: stack.database_password(&name),
            region_selection: None,
            desired_instance_size: None,
        })
        .await
        .unwrap();

    let view = world.app.wait(started.run_id).await.unwrap();
    let record = App::record(&view);

    assert_eq!(record.status, RunStatus::Succeeded, "{record:#?}");
    let kept = record.supabase.as_ref().unwrap().project_ref.clone();
    assert_ne!(kept, late.project_ref, "the older project is kept");
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        support::full_stack_names(&client)
    );
    let deleted: Vec<String> = world
        .sandbox
        .request_log()
        .into_iter()
        .filter(|r| r.endpoint == SUPABASE_DELETE && r.status < 300)
        .map(|r| r.path)
        .collect();
    assert_eq!(deleted, [format!("/v1/projects/{}", late.project_ref)]);
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_project_stuck_coming_up_times_out_and_everything_is_undone() {
    let mut settings = support::quick_settings();
    settings.supabase.ready_timeout_secs = 2;
    let Some(world) = support::world_with(|_| {}, settings).await else {
        return;
    };
    world.sandbox.faults().add(
        FaultRule::new(
            Provider::Supabase,
            SUPABASE_CREATE,
            FaultKind::StuckComingUp,
        )
        .times(1),
    );
    let client = support::client(&support::unique_slug("stuck"));

    let (record, view) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::Compensated, "{record:#?}");
    let error = step_error(&view, "supabase_project");
    assert!(
        error.contains("was not ACTIVE_HEALTHY after 2 s")
            && error.contains("last status COMING_UP"),
        "{error}"
    );
    assert!(
        record
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("not ACTIVE_HEALTHY")),
        "{record:#?}"
    );
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_project_that_fails_to_initialise_is_undone_with_its_own_reason() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    world
        .sandbox
        .faults()
        .add(FaultRule::new(Provider::Supabase, SUPABASE_CREATE, FaultKind::InitFailed).times(1));
    let client = support::client(&support::unique_slug("initf"));

    let (record, view) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::Compensated, "{record:#?}");
    let error = step_error(&view, "supabase_project");
    assert!(
        error.contains("ended in INIT_FAILED and will never become ready"),
        "{error}"
    );
    assert!(!error.contains("ACTIVE_HEALTHY after"), "{error}");
    assert!(
        record
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("INIT_FAILED")),
        "{record:#?}"
    );
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    finish(world).await;
}

/// The Vercel step fails for good (a rejected environment variable), so everything is undone,
/// while every provider's delete fails twice before it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_that_fail_a_few_times_still_end_compensated() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let faults = world.sandbox.faults();
    faults.add(FaultRule::new(
        Provider::Vercel,
        VERCEL_ENV,
        FaultKind::Status {
            status: 400,
            message: Some("The environment variable value is invalid".into()),
            retry_after_secs: None,
        },
    ));
    let deletes = [
        (Provider::Supabase, SUPABASE_DELETE),
        (Provider::Github, GITHUB_DELETE),
        (Provider::Vercel, VERCEL_DELETE),
        (Provider::N8n, N8N_DELETE),
    ];
    for (provider, endpoint) in deletes {
        faults.add(FaultRule::new(provider, endpoint, FaultKind::DeleteFails).times(2));
    }
    let client = support::client(&support::unique_slug("shaky"));

    let (record, _) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::Compensated, "{record:#?}");
    // The undo's own failures do not hide why the run was undone.
    assert!(
        record
            .failure
            .as_deref()
            .is_some_and(|f| f.contains("set environment of")),
        "{record:#?}"
    );
    for (provider, endpoint) in deletes {
        let statuses: Vec<u16> = calls(&world, provider, endpoint)
            .into_iter()
            .map(|(status, _)| status)
            .collect();
        assert_eq!(statuses.len(), 3, "{endpoint}: {statuses:?}");
        assert!(
            statuses[..2].iter().all(|s| *s >= 400) && statuses[2] < 300,
            "{endpoint}: {statuses:?}"
        );
    }
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    finish(world).await;
}

/// Deletes refused for good (GitHub's answer to a token without admin rights on the
/// repository, and n8n's to a key without the scope): the run parks with exactly those steps,
/// and exactly their resources are left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletes_refused_for_good_park_the_run_with_exactly_what_is_left() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let faults = world.sandbox.faults();
    faults.add(FaultRule::new(
        Provider::Vercel,
        VERCEL_ENV,
        FaultKind::Status {
            status: 400,
            message: Some("The environment variable value is invalid".into()),
            retry_after_secs: None,
        },
    ));
    faults.add(FaultRule::new(
        Provider::Github,
        GITHUB_DELETE,
        FaultKind::Status {
            status: 403,
            message: Some("Must have admin rights to Repository.".into()),
            retry_after_secs: None,
        },
    ));
    faults.add(FaultRule::new(
        Provider::N8n,
        N8N_DELETE,
        FaultKind::Status {
            status: 403,
            message: Some("Forbidden".into()),
            retry_after_secs: None,
        },
    ));
    let client = support::client(&support::unique_slug("stuckdel"));
    let slug = client.client_id.as_str();

    let (record, view) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::NeedsAttention, "{record:#?}");
    let mut left = view.needs_attention.clone().unwrap_or_default();
    left.sort();
    assert_eq!(left, ["github_repo", "n8n_workflow"]);
    assert_eq!(record.still_exists.as_ref(), view.needs_attention.as_ref());
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        [
            format!("github repo sandbox-agency/client-{slug}-app"),
            // Deactivated on the way to the refused delete.
            format!(
                "n8n workflow Client {slug} - {} (inactive)",
                client.client_name
            ),
        ]
    );
    finish(world).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_half_finished_client_is_torn_down_from_what_exists() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let client = support::client(&support::unique_slug("half"));
    let slug = client.client_id.as_str();
    // What a run that died after its first two steps, with its record lost, leaves behind.
    support::build_parts(
        &world.app.stack,
        &client,
        support::Parts {
            supabase: false,
            github: true,
            vercel: false,
            n8n: true,
        },
    )
    .await;
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await).len(),
        2
    );

    let started = world.app.deprovision(&client.client_id).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    let record = App::record(&view);

    assert_eq!(record.status, RunStatus::Succeeded, "{record:#?}");
    let mut removed = record.removed.clone();
    removed.sort();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(
        removed[0],
        format!("GitHub repository sandbox-agency/client-{slug}-app")
    );
    assert!(
        removed[1].starts_with(&format!("n8n workflow Client {slug} - ")),
        "{removed:?}"
    );
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    finish(world).await;
}

/// A schema whose membership policy looks itself up: the authenticated check fails on that
/// table with PostgreSQL's message, and the run undoes everything.
const RECURSIVE_POLICY: &str = "
CREATE TABLE public.teams (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), name text NOT NULL);
CREATE TABLE public.team_members (
    team_id uuid NOT NULL REFERENCES public.teams (id) ON DELETE CASCADE,
    user_id uuid NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user_id_idx ON public.team_members (user_id);
ALTER TABLE public.teams ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.team_members ENABLE ROW LEVEL SECURITY;
CREATE POLICY teams_select ON public.teams FOR SELECT TO authenticated USING (true);
CREATE POLICY team_members_select ON public.team_members FOR SELECT TO authenticated
    USING (team_id IN (SELECT team_id FROM public.team_members WHERE user_id = auth.uid()));
";

/// A table someone forgot to protect.
const TABLE_WITHOUT_RLS: &str = "
CREATE TABLE public.notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text NOT NULL);
CREATE TABLE public.internal_notes (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), body text);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY notes_select ON public.notes FOR SELECT TO authenticated USING (true);
";

async fn provision_with_schema(schema: &str, slug_prefix: &str) -> Option<(String, String)> {
    let templates = tempfile::tempdir().unwrap();
    std::fs::write(templates.path().join("0001_init.sql"), schema).unwrap();
    let mut settings = support::quick_settings();
    settings.templates.migrations = Some(templates.path().to_owned());
    let world = support::world_with(|_| {}, settings).await?;
    let client = support::client(&support::unique_slug(slug_prefix));

    let (record, view) = provision(&world, &client).await;

    assert_eq!(record.status, RunStatus::Compensated, "{record:#?}");
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    let failure = record.failure.clone().unwrap_or_default();
    let error = step_error(&view, "database_schema");
    finish(world).await;
    Some((failure, error))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_with_a_recursive_policy_is_undone_and_the_report_names_the_table() {
    let Some((failure, error)) = provision_with_schema(RECURSIVE_POLICY, "recur").await else {
        return;
    };
    assert!(
        error.contains("SelectableAsAuthenticated on team_members")
            && error.contains("infinite recursion"),
        "{error}"
    );
    assert!(failure.contains("team_members"), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_schema_with_an_unprotected_table_is_undone_and_the_report_names_the_table() {
    let Some((failure, error)) = provision_with_schema(TABLE_WITHOUT_RLS, "norls").await else {
        return;
    };
    assert!(error.contains("RlsEnabled on internal_notes"), "{error}");
    assert!(!error.contains(" on notes"), "{error}");
    assert!(failure.contains("internal_notes"), "{failure}");
}

/// Ownership is decided by the run's marker, not by the clock. A run is compensated; someone
/// then makes the client's repository and Supabase project by hand, under the same names; the
/// run is retried and undone again (the same failure, later in the saga). The retry adopts
/// both, so its undo leaves both: the repository because it lacks the run's marker, the
/// project (Supabase has no place for a marker) because it predates the retry's own attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resources_made_by_hand_before_a_retry_survive_the_retrys_undo() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    world.sandbox.faults().add(FaultRule::new(
        Provider::Vercel,
        VERCEL_ENV,
        FaultKind::Status {
            status: 400,
            message: Some("The environment variable value is invalid".into()),
            retry_after_secs: None,
        },
    ));
    let client = support::client(&support::unique_slug("byhand"));
    let (record, view) = provision(&world, &client).await;
    assert_eq!(record.status, RunStatus::Compensated, "{record:#?}");
    assert!(world.sandbox.inventory().await.is_empty());

    support::build_parts(
        &world.app.stack,
        &client,
        support::Parts {
            supabase: true,
            github: true,
            vercel: false,
            n8n: false,
        },
    )
    .await;
    let made_by_hand = support::stable_names(&world.sandbox.inventory().await);
    // The project, its database, its role and pooler role, the repository.
    assert_eq!(made_by_hand.len(), 5, "{made_by_hand:?}");
    // Providers report creation times in whole seconds: retry in a later one.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let deletes_before = (
        calls(&world, Provider::Github, GITHUB_DELETE).len(),
        calls(&world, Provider::Supabase, SUPABASE_DELETE).len(),
    );

    world.app.engine.retry(view.id).await.unwrap();
    let view = world.app.wait(view.id).await.unwrap();

    assert_eq!(view.status, RunStatus::Compensated, "{view:#?}");
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        made_by_hand
    );
    assert_eq!(
        (
            calls(&world, Provider::Github, GITHUB_DELETE).len(),
            calls(&world, Provider::Supabase, SUPABASE_DELETE).len(),
        ),
        deletes_before,
        "the retry's undo deleted something"
    );
    finish(world).await;
}

/// A teardown that cannot finish parks naming what is left; once the cause is fixed,
/// deprovisioning the client again retries that teardown, which makes the calls and finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_parked_teardown_is_finished_by_deprovisioning_again() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let client = support::client(&support::unique_slug("again"));
    let slug = client.client_id.as_str();
    support::build_parts(&world.app.stack, &client, support::Parts::ALL).await;
    world.sandbox.faults().add(FaultRule::new(
        Provider::Vercel,
        VERCEL_DELETE,
        FaultKind::Status {
            status: 403,
            message: Some("You don't have permission to delete this project".into()),
            retry_after_secs: None,
        },
    ));

    let first = world.app.deprovision(&client.client_id).await.unwrap();
    let parked = world.app.wait(first.run_id).await.unwrap();
    assert_eq!(parked.status, RunStatus::NeedsAttention, "{parked:#?}");
    // The operator grants the permission.
    world.sandbox.faults().clear();
    let vercel_deletes = calls(&world, Provider::Vercel, VERCEL_DELETE).len();

    let again = world.app.deprovision(&client.client_id).await.unwrap();
    assert_eq!(again.run_id, first.run_id, "the parked teardown is retried");
    let view = world.app.wait(again.run_id).await.unwrap();

    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    assert!(calls(&world, Provider::Vercel, VERCEL_DELETE).len() > vercel_deletes);
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());

    // While parked, the run named what was left: the step that failed, the two waiting on
    // it, and in the failed step's error the resource itself.
    let mut left = parked.needs_attention.clone().unwrap_or_default();
    left.sort();
    assert_eq!(
        left,
        [
            "delete_github_repo",
            "delete_supabase_project",
            "delete_vercel_project"
        ]
    );
    let error = step_error(&parked, "delete_vercel_project");
    assert!(
        error.contains(&format!("still there: Vercel project client-{slug}-app")),
        "{error}"
    );
    let record = App::record(&parked);
    assert_eq!(record.left.len(), 1, "{record:#?}");
    assert!(
        record.left[0].starts_with(&format!("Vercel project client-{slug}-app (prj_")),
        "{record:#?}"
    );
    finish(world).await;
}

/// Provisioning a client whose last provision was compensated runs that run forward again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compensated_provision_runs_forward_when_provisioned_again() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    world.sandbox.faults().add(
        FaultRule::new(
            Provider::Vercel,
            VERCEL_ENV,
            FaultKind::Status {
                status: 400,
                message: Some("The environment variable value is invalid".into()),
                retry_after_secs: None,
            },
        )
        .times(1),
    );
    let client = support::client(&support::unique_slug("rerun"));
    let first = world.app.provision(&client).await.unwrap();
    let view = world.app.wait(first.run_id).await.unwrap();
    assert_eq!(view.status, RunStatus::Compensated, "{view:#?}");

    let again = world.app.provision(&client).await.unwrap();
    assert_eq!(again.run_id, first.run_id, "the compensated run is retried");
    let view = world.app.wait(again.run_id).await.unwrap();

    assert_eq!(view.status, RunStatus::Succeeded, "{view:#?}");
    assert_eq!(
        support::stable_names(&world.sandbox.inventory().await),
        support::full_stack_names(&client)
    );
    finish(world).await;
}

/// n8n 1.x deletes an active workflow, so a teardown whose deactivation is refused still
/// deletes the workflow.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_workflow_whose_deactivation_is_refused_is_still_deleted() {
    let Some(world) = support::world_with(|_| {}, support::quick_settings()).await else {
        return;
    };
    let client = support::client(&support::unique_slug("nooff"));
    support::build_parts(
        &world.app.stack,
        &client,
        support::Parts {
            supabase: false,
            github: false,
            vercel: false,
            n8n: true,
        },
    )
    .await;
    for endpoint in [N8N_DEACTIVATE, N8N_UNPUBLISH] {
        world.sandbox.faults().add(FaultRule::new(
            Provider::N8n,
            endpoint,
            FaultKind::Status {
                status: 403,
                message: Some("Forbidden".into()),
                retry_after_secs: None,
            },
        ));
    }

    let started = world.app.deprovision(&client.client_id).await.unwrap();
    let view = world.app.wait(started.run_id).await.unwrap();
    let record = App::record(&view);

    assert_eq!(record.status, RunStatus::Succeeded, "{record:#?}");
    assert_eq!(record.removed.len(), 1, "{record:#?}");
    assert_eq!(
        calls(&world, Provider::N8n, N8N_DELETE),
        [(200, false)],
        "the delete was made once and worked"
    );
    let inventory = world.sandbox.inventory().await;
    assert!(inventory.is_empty(), "{:?}", inventory.resource_names());
    finish(world).await;
}
