//! The provisioner as one process runs it: a journal, the engine with both sagas registered,
//! its workers, and the client stack they drive. Commands (`demo`, `provision`,
//! `deprovision`, `status`) and, later, the HTTP API are thin layers over this.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use saga::{
    Engine, Journal, PostgresJournal, RunStatus, RunView, SealingKey, SqliteJournal, Started,
    Workers,
};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::client::{Client, ClientSlug, Teardown};
use crate::config::Config;
use crate::notify::Notifier;
use crate::record::ResourceRecord;
use crate::sagas;
use crate::stack::Stack;
use crate::templates::Templates;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(
        "PROVISIONER_SECRET_KEY is not set; generate one with `openssl rand -base64 32` and keep it: it seals secrets in the journal"
    )]
    MissingSecretKey,
    #[error("PROVISIONER_SECRET_KEY is unusable: {0}")]
    BadSecretKey(String),
    #[error("cannot open the journal at {location}: {message}")]
    Journal { location: String, message: String },
    #[error(transparent)]
    Stack(#[from] crate::stack::StackError),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("saga definitions are inconsistent: {0}")]
    Definition(#[from] saga::DefinitionError),
    #[error(transparent)]
    Engine(#[from] saga::EngineError),
    #[error(transparent)]
    Notify(#[from] crate::notify::NotifyError),
}

/// Where the journal lives when nothing says otherwise: a stable per-user location, so a later
/// command finds the runs an earlier one started.
pub fn default_journal_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("provisioner").join("journal.sqlite")
}

/// Opens `sqlite:PATH` / `sqlite://PATH` or `postgres://…`.
pub async fn open_journal(url: Option<&str>) -> Result<Arc<dyn Journal>, AppError> {
    let fail = |location: &str, e: &dyn std::fmt::Display| AppError::Journal {
        location: location.to_owned(),
        message: e.to_string(),
    };
    match url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let journal = PostgresJournal::connect(url)
                .await
                .map_err(|e| fail("the PostgreSQL journal", &e))?;
            Ok(Arc::new(journal))
        }
        other => {
            let path = other
                .map(|u| {
                    PathBuf::from(
                        u.trim_start_matches("sqlite://")
                            .trim_start_matches("sqlite:"),
                    )
                })
                .unwrap_or_else(default_journal_path);
            open_sqlite(&path).await
        }
    }
}

pub async fn open_sqlite(path: &Path) -> Result<Arc<dyn Journal>, AppError> {
    let location = path.display().to_string();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AppError::Journal {
            location: location.clone(),
            message: e.to_string(),
        })?;
    }
    let journal = SqliteJournal::open(path)
        .await
        .map_err(|e| AppError::Journal {
            location,
            message: e.to_string(),
        })?;
    Ok(Arc::new(journal))
}

/// The environment a process works in, as an opaque fingerprint: a hash of where and as whom
/// it provisions (provider base URLs, Supabase organisation, GitHub organisation and template,
/// Vercel team, n8n base URL). Runs carry the fingerprint of the process that started them and
/// only workers with the same one drive them, so a shell pointed at the sandbox never picks up
/// (and "undoes" against the simulators) a run started against the real providers.
///
/// Credentials are not part of it (rotating a token keeps the environment), and URLs are
/// reduced to scheme, host, port and path first, so a credential or query in a URL cannot end
/// up hashed into the journal either.
pub fn environment_fingerprint(config: &Config) -> String {
    use sha2::{Digest, Sha256};
    let p = &config.providers;
    let fields = [
        ("supabase_api_url", endpoint(&p.supabase_api_url)),
        ("supabase_org", p.supabase_org_slug.clone()),
        ("github_api_url", endpoint(&p.github_api_url)),
        ("github_org", p.github_org.clone()),
        (
            "github_template",
            format!("{}/{}", p.github_template.0, p.github_template.1),
        ),
        ("vercel_api_url", endpoint(&p.vercel_api_url)),
        ("vercel_team", p.vercel_team_id.clone().unwrap_or_default()),
        ("n8n_base_url", endpoint(&p.n8n_base_url)),
    ];
    let mut hasher = Sha256::new();
    for (name, value) in fields {
        // Length-prefixed, so no two different field lists hash the same bytes.
        for part in [name, value.as_str()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
    }
    let digest = hasher.finalize();
    format!("env1-{}", hex::encode(&digest[..12]))
}

/// A base URL without user, password, query or fragment, and without a trailing slash.
fn endpoint(raw: &str) -> String {
    match url::Url::parse(raw.trim()) {
        Ok(mut url) => {
            // Both only fail for URLs that cannot carry a user (no host): nothing to remove.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.as_str().trim_end_matches('/').to_owned()
        }
        // Not a URL (config validation would normally refuse it): hashed as given, trimmed.
        Err(_) => raw.trim().trim_end_matches('/').to_owned(),
    }
}

/// The engine with both sagas and the stack they drive.
#[derive(Debug)]
pub struct App {
    pub engine: Engine,
    pub stack: Arc<Stack>,
    workers: Option<Workers>,
    /// The `[[notify]]` delivery loops, beside the workers.
    notifier: Option<Notifier>,
}

/// Runs one process drives at once unless told otherwise: far more than the providers' rate
/// budgets let progress together, so the budgets, not this, pace a busy process.
pub const DEFAULT_MAX_ACTIVE_RUNS: usize = 1024;

/// Knobs tests and the demo turn; production uses the defaults.
#[derive(Debug, Clone)]
pub struct AppOptions {
    pub readiness_interval: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    /// Start this process's workers (a read-only command such as `status` does not).
    pub workers: bool,
    /// Most runs this process's workers drive at once.
    pub max_active_runs: usize,
}

impl Default for AppOptions {
    fn default() -> Self {
        Self {
            readiness_interval: crate::stack::READINESS_INTERVAL,
            // A dead worker's runs are taken over within a lease (renewed every third of it,
            // so 5.3 to 8 s after the kill, plus a claim poll): under the 10 s the failover
            // target allows, for one renewal per worker every 2.7 s.
            lease: Duration::from_secs(8),
            poll_interval: Duration::from_millis(500),
            workers: true,
            max_active_runs: DEFAULT_MAX_ACTIVE_RUNS,
        }
    }
}

impl App {
    /// Builds the stack and the engine, and starts this process's workers.
    pub async fn start(
        config: &Config,
        journal: Arc<dyn Journal>,
        secret_key: &SecretString,
        options: AppOptions,
    ) -> Result<Self, AppError> {
        let sealing = SealingKey::from_base64(secret_key.expose_secret())
            .map_err(|e| AppError::BadSecretKey(e.to_string()))?;
        let templates = Templates::load(&config.settings.templates)?;
        let stack = Arc::new(Stack::new(
            config,
            templates,
            secret_key.clone(),
            options.readiness_interval,
        )?);
        let registry = sagas::registry(&stack)?;
        let engine = Engine::builder(journal, registry)
            .sealing_key(sealing)
            .lease(options.lease)
            .poll_interval(options.poll_interval)
            .max_active_runs(options.max_active_runs)
            .environment(environment_fingerprint(config))
            .build();
        // Deliveries go with the workers: a read-only command sends nothing.
        let notifier = match options.workers {
            true => Notifier::start(&engine, &config.settings.notify, options.poll_interval)?,
            false => None,
        };
        let workers = options.workers.then(|| engine.run_workers());
        Ok(Self {
            engine,
            stack,
            workers,
            notifier,
        })
    }

    /// How many times the client has been torn down for good: runs of later generations get
    /// keys of their own, so provisioning a client again after a teardown starts afresh
    /// instead of returning the old run.
    pub async fn generation(&self, slug: &ClientSlug) -> Result<u32, AppError> {
        let mut generation = 0;
        loop {
            let key = sagas::run_key(sagas::DEPROVISION, slug, generation);
            match self.engine.find_by_key(&key).await? {
                Some(run) if run.status == RunStatus::Succeeded => generation += 1,
                _ => return Ok(generation),
            }
        }
    }

    /// Starts the client's provision run, or returns the one it has. A run that was
    /// compensated (everything undone) runs forward again.
    ///
    /// Modules are added by provisioning again: when the client's newest run succeeded and
    /// the request differs from it only in `modules`, keeping every module it had, a new run
    /// (the next revision, [`sagas::provision_key`]) starts; it adopts what exists and creates
    /// the missing module workflows. Any other difference (branding, tier, a module removed)
    /// is the same-key conflict as before: deprovision the client first.
    pub async fn provision(&self, client: &Client) -> Result<Started, AppError> {
        self.provision_by(client, None).await
    }

    /// [`App::provision`], recording `actor` in the run's history as who asked.
    pub async fn provision_by(
        &self,
        client: &Client,
        actor: Option<&str>,
    ) -> Result<Started, AppError> {
        let slug = &client.client_id;
        let (generation, revision, latest) = self.latest_provision(slug).await?;
        let next = match &latest {
            Some(run) if self.only_adds_modules(run, client).await? => revision + 1,
            _ => revision,
        };
        let key = sagas::provision_key(slug, generation, next);
        let started = self
            .engine
            .start_by(sagas::PROVISION, &key, client, actor)
            .await?;
        self.again_if(started, RunStatus::Compensated, actor).await
    }

    /// Starts the client's teardown, or returns the one it has. A teardown parked in
    /// needs_attention (something could not be deleted) is retried, so the client can always
    /// be torn down from its journal.
    pub async fn deprovision(&self, slug: &ClientSlug) -> Result<Started, AppError> {
        self.deprovision_by(slug, None).await
    }

    /// [`App::deprovision`], recording `actor` in the run's history as who asked.
    pub async fn deprovision_by(
        &self,
        slug: &ClientSlug,
        actor: Option<&str>,
    ) -> Result<Started, AppError> {
        let generation = self.generation(slug).await?;
        let key = sagas::run_key(sagas::DEPROVISION, slug, generation);
        let input = Teardown {
            client_id: slug.clone(),
            recorded_domain: self.recorded_domain(slug).await?,
        };
        let started = self
            .engine
            .start_by(sagas::DEPROVISION, &key, &input, actor)
            .await?;
        self.again_if(started, RunStatus::NeedsAttention, actor)
            .await
    }

    /// The domain the client's newest provision run put on its Vercel project, if it got
    /// that far and a domain was configured then.
    async fn recorded_domain(&self, slug: &ClientSlug) -> Result<Option<String>, AppError> {
        let (_, _, run) = self.latest_provision(slug).await?;
        let Some(run) = run else {
            return Ok(None);
        };
        // A run that never reached the step has no output: nothing recorded, not an error.
        Ok(self
            .engine
            .output::<crate::steps::vercel_domain::VercelDomain>(
                run.id,
                crate::steps::vercel_domain::NAME,
            )
            .await
            .ok()
            .and_then(|output| output.domain))
    }

    /// The key of the client's current provision run (its newest in this generation, the one
    /// [`App::provision`] returns when asked with the same parameters), so a caller can look
    /// at it before asking for it.
    pub async fn provision_key(&self, slug: &ClientSlug) -> Result<String, AppError> {
        let (generation, revision, _) = self.latest_provision(slug).await?;
        Ok(sagas::provision_key(slug, generation, revision))
    }

    /// The client's generation, the revision of its newest provision run in it, and that run.
    pub async fn latest_provision(
        &self,
        slug: &ClientSlug,
    ) -> Result<(u32, u32, Option<saga::RunSummary>), AppError> {
        let generation = self.generation(slug).await?;
        let mut latest = None;
        for revision in 0.. {
            let key = sagas::provision_key(slug, generation, revision);
            match self.engine.find_by_key(&key).await? {
                Some(run) => latest = Some((revision, run)),
                None => break,
            }
        }
        Ok(match latest {
            Some((revision, run)) => (generation, revision, Some(run)),
            None => (generation, 0, None),
        })
    }

    /// Whether `client` asks `run` (a succeeded provisioning) for more modules and nothing
    /// else: then it is provisioned again under a new key instead of conflicting.
    async fn only_adds_modules(
        &self,
        run: &saga::RunSummary,
        client: &Client,
    ) -> Result<bool, AppError> {
        if run.status != RunStatus::Succeeded {
            return Ok(false);
        }
        let Some(before) = self
            .run_input(run.id)
            .await?
            .and_then(|input| serde_json::from_value::<Client>(input).ok())
        else {
            return Ok(false);
        };
        if before.differing_fields(client) != ["modules"] {
            return Ok(false);
        }
        let had = crate::steps::n8n_modules::modules_of(&self.stack, &before);
        let wants = crate::steps::n8n_modules::modules_of(&self.stack, client);
        Ok(had.iter().all(|m| wants.contains(m)))
    }

    /// The input the run was started with, as journaled (inputs hold no secret).
    pub async fn run_input(&self, run_id: Uuid) -> Result<Option<serde_json::Value>, AppError> {
        let row = self
            .engine
            .journal()
            .run(run_id)
            .await
            .map_err(saga::EngineError::from)?;
        Ok(row.map(|r| r.input))
    }

    /// Retries an existing run that ended in `ended`; a run in any other state is returned as
    /// it is.
    async fn again_if(
        &self,
        started: Started,
        ended: RunStatus,
        actor: Option<&str>,
    ) -> Result<Started, AppError> {
        if started.created {
            return Ok(started);
        }
        let run = self.engine.status(started.run_id).await?;
        if run.status != ended {
            return Ok(started);
        }
        match self.engine.retry_by(started.run_id, actor).await {
            Ok(()) => Ok(started),
            // Someone else retried it in the meantime: the run is moving again either way.
            Err(saga::EngineError::Journal(saga::JournalError::WrongState { .. })) => Ok(started),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn wait(&self, run_id: Uuid) -> Result<RunView, AppError> {
        Ok(self.engine.wait_for(run_id).await?)
    }

    /// For a run started in another environment (other provider endpoints or accounts),
    /// a line saying so: this process's workers will not drive it.
    pub fn environment_note(&self, view: &RunView) -> Option<String> {
        let here = self.engine.environment();
        (view.environment.as_deref() != here).then(|| match &view.environment {
            Some(theirs) => format!(
                "this run belongs to another environment ({theirs}; this configuration is {}): only a process configured like the one that started it will drive it",
                here.unwrap_or("none")
            ),
            None => "this run was started before runs recorded their environment: this configuration's workers will not drive it".to_owned(),
        })
    }

    pub fn record(view: &RunView) -> ResourceRecord {
        ResourceRecord::from_run(view)
    }

    /// This process's workers, for a caller that stops them itself while the app is shared
    /// (a server's handlers hold the app until their connections close).
    pub fn take_workers(&mut self) -> Option<Workers> {
        self.workers.take()
    }

    /// The notification delivery loops, for a caller that stops them itself (see
    /// [`App::take_workers`]).
    pub fn take_notifier(&mut self) -> Option<Notifier> {
        self.notifier.take()
    }

    /// Lets in-flight steps finish (up to `grace`) and hands leases back, then sends the
    /// notifications due by then (for up to [`crate::notify::EXIT_DRAIN`]: a command's grace
    /// is about its steps, and a run it just finished should still be announced).
    pub async fn shutdown(mut self, grace: Duration) {
        if let Some(workers) = self.workers.take() {
            workers.shutdown(grace).await;
        }
        if let Some(notifier) = self.notifier.take() {
            notifier.shutdown(crate::notify::EXIT_DRAIN).await;
        }
    }

    /// Stops at once, as a crash would: leases (of runs and of notifications being sent) are
    /// left to expire.
    pub fn kill(mut self) {
        if let Some(workers) = self.workers.take() {
            workers.kill();
        }
        if let Some(notifier) = self.notifier.take() {
            notifier.kill();
        }
    }

    /// The run's notifications and how each webhook's delivery stands.
    pub async fn notifications(
        &self,
        run_id: Uuid,
    ) -> Result<Vec<saga::journal::OutboxEntry>, AppError> {
        match self.engine.journal().outbox() {
            Some(outbox) => Ok(outbox
                .outbox_of_run(run_id)
                .await
                .map_err(saga::EngineError::from)?),
            None => Ok(Vec::new()),
        }
    }
}

/// The secret key from the environment, or an error saying how to make one.
pub fn secret_key_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<SecretString, AppError> {
    let key = env("PROVISIONER_SECRET_KEY").ok_or(AppError::MissingSecretKey)?;
    SealingKey::from_base64(key.trim()).map_err(|e| AppError::BadSecretKey(e.to_string()))?;
    Ok(SecretString::from(key.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::config::{ProviderEnv, Settings};

    fn config() -> Config {
        Config {
            settings: Settings::default(),
            providers: ProviderEnv {
                supabase_api_url: "https://api.supabase.com".into(),
                supabase_token: SecretString::from("sbp_token-canary-1"),
                supabase_org_slug: "acme-org".into(),
                supabase_db_url_template: Some(
                    "postgresql://postgres:{password}@db.{ref}.supabase.co:5432/postgres".into(),
                ),
                github_api_url: "https://api.github.com".into(),
                github_token: SecretString::from("ghp_token-canary-2"),
                github_org: "acme".into(),
                github_template: ("acme".into(), "template".into()),
                vercel_api_url: "https://api.vercel.com".into(),
                vercel_token: SecretString::from("vercel-token-canary-3"),
                vercel_team_id: Some("team_1".into()),
                vercel_deployment_origin: None,
                n8n_base_url: "https://n8n.acme.example".into(),
                n8n_api_key: SecretString::from("n8n-key-canary-4"),
            },
        }
    }

    #[test]
    fn the_fingerprint_changes_with_every_endpoint_and_account_and_never_with_a_credential() {
        let base = environment_fingerprint(&config());
        assert!(base.starts_with("env1-"), "{base}");
        let changes: [fn(&mut ProviderEnv); 8] = [
            |p| p.supabase_api_url = "http://127.0.0.1:4001".into(),
            |p| p.supabase_org_slug = "sandbox-org".into(),
            |p| p.github_api_url = "http://127.0.0.1:4002".into(),
            |p| p.github_org = "sandbox".into(),
            |p| p.github_template.1 = "other-template".into(),
            |p| p.vercel_api_url = "http://127.0.0.1:4003".into(),
            |p| p.vercel_team_id = None,
            |p| p.n8n_base_url = "http://127.0.0.1:4004".into(),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut c = config();
            change(&mut c.providers);
            assert_ne!(environment_fingerprint(&c), base, "change {i}");
        }
        let mut rotated = config();
        rotated.providers.github_token = SecretString::from("ghp_rotated");
        rotated.providers.n8n_api_key = SecretString::from("n8n_rotated");
        rotated.providers.n8n_base_url = "https://user:hunter2@n8n.acme.example/?token=x".into();
        assert_eq!(environment_fingerprint(&rotated), base);
        let text = environment_fingerprint(&rotated);
        for secret in ["canary", "hunter2", "token", "rotated"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}
