//! Saga definitions (a DAG of named steps under a name and a version) and the registry that
//! holds every version a binary can still finish.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::step::{ErasedStep, ForwardStep, Step, erase, erase_forward};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DefinitionError {
    #[error("saga `{saga}` has two steps named `{step}`")]
    DuplicateStep { saga: String, step: String },
    #[error(
        "saga `{saga}`: step `{step}` depends on `{dependency}`, which is not a step of this saga"
    )]
    UnknownDependency {
        saga: String,
        step: String,
        dependency: String,
    },
    #[error("saga `{saga}` has a dependency cycle through: {}", steps.join(", "))]
    Cycle { saga: String, steps: Vec<String> },
    #[error("saga `{saga}` has no steps")]
    Empty { saga: String },
    #[error("saga `{saga}` version {version} is registered twice")]
    DuplicateVersion { saga: String, version: u32 },
}

/// One step of a definition with its declared dependencies.
#[derive(Clone)]
pub struct StepNode {
    pub step: Arc<dyn ErasedStep>,
    pub dependencies: Arc<[String]>,
}

impl fmt::Debug for StepNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepNode")
            .field("step", &self.step.name())
            .field("dependencies", &self.dependencies)
            .finish()
    }
}

type InputCheck = fn(&Value) -> Result<(), serde_json::Error>;

/// A validated saga: its steps form a DAG over known names.
#[derive(Clone)]
pub struct SagaDefinition {
    name: Arc<str>,
    version: u32,
    /// In declaration order.
    nodes: Vec<StepNode>,
    index: HashMap<String, usize>,
    dependents: HashMap<String, Vec<String>>,
    check_input: InputCheck,
}

impl fmt::Debug for SagaDefinition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaDefinition")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("nodes", &self.nodes)
            .finish()
    }
}

impl SagaDefinition {
    pub fn builder<I>(name: impl Into<String>, version: u32) -> SagaBuilder<I>
    where
        I: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        SagaBuilder {
            name: name.into(),
            version,
            nodes: Vec::new(),
            _input: PhantomData,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn version(&self) -> u32 {
        self.version
    }
    pub fn steps(&self) -> &[StepNode] {
        &self.nodes
    }
    pub fn step(&self, name: &str) -> Option<&StepNode> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }
    /// Steps that declare `name` as a dependency.
    pub fn dependents(&self, name: &str) -> &[String] {
        self.dependents.get(name).map_or(&[], Vec::as_slice)
    }

    /// Every step is forward-only: the saga cannot be compensated (see [`ForwardStep`]).
    pub fn forward_only(&self) -> bool {
        self.nodes.iter().all(|n| !n.step.reversible())
    }

    /// Whether compensation undoes step `name` (unknown names count as reversible, so
    /// nothing is skipped by mistake).
    pub fn reversible(&self, name: &str) -> bool {
        self.step(name).is_none_or(|n| n.step.reversible())
    }

    /// Checks that `input` deserialises into the saga's input type.
    pub fn check_input(&self, input: &Value) -> Result<(), serde_json::Error> {
        (self.check_input)(input)
    }

    /// The same DAG with every step passed through `wrap` (used to inject faults generically).
    pub fn map_steps(
        &self,
        mut wrap: impl FnMut(Arc<dyn ErasedStep>) -> Arc<dyn ErasedStep>,
    ) -> Self {
        let mut copy = self.clone();
        for node in &mut copy.nodes {
            node.step = wrap(node.step.clone());
        }
        copy
    }
}

impl SagaDefinition {
    /// The same DAG plus `step` after `dependencies`; the caller keeps names unique.
    pub(crate) fn with_extra_step(
        &self,
        step: Arc<dyn ErasedStep>,
        dependencies: Vec<String>,
    ) -> Self {
        let mut copy = self.clone();
        let name = step.name().to_owned();
        for dep in &dependencies {
            copy.dependents
                .entry(dep.clone())
                .or_default()
                .push(name.clone());
        }
        copy.index.insert(name, copy.nodes.len());
        copy.nodes.push(StepNode {
            step,
            dependencies: dependencies.into(),
        });
        copy
    }
}

/// Builds a [`SagaDefinition`] whose steps share the input type `I`.
pub struct SagaBuilder<I> {
    name: String,
    version: u32,
    nodes: Vec<StepNode>,
    _input: PhantomData<fn() -> I>,
}

impl<I> fmt::Debug for SagaBuilder<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SagaBuilder")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish()
    }
}

impl<I> SagaBuilder<I>
where
    I: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// Adds a step that runs after every step named in `dependencies`.
    #[must_use]
    pub fn step<S: Step<Input = I>>(mut self, step: S, dependencies: &[&str]) -> Self {
        self.nodes.push(StepNode {
            step: erase(step),
            dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        });
        self
    }

    /// Adds a forward-only step (no undo; compensation skips it) after `dependencies`.
    #[must_use]
    pub fn forward_step<S: ForwardStep<Input = I>>(
        mut self,
        step: S,
        dependencies: &[&str],
    ) -> Self {
        self.nodes.push(StepNode {
            step: erase_forward(step),
            dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        });
        self
    }

    pub fn build(self) -> Result<SagaDefinition, DefinitionError> {
        let saga = self.name;
        if self.nodes.is_empty() {
            return Err(DefinitionError::Empty { saga });
        }
        let mut index = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let name = node.step.name().to_owned();
            if index.insert(name.clone(), i).is_some() {
                return Err(DefinitionError::DuplicateStep { saga, step: name });
            }
        }
        let mut dependents: HashMap<String, Vec<String>> = HashMap::new();
        for node in &self.nodes {
            for dep in node.dependencies.iter() {
                if !index.contains_key(dep) || dep == node.step.name() {
                    return Err(DefinitionError::UnknownDependency {
                        saga,
                        step: node.step.name().to_owned(),
                        dependency: dep.clone(),
                    });
                }
                dependents
                    .entry(dep.clone())
                    .or_default()
                    .push(node.step.name().to_owned());
            }
        }
        // Kahn's algorithm: whatever cannot be ordered sits on a cycle (or behind one).
        let mut remaining: BTreeMap<&str, usize> = self
            .nodes
            .iter()
            .map(|n| (n.step.name(), n.dependencies.len()))
            .collect();
        let mut ready: Vec<&str> = remaining
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| *n)
            .collect();
        let mut ordered = HashSet::new();
        while let Some(name) = ready.pop() {
            ordered.insert(name);
            for dependent in dependents.get(name).map_or(&[][..], Vec::as_slice) {
                if let Some(count) = remaining.get_mut(dependent.as_str()) {
                    *count -= 1;
                    if *count == 0 {
                        ready.push(dependent.as_str());
                    }
                }
            }
        }
        if ordered.len() != self.nodes.len() {
            let steps = remaining
                .keys()
                .filter(|n| !ordered.contains(*n))
                .map(|n| (*n).to_owned())
                .collect();
            return Err(DefinitionError::Cycle { saga, steps });
        }
        Ok(SagaDefinition {
            name: saga.into(),
            version: self.version,
            nodes: self.nodes,
            index,
            dependents,
            check_input: |v| I::deserialize(v).map(drop),
        })
    }
}

/// Every saga definition (name, version) this process can run.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    sagas: BTreeMap<(String, u32), Arc<SagaDefinition>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, definition: SagaDefinition) -> Result<(), DefinitionError> {
        let key = (definition.name().to_owned(), definition.version());
        if self.sagas.contains_key(&key) {
            return Err(DefinitionError::DuplicateVersion {
                saga: key.0,
                version: key.1,
            });
        }
        self.sagas.insert(key, Arc::new(definition));
        Ok(())
    }

    /// Builder-style [`Registry::register`].
    pub fn with(mut self, definition: SagaDefinition) -> Result<Self, DefinitionError> {
        self.register(definition)?;
        Ok(self)
    }

    pub fn get(&self, name: &str, version: u32) -> Option<&Arc<SagaDefinition>> {
        self.sagas.get(&(name.to_owned(), version))
    }

    /// The highest registered version of `name`: what new runs start with.
    pub fn latest(&self, name: &str) -> Option<&Arc<SagaDefinition>> {
        self.sagas
            .range((name.to_owned(), 0)..=(name.to_owned(), u32::MAX))
            .next_back()
            .map(|(_, d)| d)
    }

    pub fn definitions(&self) -> impl Iterator<Item = &Arc<SagaDefinition>> {
        self.sagas.values()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::step::{StepContext, StepError};
    use async_trait::async_trait;

    struct Noop(&'static str);

    #[async_trait]
    impl Step for Noop {
        type Input = ();
        type Output = ();
        fn name(&self) -> &'static str {
            self.0
        }
        async fn action(&self, _: &StepContext<'_, ()>) -> Result<(), StepError> {
            Ok(())
        }
        async fn undo(&self, _: &StepContext<'_, ()>, _: Option<()>) -> Result<(), StepError> {
            Ok(())
        }
    }

    #[test]
    fn bad_graphs_are_refused_with_a_clear_error() {
        let dup = SagaDefinition::builder::<()>("s", 1)
            .step(Noop("a"), &[])
            .step(Noop("a"), &[])
            .build();
        assert_eq!(
            dup.unwrap_err().to_string(),
            "saga `s` has two steps named `a`"
        );
        let unknown = SagaDefinition::builder::<()>("s", 1)
            .step(Noop("a"), &["zz"])
            .build();
        assert!(
            matches!(unknown, Err(DefinitionError::UnknownDependency { ref dependency, .. }) if dependency == "zz")
        );
        let cycle = SagaDefinition::builder::<()>("s", 1)
            .step(Noop("a"), &["c"])
            .step(Noop("b"), &["a"])
            .step(Noop("c"), &["b"])
            .step(Noop("d"), &[])
            .build();
        match cycle {
            Err(DefinitionError::Cycle { steps, .. }) => assert_eq!(steps, ["a", "b", "c"]),
            other => panic!("expected a cycle, got {other:?}"),
        }
        let self_loop = SagaDefinition::builder::<()>("s", 1)
            .step(Noop("a"), &["a"])
            .build();
        assert!(matches!(
            self_loop,
            Err(DefinitionError::UnknownDependency { .. })
        ));
    }

    #[test]
    fn registry_keeps_versions_apart_and_knows_the_latest() {
        let v = |n| {
            SagaDefinition::builder::<()>("s", n)
                .step(Noop("a"), &[])
                .build()
                .unwrap()
        };
        let mut r = Registry::new();
        r.register(v(1)).unwrap();
        r.register(v(3)).unwrap();
        assert!(matches!(
            r.register(v(3)),
            Err(DefinitionError::DuplicateVersion { version: 3, .. })
        ));
        assert_eq!(r.latest("s").unwrap().version(), 3);
        assert_eq!(r.get("s", 1).unwrap().version(), 1);
        assert!(r.latest("other").is_none());
        let d = v(2);
        assert_eq!(d.dependents("a"), &[] as &[String]);
    }
}
