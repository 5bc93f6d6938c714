//! Validation of HTTP exchanges against the providers' official OpenAPI documents in
//! `specs/`: request bodies our clients send, response bodies our simulators return.
//!
//! The specs are OpenAPI 3.0 documents; their schemas are rewritten into JSON Schema 2020-12
//! (`nullable`, boolean `exclusiveMinimum`, `readOnly`/`writeOnly`, OpenAPI-only keywords) and
//! compiled per operation on first use, then cached, so loading stays cheap although the
//! Vercel document alone is 1.5 MB.
//!
//! Two places deliberately differ from the documents, each with the evidence in a comment:
//! statuses the real services are known to answer that their specs omit
//! ([`UNDOCUMENTED_STATUSES`]), and the extra keys the real n8n puts on workflow responses
//! ([`N8N_EXTRA_WORKFLOW_KEYS`]). A generated `oneOf` whose alternatives nest (one implies
//! another) is read as the `anyOf` its generator meant, since "exactly one" could never hold
//! for a value of the stronger alternative.

use std::sync::OnceLock;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::{Map, Value, json};

use crate::Provider;

/// One request/response pair as it crossed the wire.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Exchange {
    pub provider: Provider,
    /// Upper-case HTTP method.
    pub method: String,
    /// The concrete path without the query string, e.g. `/v1/projects/abcdefghijklmnopqrst`.
    /// For n8n the `/api/v1` prefix may be present or not.
    pub path: String,
    pub status: u16,
    /// `None` when there was no body or it was not JSON.
    pub request_body: Option<serde_json::Value>,
    pub response_body: Option<serde_json::Value>,
}

/// Which side of an exchange broke the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Direction {
    Request,
    Response,
}

/// One way in which an exchange does not match its provider's spec.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    pub provider: Provider,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub direction: Direction,
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?} {} {} -> {} ({:?}): {}",
            self.provider, self.method, self.path, self.status, self.direction, self.message
        )
    }
}

/// Why the specs could not be loaded or one of their schemas compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("the {provider:?} spec is not valid JSON: {reason}")]
    Parse { provider: Provider, reason: String },
    #[error("the {provider:?} spec is malformed at {pointer}: {reason}")]
    Malformed {
        provider: Provider,
        pointer: String,
        reason: String,
    },
    #[error("{provider:?} {method} {template}: the {slot} schema does not compile: {reason}")]
    Compile {
        provider: Provider,
        method: String,
        template: String,
        slot: String,
        reason: String,
    },
}

/// The four providers' compiled contracts, and the previous n8n line's.
#[derive(Debug)]
pub struct Contracts {
    supabase: Spec,
    github: Spec,
    vercel: Spec,
    n8n: Spec,
    /// n8n 1.x (1.123.81, the line's last spec): what a 1.x server's exchanges are held to.
    n8n_1x: Spec,
}

/// A status a real service is known to answer for an operation although its spec does not
/// document it, with the body shape it was seen with.
#[derive(Debug, Clone, Copy)]
pub struct UndocumentedStatus {
    pub provider: Provider,
    pub method: &'static str,
    pub template: &'static str,
    pub status: u16,
    /// A plain JSON Schema (not OpenAPI) for the body.
    pub body_schema: &'static str,
    /// Where the evidence comes from.
    pub source: &'static str,
}

/// Statuses the real services answer that their specs omit. The simulators must reproduce
/// them (the provisioner's retry and conflict handling depend on them), so the contract
/// accepts them, with the error envelope the service uses, and nothing more.
pub const UNDOCUMENTED_STATUSES: &[UndocumentedStatus] = &[
    UndocumentedStatus {
        provider: Provider::Supabase,
        method: "DELETE",
        template: "/v1/projects/{ref}",
        status: 400,
        body_schema: r#"{"type":"object","required":["message"],"properties":{"message":{"type":"string"}}}"#,
        source: "supabase/cli apps/cli-e2e/fixtures/recorded, DELETE_v1_projects___PROJECT_REF__/2: \
                 400 {\"message\":\"Project not ready for deletion.\"}",
    },
    UndocumentedStatus {
        provider: Provider::Supabase,
        method: "POST",
        template: "/v1/projects/{ref}/database/query",
        status: 400,
        body_schema: r#"{"type":"object","required":["message"],"properties":{"message":{"type":"string"}}}"#,
        source: "unverified: the spec documents 201 and 500 \"Failed to run sql query\" only; a \
                 statement the database rejects is answered 400 in the usual {message} envelope \
                 (a 500 would read as a server fault worth retrying), message \
                 \"Failed to run sql query: ERROR:  <SQLSTATE>: <message>\"",
    },
    UndocumentedStatus {
        provider: Provider::Github,
        method: "POST",
        template: "/repos/{template_owner}/{template_repo}/generate",
        status: 422,
        body_schema: r#"{"type":"object","required":["message"],"properties":{"message":{"type":"string"},"documentation_url":{"type":"string"},"status":{"type":"string"},"errors":{"type":"array"}}}"#,
        source: "production error reports (osunyorg/admin#1293 and others): 422 \
                 \"Could not clone: Name already exists on this account\"",
    },
    UndocumentedStatus {
        provider: Provider::Vercel,
        method: "GET",
        template: "/v9/projects/{idOrName}",
        status: 404,
        body_schema: r#"{"type":"object","required":["error"],"properties":{"error":{"type":"object","required":["code","message"],"properties":{"code":{"type":"string"},"message":{"type":"string"}}}}}"#,
        source: "vercel/vercel#6840: 404 {\"error\":{\"code\":\"not_found\",\"message\":\"Project not found\"}}",
    },
    UndocumentedStatus {
        provider: Provider::Vercel,
        method: "GET",
        template: "/v9/projects/{idOrName}/domains/{domain}",
        status: 404,
        body_schema: r#"{"type":"object","required":["error"],"properties":{"error":{"type":"object","required":["code","message"],"properties":{"code":{"type":"string"},"message":{"type":"string"}}}}}"#,
        source: "Vercel API clients in public repositories read a 404 in Vercel's error envelope \
                 as \"the domain is not on this project\" (the DELETE of the same path documents \
                 404); not checked against the live service",
    },
];

/// Keys a real n8n (1.123.50, observed) puts on workflow responses although its 1.x spec
/// closes the `workflow` object. n8n workflow responses are checked closed: the keys the spec
/// declares, plus these, and nothing else.
pub const N8N_EXTRA_WORKFLOW_KEYS: &[&str] = &[
    "description",
    "isArchived",
    "meta",
    "pinData",
    "versionId",
    "activeVersionId",
    "versionCounter",
    "triggerCount",
];

/// The same for the `activeVersion` object inside a workflow response.
pub const N8N_EXTRA_ACTIVE_VERSION_KEYS: &[&str] = &["name", "description"];

const SUPABASE_SPEC: &str = include_str!("../specs/supabase-management-subset.json");
const GITHUB_SPEC: &str = include_str!("../specs/github-rest-subset.json");
const VERCEL_SPEC: &str = include_str!("../specs/vercel-rest-subset.json");
const N8N_SPEC: &str = include_str!("../specs/n8n-public-api-v1-subset.n8n-2.41.3.json");
const N8N_1X_SPEC: &str = include_str!("../specs/n8n-public-api-v1-subset.n8n-1.123.81.json");

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

impl Contracts {
    /// Loads the four specs (embedded at build time) and indexes their operations. Schemas
    /// are compiled on first use.
    pub fn load() -> Result<Contracts, ContractError> {
        Ok(Contracts {
            supabase: Spec::parse(Provider::Supabase, SUPABASE_SPEC)?,
            github: Spec::parse(Provider::Github, GITHUB_SPEC)?,
            vercel: Spec::parse(Provider::Vercel, VERCEL_SPEC)?,
            n8n: Spec::parse(Provider::N8n, N8N_SPEC)?,
            n8n_1x: Spec::parse(Provider::N8n, N8N_1X_SPEC)?,
        })
    }

    /// One process-wide instance, so that every test and simulator shares the compiled
    /// schemas.
    pub fn shared() -> Result<&'static Contracts, ContractError> {
        static SHARED: OnceLock<Result<Contracts, ContractError>> = OnceLock::new();
        SHARED
            .get_or_init(Contracts::load)
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Every way the exchange breaks its provider's contract; empty when it keeps it. An
    /// unknown operation and a bad request body are [`Direction::Request`] violations (the
    /// client is at fault); an undocumented status and a bad response body are
    /// [`Direction::Response`] ones. A schema that cannot be compiled is reported as a
    /// violation ("cannot check: …"), never as a pass.
    pub fn check(&self, exchange: &Exchange) -> Vec<Violation> {
        check_against(self.spec(exchange.provider), exchange)
    }

    /// As [`check`](Self::check), holding an n8n exchange to the 1.x spec (a simulator in
    /// 1.x mode, a real 1.x server). Exchanges of other providers are checked as usual.
    pub fn check_n8n_1x(&self, exchange: &Exchange) -> Vec<Violation> {
        match exchange.provider {
            Provider::N8n => check_against(&self.n8n_1x, exchange),
            _ => self.check(exchange),
        }
    }

    /// As [`template`](Self::template), in the n8n 1.x spec (its templates say `{id}`).
    pub fn template_n8n_1x(&self, method: &str, path: &str) -> Option<&str> {
        let path = path.split('?').next().unwrap_or_default();
        self.n8n_1x
            .find(&method.to_ascii_lowercase(), path)
            .ok()
            .map(|operation| operation.template.as_str())
    }

    /// The spec's path template an exchange is routed to, e.g. `/v1/projects/{ref}` for
    /// `GET /v1/projects/abcdefghijklmnopqrst`; `None` when the spec has no such operation.
    pub fn template(&self, provider: Provider, method: &str, path: &str) -> Option<&str> {
        let spec = self.spec(provider);
        let path = path.split('?').next().unwrap_or_default();
        spec.find(&method.to_ascii_lowercase(), path)
            .ok()
            .map(|operation| operation.template.as_str())
    }

    /// Compiles every request and response schema of every operation (normally done lazily)
    /// and returns how many were compiled; the first schema that does not compile is an error.
    pub fn compile_all(&self) -> Result<usize, ContractError> {
        let mut compiled = 0;
        for spec in [&self.supabase, &self.github, &self.vercel, &self.n8n] {
            for operation in &spec.operations {
                if let Some(body) = &operation.request
                    && body.schema.is_some()
                {
                    spec.request_validator(operation, body)?;
                    compiled += 1;
                }
                for response in &operation.responses {
                    if response.schema.is_some() {
                        spec.response_validator(operation, response)?;
                        compiled += 1;
                    }
                }
            }
        }
        Ok(compiled)
    }

    fn spec(&self, provider: Provider) -> &Spec {
        match provider {
            Provider::Supabase => &self.supabase,
            Provider::Github => &self.github,
            Provider::Vercel => &self.vercel,
            Provider::N8n => &self.n8n,
        }
    }
}

struct Spec {
    provider: Provider,
    document: Value,
    /// The path part of the spec's first server URL (`/api/v1` for n8n), which concrete
    /// paths may carry in front of the spec's templates.
    base_path: Option<String>,
    operations: Vec<Operation>,
    request_components: OnceLock<Value>,
    response_components: OnceLock<Value>,
}

/// The document is 1.5 MB for Vercel: `Debug` names the spec instead of dumping it.
impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spec")
            .field("provider", &self.provider)
            .field("base_path", &self.base_path)
            .field("operations", &self.operations.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Operation {
    method: String,
    template: String,
    segments: Vec<Segment>,
    request: Option<RequestBody>,
    responses: Vec<Response>,
}

#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Parameter,
}

#[derive(Debug)]
struct RequestBody {
    required: bool,
    /// JSON pointer into the document; `None` when the body is not JSON or has no schema.
    schema: Option<String>,
    validator: OnceLock<Result<Validator, ContractError>>,
}

#[derive(Debug)]
struct Response {
    /// `200`, `2XX` or `default`.
    key: String,
    schema: Option<String>,
    validator: OnceLock<Result<Validator, ContractError>>,
}

/// How a schema is rewritten for one side of the exchange.
#[derive(Debug, Clone, Copy)]
struct Rewrite<'a> {
    direction: Direction,
    /// The provider rejects read-only properties in requests (n8n does, with 400
    /// "request/body/active is read-only").
    forbid_read_only: bool,
    document: &'a Value,
}

impl Spec {
    fn parse(provider: Provider, text: &str) -> Result<Spec, ContractError> {
        let document: Value = serde_json::from_str(text).map_err(|err| ContractError::Parse {
            provider,
            reason: err.to_string(),
        })?;
        let malformed = |pointer: &str, reason: &str| ContractError::Malformed {
            provider,
            pointer: pointer.to_owned(),
            reason: reason.to_owned(),
        };
        let base_path = document
            .pointer("/servers/0/url")
            .and_then(Value::as_str)
            .and_then(server_path);
        let paths = document
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| malformed("/paths", "missing"))?;
        let mut operations = Vec::new();
        for (template, item) in paths {
            let item_pointer = format!("/paths/{}", escape_pointer(template));
            let Some(item) = item.as_object() else {
                return Err(malformed(&item_pointer, "not an object"));
            };
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let op_pointer = format!("{item_pointer}/{method}");
                let request = match op.get("requestBody") {
                    None => None,
                    Some(body) => {
                        let (body, body_pointer) = follow_ref(&document, body, &op_pointer)
                            .map_err(|reason| {
                                malformed(&format!("{op_pointer}/requestBody"), &reason)
                            })?;
                        let body_pointer =
                            body_pointer.unwrap_or(format!("{op_pointer}/requestBody"));
                        Some(RequestBody {
                            required: body
                                .get("required")
                                .and_then(Value::as_bool)
                                .unwrap_or(false),
                            schema: json_schema_pointer(body, &body_pointer),
                            validator: OnceLock::new(),
                        })
                    }
                };
                let mut responses = Vec::new();
                if let Some(map) = op.get("responses").and_then(Value::as_object) {
                    for (key, response) in map {
                        let pointer = format!("{op_pointer}/responses/{}", escape_pointer(key));
                        let (response, target) = follow_ref(&document, response, &pointer)
                            .map_err(|reason| malformed(&pointer, &reason))?;
                        let pointer = target.unwrap_or(pointer);
                        responses.push(Response {
                            key: key.clone(),
                            schema: json_schema_pointer(response, &pointer),
                            validator: OnceLock::new(),
                        });
                    }
                }
                operations.push(Operation {
                    method: method.to_owned(),
                    template: template.clone(),
                    segments: template_segments(template),
                    request,
                    responses,
                });
            }
        }
        Ok(Spec {
            provider,
            document,
            base_path,
            operations,
            request_components: OnceLock::new(),
            response_components: OnceLock::new(),
        })
    }

    /// The operation for a method and concrete path. Literal segments beat templated ones,
    /// as OpenAPI requires (`/v1/projects/available-regions` is not `/v1/projects/{ref}`).
    fn find(&self, method: &str, path: &str) -> Result<&Operation, String> {
        let mut candidates = vec![path];
        if let Some(base) = &self.base_path
            && let Some(rest) = path.strip_prefix(base.as_str())
            && rest.starts_with('/')
        {
            candidates.push(rest);
        }
        for candidate in candidates {
            if !candidate.starts_with('/') {
                continue;
            }
            let segments: Vec<&str> = candidate.split('/').skip(1).collect();
            let mut best: Option<(Vec<bool>, &str)> = None;
            for operation in &self.operations {
                let Some(score) = match_segments(&operation.segments, &segments) else {
                    continue;
                };
                if best.as_ref().is_none_or(|(top, _)| score > *top) {
                    best = Some((score, operation.template.as_str()));
                }
            }
            if let Some((_, template)) = best {
                let on_template: Vec<&Operation> = self
                    .operations
                    .iter()
                    .filter(|operation| operation.template == template)
                    .collect();
                if let Some(operation) = on_template
                    .iter()
                    .find(|operation| operation.method == method)
                {
                    return Ok(operation);
                }
                let documented: Vec<String> = on_template
                    .iter()
                    .map(|operation| operation.method.to_ascii_uppercase())
                    .collect();
                return Err(format!(
                    "unknown operation: {} is not documented for path {template} (documented: {})",
                    method.to_ascii_uppercase(),
                    documented.join(", ")
                ));
            }
        }
        Err(format!(
            "unknown operation: no path template in the {:?} spec matches {path}",
            self.provider
        ))
    }

    fn check_request(&self, operation: &Operation, body: Option<&Value>) -> Vec<String> {
        let Some(spec_body) = &operation.request else {
            return match body {
                Some(_) => vec![format!(
                    "{} {} documents no request body, but one was sent",
                    operation.method.to_ascii_uppercase(),
                    operation.template
                )],
                None => Vec::new(),
            };
        };
        let Some(body) = body else {
            return if spec_body.required {
                vec!["the request body is required and was absent or not JSON".to_owned()]
            } else {
                Vec::new()
            };
        };
        if spec_body.schema.is_none() {
            return Vec::new();
        }
        match self.request_validator(operation, spec_body) {
            Ok(validator) => explain_all(validator, body),
            Err(err) => vec![format!("cannot check: {err}")],
        }
    }

    fn check_response(
        &self,
        operation: &Operation,
        status: u16,
        body: Option<&Value>,
    ) -> Vec<String> {
        let Some(response) = documented_response(operation, status) else {
            let known = UNDOCUMENTED_STATUSES.iter().find(|known| {
                known.provider == self.provider
                    && known.method.eq_ignore_ascii_case(&operation.method)
                    && known.template == operation.template
                    && known.status == status
            });
            if let Some(known) = known {
                return check_undocumented(known, body);
            }
            let documented: Vec<&str> =
                operation.responses.iter().map(|r| r.key.as_str()).collect();
            return vec![format!(
                "status {status} is not documented for {} {} (documented: {}; no default response)",
                operation.method.to_ascii_uppercase(),
                operation.template,
                documented.join(", ")
            )];
        };
        if response.schema.is_none() {
            // HTTP itself forbids a body on these; other statuses the spec leaves unspecified.
            return match (status, body) {
                (204 | 304, Some(_)) => vec![format!("status {status} must not carry a body")],
                _ => Vec::new(),
            };
        }
        let Some(body) = body else {
            return vec![format!(
                "the spec documents a JSON body for status {} but the response had none (or not JSON)",
                response.key
            )];
        };
        match self.response_validator(operation, response) {
            Ok(validator) => explain_all(validator, body),
            Err(err) => vec![format!("cannot check: {err}")],
        }
    }

    fn request_validator<'s>(
        &'s self,
        operation: &Operation,
        body: &'s RequestBody,
    ) -> Result<&'s Validator, ContractError> {
        body.validator
            .get_or_init(|| {
                let pointer = body.schema.as_deref().unwrap_or_default();
                self.compile(operation, Direction::Request, pointer, "request")
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn response_validator<'s>(
        &'s self,
        operation: &Operation,
        response: &'s Response,
    ) -> Result<&'s Validator, ContractError> {
        response
            .validator
            .get_or_init(|| {
                let pointer = response.schema.as_deref().unwrap_or_default();
                let slot = format!("{} response", response.key);
                self.compile(operation, Direction::Response, pointer, &slot)
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    fn compile(
        &self,
        operation: &Operation,
        direction: Direction,
        pointer: &str,
        slot: &str,
    ) -> Result<Validator, ContractError> {
        let error = |reason: String| ContractError::Compile {
            provider: self.provider,
            method: operation.method.to_ascii_uppercase(),
            template: operation.template.clone(),
            slot: slot.to_owned(),
            reason,
        };
        let mut raw = self
            .document
            .pointer(pointer)
            .cloned()
            .ok_or_else(|| error(format!("no schema at {pointer}")))?;
        if self.provider == Provider::N8n
            && direction == Direction::Response
            && operation.template.starts_with("/workflows")
        {
            close_n8n_workflows(&mut raw, &self.document);
        }
        let rewrite = self.rewrite(direction);
        let mut root = to_json_schema(&raw, rewrite, true);
        let components = match direction {
            Direction::Request => &self.request_components,
            Direction::Response => &self.response_components,
        }
        .get_or_init(|| self.rewrite_components(rewrite));
        if let Value::Object(map) = &mut root {
            map.insert("components".to_owned(), json!({ "schemas": components }));
        }
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|err| error(err.to_string()))
    }

    fn rewrite(&self, direction: Direction) -> Rewrite<'_> {
        Rewrite {
            direction,
            forbid_read_only: self.provider == Provider::N8n,
            document: &self.document,
        }
    }

    fn rewrite_components(&self, rewrite: Rewrite<'_>) -> Value {
        let Some(schemas) = self
            .document
            .pointer("/components/schemas")
            .and_then(Value::as_object)
        else {
            return Value::Object(Map::new());
        };
        Value::Object(
            schemas
                .iter()
                .map(|(name, schema)| (name.clone(), to_json_schema(schema, rewrite, true)))
                .collect(),
        )
    }
}

/// Every way `exchange` breaks `spec` (see [`Contracts::check`]).
fn check_against(spec: &Spec, exchange: &Exchange) -> Vec<Violation> {
    let violation = |direction: Direction, message: String| Violation {
        provider: exchange.provider,
        method: exchange.method.clone(),
        path: exchange.path.clone(),
        status: exchange.status,
        direction,
        message,
    };
    let method = exchange.method.to_ascii_lowercase();
    let path = exchange.path.split('?').next().unwrap_or_default();
    let operation = match spec.find(&method, path) {
        Ok(operation) => operation,
        Err(reason) => return vec![violation(Direction::Request, reason)],
    };
    let mut violations = Vec::new();
    for message in spec.check_request(operation, exchange.request_body.as_ref()) {
        violations.push(violation(Direction::Request, message));
    }
    for message in spec.check_response(operation, exchange.status, exchange.response_body.as_ref())
    {
        violations.push(violation(Direction::Response, message));
    }
    violations
}

/// The response entry for a status: exact code, then range (`4XX`), then `default`.
fn documented_response(operation: &Operation, status: u16) -> Option<&Response> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    let by_key = |key: &str| {
        operation
            .responses
            .iter()
            .find(|response| response.key.eq_ignore_ascii_case(key))
    };
    by_key(&exact)
        .or_else(|| by_key(&range))
        .or_else(|| by_key("default"))
}

fn check_undocumented(known: &UndocumentedStatus, body: Option<&Value>) -> Vec<String> {
    let Some(body) = body else {
        return vec![format!(
            "status {} (undocumented, accepted as the real service answers it) must carry a JSON error body",
            known.status
        )];
    };
    let schema: Value = match serde_json::from_str(known.body_schema) {
        Ok(schema) => schema,
        Err(err) => {
            return vec![format!(
                "cannot check: built-in error schema is not JSON: {err}"
            )];
        }
    };
    match jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
    {
        Ok(validator) => explain_all(&validator, body),
        Err(err) => vec![format!(
            "cannot check: built-in error schema does not compile: {err}"
        )],
    }
}

/// `Some(score)` when the concrete segments fit the template; the score prefers literal
/// segments from left to right.
fn match_segments(template: &[Segment], concrete: &[&str]) -> Option<Vec<bool>> {
    if template.len() != concrete.len() {
        return None;
    }
    let mut score = Vec::with_capacity(template.len());
    for (segment, value) in template.iter().zip(concrete) {
        match segment {
            Segment::Literal(literal) if literal == value => score.push(true),
            Segment::Literal(_) => return None,
            Segment::Parameter if value.is_empty() => return None,
            Segment::Parameter => score.push(false),
        }
    }
    Some(score)
}

fn template_segments(template: &str) -> Vec<Segment> {
    template
        .split('/')
        .skip(1)
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                Segment::Parameter
            } else {
                Segment::Literal(segment.to_owned())
            }
        })
        .collect()
}

/// The path of a server URL such as `{url}/api/v1` or `https://api.github.com`; `None` when
/// it has none.
fn server_path(url: &str) -> Option<String> {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.starts_with('/') {
        url
    } else {
        let host_end = after_scheme.find('/')?;
        &after_scheme[host_end..]
    };
    let path = path.trim_end_matches('/');
    (!path.is_empty()).then(|| path.to_owned())
}

/// Resolves a `$ref` to a component (requestBody or response object); returns the target
/// and its pointer, or the value itself and `None`.
fn follow_ref<'d>(
    document: &'d Value,
    value: &'d Value,
    at: &str,
) -> Result<(&'d Value, Option<String>), String> {
    match value.get("$ref").and_then(Value::as_str) {
        None => Ok((value, None)),
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("external reference {reference} at {at}"))?;
            let target = document
                .pointer(pointer)
                .ok_or_else(|| format!("dangling reference {reference} at {at}"))?;
            Ok((target, Some(pointer.to_owned())))
        }
    }
}

/// Pointer to the JSON schema of a request body or response object, if it has one.
fn json_schema_pointer(object: &Value, pointer: &str) -> Option<String> {
    let content = object.get("content")?.as_object()?;
    let (media_type, media) = content
        .iter()
        .find(|(media_type, _)| media_type.as_str() == "application/json")
        .or_else(|| {
            content
                .iter()
                .find(|(media_type, _)| media_type.contains("json"))
        })?;
    media.get("schema")?;
    Some(format!(
        "{pointer}/content/{}/schema",
        escape_pointer(media_type)
    ))
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// OpenAPI 3.0 keywords that are not JSON Schema assertions and are dropped.
const OPENAPI_ONLY: [&str; 8] = [
    "nullable",
    "discriminator",
    "xml",
    "example",
    "externalDocs",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// Whether one open object alternative is implied by another: its properties are a subset
/// with identical schemas and its required keys a subset, so no value matches only the
/// stronger one.
fn has_nested_alternatives(branches: &[Value]) -> bool {
    fn open_object(branch: &Value) -> Option<(&Map<String, Value>, Vec<&str>)> {
        let properties = branch.get("properties")?.as_object()?;
        if branch.get("additionalProperties") == Some(&Value::Bool(false)) {
            return None;
        }
        let required: Vec<&str> = branch
            .get("required")
            .and_then(Value::as_array)
            .map(|keys| keys.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        Some((properties, required))
    }
    let alternatives: Vec<_> = branches.iter().map(open_object).collect();
    alternatives.iter().enumerate().any(|(i, weaker)| {
        alternatives.iter().enumerate().any(|(j, stronger)| {
            let (Some((weak_props, weak_required)), Some((strong_props, strong_required))) =
                (weaker, stronger)
            else {
                return false;
            };
            i != j
                && weak_props
                    .iter()
                    .all(|(name, schema)| strong_props.get(name) == Some(schema))
                && weak_required
                    .iter()
                    .all(|key| strong_required.contains(key))
        })
    })
}

/// Rewrites one OpenAPI 3.0 schema into JSON Schema 2020-12. `honour_nullable` is false for
/// `oneOf` branches whose `null` has been hoisted to the parent.
fn to_json_schema(schema: &Value, rewrite: Rewrite<'_>, honour_nullable: bool) -> Value {
    let Some(object) = schema.as_object() else {
        return schema.clone();
    };
    let mut out = Map::new();
    let nullable = honour_nullable && object.get("nullable").and_then(Value::as_bool) == Some(true);
    let mut hoisted_null = false;
    for (key, value) in object {
        match key.as_str() {
            k if OPENAPI_ONLY.contains(&k) || k.starts_with("x-") => {}
            "properties" | "patternProperties" => {
                let Some(properties) = value.as_object() else {
                    out.insert(key.clone(), value.clone());
                    continue;
                };
                let mut converted = Map::new();
                for (name, property) in properties {
                    let forbidden = key == "properties"
                        && rewrite.direction == Direction::Request
                        && rewrite.forbid_read_only
                        && has_flag(property, "readOnly", rewrite.document);
                    let property = if forbidden {
                        // A `false` schema: the only source of `falseSchema` errors, which
                        // `explain` reports as a read-only violation.
                        Value::Bool(false)
                    } else {
                        to_json_schema(property, rewrite, true)
                    };
                    converted.insert(name.clone(), property);
                }
                out.insert(key.clone(), Value::Object(converted));
            }
            "items" | "not" | "additionalProperties" | "additionalItems" | "propertyNames" => {
                out.insert(key.clone(), to_json_schema(value, rewrite, true));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let Some(branches) = value.as_array() else {
                    out.insert(key.clone(), value.clone());
                    continue;
                };
                if branches.is_empty() {
                    // JSON Schema wants at least one branch. Vercel's generator emits
                    // `oneOf: []` for an empty tuple: nothing matches. An empty `allOf` is
                    // vacuously true.
                    if key != "allOf" {
                        out.insert("not".to_owned(), json!({}));
                    }
                    continue;
                }
                // Two branches that both accept null would make a `oneOf` fail on null;
                // OpenAPI authors mean "one of these, or null".
                let hoist = key == "oneOf"
                    && branches
                        .iter()
                        .filter(|branch| {
                            branch.get("nullable").and_then(Value::as_bool) == Some(true)
                        })
                        .count()
                        > 1;
                hoisted_null |= hoist;
                let converted = branches
                    .iter()
                    .map(|branch| to_json_schema(branch, rewrite, !hoist))
                    .collect();
                // Vercel's generator turns TypeScript unions (inclusive) into `oneOf`. When one
                // alternative only weakens another (`GET /v13/deployments/{idOrUrl}`: "public
                // information" is the "public and private" one minus required keys), every
                // body of the stronger one also matches the weaker, so "exactly one" rejects
                // each complete answer the real service gives its owner; read as `anyOf`.
                let key = if key == "oneOf" && has_nested_alternatives(branches) {
                    "anyOf".to_owned()
                } else {
                    key.clone()
                };
                out.insert(key, Value::Array(converted));
            }
            "format" => {
                // Only `date-time` is asserted: the simulators must emit RFC 3339 stamps, while
                // other formats (`uri` on fields the real services leave empty, `int64`) would
                // reject real data.
                if value.as_str() == Some("date-time") {
                    out.insert(key.clone(), value.clone());
                }
            }
            "required" => {
                let Some(names) = value.as_array() else {
                    continue;
                };
                // OpenAPI: a required read-only property is required in responses only, a
                // required write-only property in requests only.
                let skip_flag = match rewrite.direction {
                    Direction::Request => "readOnly",
                    Direction::Response => "writeOnly",
                };
                let kept: Vec<Value> = names
                    .iter()
                    .filter(|name| {
                        let property = name
                            .as_str()
                            .and_then(|name| object.get("properties").and_then(|p| p.get(name)));
                        !property
                            .is_some_and(|property| has_flag(property, skip_flag, rewrite.document))
                    })
                    .cloned()
                    .collect();
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Array(kept));
                }
            }
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // OpenAPI 3.0 expresses exclusive bounds as booleans beside minimum/maximum.
    for (exclusive, bound) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(flag) = out.get(exclusive).and_then(Value::as_bool) {
            out.remove(exclusive);
            if flag && let Some(limit) = out.remove(bound) {
                out.insert(exclusive.to_owned(), limit);
            }
        }
    }
    let composed = ["$ref", "allOf", "anyOf", "oneOf"]
        .iter()
        .any(|key| out.contains_key(*key));
    // Generated specs (Vercel's) often omit `type: object` beside `properties`; without it an
    // array would satisfy such a schema and make `oneOf` alternatives ambiguous.
    if !out.contains_key("type") && !composed {
        if out.contains_key("properties") {
            out.insert("type".to_owned(), json!("object"));
        } else if out.contains_key("items") {
            out.insert("type".to_owned(), json!("array"));
        }
    }
    if nullable || hoisted_null {
        if composed {
            return json!({ "anyOf": [{ "type": "null" }, Value::Object(out)] });
        }
        if let Some(kind) = out.get_mut("type") {
            match kind {
                Value::String(single) => *kind = json!([single.clone(), "null"]),
                Value::Array(kinds) if !kinds.contains(&json!("null")) => kinds.push(json!("null")),
                _ => {}
            }
        }
        if let Some(Value::Array(options)) = out.get_mut("enum")
            && !options.contains(&Value::Null)
        {
            options.push(Value::Null);
        }
    }
    Value::Object(out)
}

/// Whether a schema (or the component it references) carries `readOnly`/`writeOnly: true`.
fn has_flag(schema: &Value, flag: &str, document: &Value) -> bool {
    if schema.get(flag).and_then(Value::as_bool) == Some(true) {
        return true;
    }
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| document.pointer(pointer))
        .and_then(|target| target.get(flag))
        .and_then(Value::as_bool)
        == Some(true)
}

/// Closes n8n workflow response objects (and their `activeVersion`) to the declared keys plus
/// the real server's extras. Works on the raw OpenAPI schema, before rewriting.
fn close_n8n_workflows(schema: &mut Value, document: &Value) {
    inline_ref(schema, document);
    if is_workflow(schema) {
        close_workflow(schema, document);
    } else if let Some(items) = schema.pointer_mut("/properties/data/items") {
        inline_ref(items, document);
        if is_workflow(items) {
            close_workflow(items, document);
        }
    }
}

fn close_workflow(workflow: &mut Value, document: &Value) {
    close_object(workflow, N8N_EXTRA_WORKFLOW_KEYS);
    if let Some(active_version) = workflow.pointer_mut("/properties/activeVersion") {
        inline_ref(active_version, document);
        close_object(active_version, N8N_EXTRA_ACTIVE_VERSION_KEYS);
    }
}

fn is_workflow(schema: &Value) -> bool {
    let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
        return false;
    };
    ["nodes", "connections", "settings"]
        .iter()
        .all(|key| properties.contains_key(*key))
}

fn close_object(schema: &mut Value, extra_keys: &[&str]) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(properties)) = object.get_mut("properties") {
        for key in extra_keys {
            // An undeclared extra may hold anything; a declared one keeps its schema.
            properties
                .entry((*key).to_owned())
                .or_insert_with(|| json!({}));
        }
    }
    object.insert("additionalProperties".to_owned(), Value::Bool(false));
}

/// Replaces `{"$ref": "#/..."}` by a copy of its target, keeping sibling keywords.
fn inline_ref(schema: &mut Value, document: &Value) {
    let target = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|reference| reference.strip_prefix('#'))
        .and_then(|pointer| document.pointer(pointer))
        .cloned();
    let (Some(Value::Object(target)), Some(object)) = (target, schema.as_object_mut()) else {
        return;
    };
    object.remove("$ref");
    for (key, value) in target {
        object.entry(key).or_insert(value);
    }
}

fn explain_all(validator: &Validator, body: &Value) -> Vec<String> {
    let mut messages = Vec::new();
    for error in validator.iter_errors(body) {
        explain(&error, &mut messages);
    }
    messages
}

/// Turns one validation error into messages naming the JSON pointer of the failing field
/// and the rule. Values are never echoed (a failing field may be a password).
fn explain(error: &ValidationError<'_>, messages: &mut Vec<String>) {
    let at = error.instance_path().as_str();
    let rule = format!(
        "{} at schema {}",
        error.kind().keyword(),
        error.schema_path().as_str()
    );
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            messages.push(format!(
                "{}: required property is missing [{rule}]",
                field(&format!("{at}/{}", escape_pointer(&name)))
            ));
        }
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                messages.push(format!(
                    "{}: property is not allowed here (additionalProperties: false) [{rule}]",
                    field(&format!("{at}/{}", escape_pointer(name)))
                ));
            }
        }
        ValidationErrorKind::FalseSchema => messages.push(format!(
            "{}: read-only property must not be sent in a request [readOnly at schema {}]",
            field(at),
            error.schema_path().as_str()
        )),
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            // Alternatives whose only complaint is the value's type (e.g. the `null` branch of
            // a nullable object) say nothing useful; if one alternative is left, its errors
            // are the real ones.
            let relevant: Vec<&Vec<ValidationError<'static>>> = context
                .iter()
                .filter(|branch| {
                    !(branch.len() == 1
                        && matches!(branch[0].kind(), ValidationErrorKind::Type { .. })
                        && branch[0].instance_path().as_str() == at)
                })
                .collect();
            if let [branch] = relevant.as_slice() {
                for inner in branch.iter() {
                    explain(inner, messages);
                }
            } else {
                messages.push(format!(
                    "{}: matches none of the {} alternatives [{rule}]",
                    field(at),
                    context.len()
                ));
            }
        }
        _ => messages.push(format!(
            "{}: {} [{rule}]",
            field(at),
            error.masked_with("the value")
        )),
    }
}

fn field(pointer: &str) -> String {
    if pointer.is_empty() {
        "body root".to_owned()
    } else {
        format!("`{pointer}`")
    }
}

#[cfg(test)]
mod nested_alternatives_tests {
    use super::*;

    fn object(properties: &[&str], required: &[&str]) -> Value {
        let properties: Map<String, Value> = properties
            .iter()
            .map(|name| ((*name).to_owned(), json!({"type": "string"})))
            .collect();
        json!({"type": "object", "properties": properties, "required": required})
    }

    #[test]
    fn a_weakened_copy_of_an_alternative_nests_in_it() {
        let private = object(&["id", "url", "projectId"], &["id", "url", "projectId"]);
        let public = object(&["id", "url"], &["id", "url"]);
        assert!(has_nested_alternatives(&[private, public]));
    }

    #[test]
    fn alternatives_that_each_require_their_own_key_do_not_nest() {
        let by_id = object(&["ref", "repoId"], &["ref", "repoId"]);
        let by_name = object(&["ref", "org", "repo"], &["ref", "org", "repo"]);
        assert!(!has_nested_alternatives(&[by_id, by_name]));
    }

    #[test]
    fn a_closed_alternative_or_a_differing_property_schema_does_not_nest() {
        let strong = object(&["id", "url"], &["id", "url"]);
        let mut closed = object(&["id"], &["id"]);
        closed["additionalProperties"] = json!(false);
        assert!(!has_nested_alternatives(&[strong.clone(), closed]));
        let mut other_type = object(&["id"], &["id"]);
        other_type["properties"]["id"] = json!({"type": "number"});
        assert!(!has_nested_alternatives(&[strong, other_type]));
    }
}
