//! The life of one provider resource, written once: find it by its deterministic name, adopt
//! it or create it, undo only what this run made, and tear it down. Each step file says only
//! its provider's specifics through [`ProviderResource`].
//!
//! Whether a run made a resource is decided by a marker the run puts on it when it creates it
//! (its run id, in a field the provider's create call takes), never by comparing clocks with
//! the run's start: a resource made by someone else between a run's first attempt and a
//! `retry` days later carries no such marker and is adopted, never deleted. A provider with
//! no place for a marker judges by creation time, bounded to this step's own attempts
//! ([`RunMark::made_during_attempts`]).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use saga::{ForwardStep, RetryPolicy, Step, StepContext, StepError, StepPolicy};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::Removed;
use crate::client::{Client, ClientSlug, Teardown};
use crate::stack::Stack;

/// What a step knows about the run it belongs to when it judges a resource it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunMark {
    /// Written into what the run creates, where the provider has a place for it.
    pub run_id: Uuid,
    /// When this step's attempts began (the first attempt of the current budget; in an undo,
    /// of the attempts being undone), as the journal recorded it.
    pub attempts_began: Option<DateTime<Utc>>,
}

impl RunMark {
    pub fn of<I>(ctx: &StepContext<'_, I>) -> Self {
        Self {
            run_id: ctx.run_id(),
            attempts_began: ctx.first_attempt_at(),
        }
    }

    /// The time test, for a provider with no place for a marker: a resource created since
    /// this step's attempts began is taken as theirs. Compared in whole seconds, since
    /// providers report creation times to the second. No allowance for clock skew on
    /// purpose: misjudging a resource as older leaves an orphan the report names, misjudging
    /// it as newer would delete someone else's. Unknown times are never ours.
    pub fn made_during_attempts(&self, created_at: Option<DateTime<Utc>>) -> bool {
        match (created_at, self.attempts_began) {
            (Some(created), Some(began)) => created.timestamp() >= began.timestamp(),
            _ => false,
        }
    }
}

/// What an action's recorded output says about its resource, for the undo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// It existed before the run: the undo leaves it.
    pub adopted: bool,
    /// What [`ProviderResource::delete`] takes.
    pub id: String,
}

/// One kind of resource of a client's stack, as its provider offers it.
#[async_trait]
pub trait ProviderResource: std::fmt::Debug + Send + Sync + 'static {
    /// A resource as the provider's lookup returns it.
    type Found: Send + Sync;
    /// What the provision step records.
    type Output: Serialize + DeserializeOwned + Send + Sync;

    /// The provision step's name.
    const STEP: &'static str;
    /// The deprovision step's name.
    const TEARDOWN: &'static str;

    fn policy(&self, _stack: &Stack) -> StepPolicy {
        StepPolicy::default()
    }

    fn teardown_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// Every resource of this kind carrying the client's deterministic name.
    async fn find(&self, stack: &Stack, slug: &ClientSlug) -> Result<Vec<Self::Found>, StepError>;

    /// Creates the resource, marked with `ctx.run_id()` where the provider has a place for
    /// it. An answer saying it exists already is retryable: the next attempt's lookup finds
    /// it and judges it by its marker.
    async fn create(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
    ) -> Result<Self::Found, StepError>;

    /// Whether `found` was made by the run `mark` describes (ours to delete).
    async fn made_by(
        &self,
        stack: &Stack,
        found: &Self::Found,
        mark: &RunMark,
    ) -> Result<bool, StepError>;

    /// Refuses to adopt a resource that has the name but is not the client's (say, a
    /// repository generated from another template).
    fn check_adoptable(
        &self,
        _stack: &Stack,
        _ctx: &StepContext<'_, Client>,
        _found: &Self::Found,
    ) -> Result<(), StepError> {
        Ok(())
    }

    /// The provider's work after the resource exists (waits, configuration, checks), and the
    /// step's output.
    async fn complete(
        &self,
        stack: &Stack,
        ctx: &StepContext<'_, Client>,
        found: Self::Found,
        adopted: bool,
    ) -> Result<Self::Output, StepError>;

    fn id(&self, found: &Self::Found) -> String;

    fn created_at(&self, found: &Self::Found) -> Option<DateTime<Utc>>;

    /// The resource in words, for records and messages (`GitHub repository org/name`).
    fn describe(&self, found: &Self::Found) -> String;

    fn recorded(&self, output: &Self::Output) -> Recorded;

    /// Deletes by id; already gone counts as deleted.
    async fn delete(&self, stack: &Stack, id: &str) -> Result<(), StepError>;
}

/// The provision step over one [`ProviderResource`]: adopt or create, then complete; its
/// undo removes only what this run made.
#[derive(Debug, Clone)]
pub struct ResourceStep<R> {
    pub stack: Arc<Stack>,
    pub resource: R,
}

impl<R> ResourceStep<R> {
    pub fn new(stack: &Arc<Stack>, resource: R) -> Self {
        Self {
            stack: Arc::clone(stack),
            resource,
        }
    }
}

impl<R: ProviderResource> ResourceStep<R> {
    /// Several resources carry the name. If every one is this run's (an earlier attempt's
    /// create went on at the provider after its caller gave up), keep the oldest and remove
    /// the rest; otherwise someone else's is among them and a person must choose.
    async fn one_of(&self, many: Vec<R::Found>, mark: &RunMark) -> Result<R::Found, StepError> {
        let mut ours = 0;
        for found in &many {
            if self.resource.made_by(&self.stack, found, mark).await? {
                ours += 1;
            }
        }
        if ours < many.len() {
            return Err(StepError::permanent(format!(
                "{} resources carry this client's name: {}; delete the extra ones, then retry the run",
                many.len(),
                many.iter()
                    .map(|f| self.resource.describe(f))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let mut many = many;
        many.sort_by_key(|f| (self.resource.created_at(f), self.resource.id(f)));
        let mut rest = many.into_iter();
        let Some(keep) = rest.next() else {
            return Err(StepError::retryable("the resources found are gone again"));
        };
        for extra in rest {
            self.resource
                .delete(&self.stack, &self.resource.id(&extra))
                .await?;
        }
        Ok(keep)
    }
}

#[async_trait]
impl<R: ProviderResource> Step for ResourceStep<R> {
    type Input = Client;
    type Output = R::Output;

    fn name(&self) -> &'static str {
        R::STEP
    }

    fn policy(&self) -> StepPolicy {
        self.resource.policy(&self.stack)
    }

    async fn action(&self, ctx: &StepContext<'_, Client>) -> Result<R::Output, StepError> {
        super::budget_waits_untimed(async {
            let found = self
                .resource
                .find(&self.stack, &ctx.input().client_id)
                .await?;
            // Boxed: a future is as large as its largest state, and the lookup is where
            // many runs wait (their listing's turn in the budget); inline, every one of them
            // carried the space of what follows it.
            Box::pin(self.action_with(ctx, found)).await
        })
        .await
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<R::Output>,
    ) -> Result<(), StepError> {
        super::budget_waits_untimed(async {
            let found = match output {
                Some(_) => Vec::new(),
                None => {
                    self.resource
                        .find(&self.stack, &ctx.input().client_id)
                        .await?
                }
            };
            self.undo_with(ctx, output, found).await
        })
        .await
    }
}

impl<R: ProviderResource> ResourceStep<R> {
    /// The action, with `found` the lookup's answer: what [`ProviderResource::find`] returns,
    /// from a lookup made after this attempt began (a step that looks several resources up
    /// in one listing hands each its share).
    pub async fn action_with(
        &self,
        ctx: &StepContext<'_, Client>,
        mut found: Vec<R::Found>,
    ) -> Result<R::Output, StepError> {
        let stack = &self.stack;
        let mark = RunMark::of(ctx);
        let (resource, adopted) = match found.len() {
            0 => (self.resource.create(stack, ctx).await?, false),
            1 => {
                let one = found.remove(0);
                if self.resource.made_by(stack, &one, &mark).await? {
                    (one, false)
                } else {
                    self.resource.check_adoptable(stack, ctx, &one)?;
                    (one, true)
                }
            }
            // Boxed, as rare: inline, its found resources sized the state of every create.
            _ => (Box::pin(self.one_of(found, &mark)).await?, false),
        };
        self.resource.complete(stack, ctx, resource, adopted).await
    }

    /// The undo, with `found` the lookup's answer (used only when `output` is `None`).
    pub async fn undo_with(
        &self,
        ctx: &StepContext<'_, Client>,
        output: Option<R::Output>,
        found: Vec<R::Found>,
    ) -> Result<(), StepError> {
        let stack = &self.stack;
        if let Some(output) = output {
            let recorded = self.resource.recorded(&output);
            if recorded.adopted {
                return Ok(());
            }
            return self.resource.delete(stack, &recorded.id).await;
        }
        // The action started but recorded nothing: remove what carries this run's mark.
        let mark = RunMark::of(ctx);
        for found in found {
            if self.resource.made_by(stack, &found, &mark).await? {
                self.resource
                    .delete(stack, &self.resource.id(&found))
                    .await?;
            }
        }
        Ok(())
    }
}

/// The deprovision step over one [`ProviderResource`]: deletes every resource of the kind
/// the client has, found by its deterministic name. Forward-only: a deletion has nothing to
/// undo, and one that cannot finish parks the run naming this step.
#[derive(Debug, Clone)]
pub struct TeardownStep<R> {
    pub stack: Arc<Stack>,
    pub resource: R,
}

impl<R> TeardownStep<R> {
    pub fn new(stack: &Arc<Stack>, resource: R) -> Self {
        Self {
            stack: Arc::clone(stack),
            resource,
        }
    }
}

impl<R: ProviderResource> TeardownStep<R> {
    async fn remove_all(&self, slug: &ClientSlug) -> Result<Removed, StepError> {
        let found = self.resource.find(&self.stack, slug).await?;
        self.remove_found(found).await
    }

    /// Deletes every resource in `found` (the lookup's answer), naming what is left when a
    /// delete fails.
    pub async fn remove_found(&self, found: Vec<R::Found>) -> Result<Removed, StepError> {
        let stack = &self.stack;
        let mut removed = Vec::new();
        for (i, resource) in found.iter().enumerate() {
            if let Err(e) = self
                .resource
                .delete(stack, &self.resource.id(resource))
                .await
            {
                let left: Vec<String> = found[i..]
                    .iter()
                    .map(|f| self.resource.describe(f))
                    .collect();
                let message = format!("{e}; still there: {}", left.join(", "));
                let error = match e {
                    StepError::Retryable { after, .. } => StepError::Retryable {
                        after,
                        message,
                        detail: None,
                    },
                    StepError::Permanent { .. } => StepError::permanent(message),
                };
                return Err(error.with_detail(serde_json::json!({ "left": left })));
            }
            removed.push(self.resource.describe(resource));
        }
        Ok(Removed { resources: removed })
    }
}

#[async_trait]
impl<R: ProviderResource> ForwardStep for TeardownStep<R> {
    type Input = Teardown;
    type Output = Removed;

    fn name(&self) -> &'static str {
        R::TEARDOWN
    }

    fn policy(&self) -> RetryPolicy {
        self.resource.teardown_policy()
    }

    async fn action(&self, ctx: &StepContext<'_, Teardown>) -> Result<Removed, StepError> {
        super::budget_waits_untimed(self.remove_all(&ctx.input().client_id)).await
    }
}

/// Version 1 of the deprovision saga, kept so that runs started under it can finish: its
/// teardown steps had an undo that tried the delete once more.
#[derive(Debug, Clone)]
pub struct TeardownV1<R>(pub TeardownStep<R>);

#[async_trait]
impl<R: ProviderResource> Step for TeardownV1<R> {
    type Input = Teardown;
    type Output = Removed;

    fn name(&self) -> &'static str {
        R::TEARDOWN
    }

    fn policy(&self) -> StepPolicy {
        StepPolicy::uniform(self.0.resource.teardown_policy())
    }

    async fn action(&self, ctx: &StepContext<'_, Teardown>) -> Result<Removed, StepError> {
        self.0.remove_all(&ctx.input().client_id).await
    }

    async fn undo(
        &self,
        ctx: &StepContext<'_, Teardown>,
        _: Option<Removed>,
    ) -> Result<(), StepError> {
        self.0.remove_all(&ctx.input().client_id).await.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_test_is_bounded_to_the_steps_own_attempts() {
        let began = Utc::now();
        let mark = RunMark {
            run_id: Uuid::now_v7(),
            attempts_began: Some(began),
        };
        assert!(mark.made_during_attempts(Some(began + chrono::Duration::seconds(3))));
        // A provider reporting whole seconds: the same second as the first attempt is ours.
        let same_second = DateTime::from_timestamp(began.timestamp(), 0);
        assert!(mark.made_during_attempts(same_second));
        assert!(!mark.made_during_attempts(Some(began - chrono::Duration::seconds(2))));
        assert!(!mark.made_during_attempts(None));
        let unknown_start = RunMark {
            attempts_began: None,
            ..mark
        };
        assert!(!unknown_start.made_during_attempts(Some(began)));
    }
}
