//! `journey`: runs its steps in order in one session (connections and
//! cookies carry over, as for a user), filling each step's templates from
//! the outputs of the steps before it. After a failed step only steps
//! marked `always` run (cleanup, revoke). A step with `expect: { failure }`
//! passes only when it fails with that class; if it succeeds instead and the
//! expected class was `auth_rejected`, access that should be gone is still
//! there, so the class is `escalation`.
use authpulse_proto::catalog::{JourneySpec, StepDef, kind_from_json, template};
use authpulse_proto::v1::FailureClass;
use authpulse_proto::{failure_class_from_name, failure_class_name};
use serde_json::{Map, Value as Json};

use super::{Failure, Probe, ProbeOutcome, RunContext, StepOutcome, dispatch_step};
use crate::http::Timings;

impl Probe for JourneySpec {
    async fn run(&self, ctx: &mut RunContext<'_>) -> ProbeOutcome {
        let journey_scope = ctx.scope.clone();
        let mut scope = Map::new();
        let mut outcomes = Vec::with_capacity(self.steps.len());
        let mut failed: Option<&str> = None;
        let mut skipped = Vec::new();
        for step in &self.steps {
            if failed.is_some() && !step.always {
                skipped.push(step.name.as_str());
                continue;
            }
            ctx.scope = format!("{journey_scope}/{}", step.name);
            ctx.outputs = Map::new();
            let outcome = run_step(step, &Json::Object(scope.clone()), ctx).await;
            scope.insert(
                step.name.clone(),
                Json::Object(std::mem::take(&mut ctx.outputs)),
            );
            if outcome.failure.is_some() && failed.is_none() {
                failed = Some(&step.name);
            }
            outcomes.push(outcome);
        }
        ctx.scope = journey_scope;
        let mut result = ProbeOutcome::from_steps(outcomes, ctx.started.elapsed());
        if let Some(first) = failed
            && !skipped.is_empty()
        {
            result.detail = format!(
                "{}; skipped after `{first}` failed: {}",
                result.detail,
                skipped.join(", ")
            );
        }
        result
    }
}

async fn run_step(step: &StepDef, scope: &Json, ctx: &mut RunContext<'_>) -> StepOutcome {
    let kind = step.spec.kind();
    let outcome = match rendered(step, scope) {
        Ok(None) => dispatch_step(&step.spec, ctx).await,
        Ok(Some(spec)) => dispatch_step(&spec, ctx).await,
        Err(message) => {
            return StepOutcome {
                name: step.name.clone(),
                kind: kind.to_string(),
                failure: Some(Failure::new(FailureClass::Config, message)),
                timings: Timings::default(),
                detail: String::new(),
            };
        }
    };
    let mut timings = outcome.timings;
    // The journey's total is wall time; a step's is its own.
    timings.total = outcome.timings.total;
    let (failure, detail) = expectation(step, outcome.failure, outcome.detail);
    StepOutcome {
        name: step.name.clone(),
        kind: kind.to_string(),
        failure,
        timings,
        detail,
    }
}

/// The step's spec with templates filled in; `None` when it has none.
fn rendered(
    step: &StepDef,
    scope: &Json,
) -> Result<Option<authpulse_proto::catalog::KindSpec>, String> {
    let json = serde_json::to_value(&step.spec).map_err(|e| e.to_string())?;
    if !template::strings(&json)
        .iter()
        .any(|(_, s)| s.contains("{{"))
    {
        return Ok(None);
    }
    let filled = template::render(&json, scope)?;
    kind_from_json(filled)
        .map(Some)
        .map_err(|e| format!("after filling templates: {e}"))
}

fn expectation(
    step: &StepDef,
    failure: Option<Failure>,
    detail: String,
) -> (Option<Failure>, String) {
    let Some(expected) = step.expect_failure.as_deref() else {
        return (failure, detail);
    };
    let want = failure_class_from_name(expected).unwrap_or(FailureClass::Unspecified);
    match failure {
        Some(f) if f.class == want => (
            None,
            format!("failed as expected ({expected}): {}", f.message),
        ),
        Some(f) => (
            Some(Failure::new(
                f.class,
                format!(
                    "expected failure `{expected}`, got `{}`: {}",
                    failure_class_name(f.class),
                    f.message
                ),
            )),
            detail,
        ),
        None => {
            let class = if want == FailureClass::AuthRejected {
                FailureClass::Escalation
            } else {
                FailureClass::Assertion
            };
            (
                Some(Failure::new(
                    class,
                    format!("expected failure `{expected}` but the step succeeded ({detail})"),
                )),
                detail,
            )
        }
    }
}
