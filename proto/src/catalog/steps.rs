//! Reading a journey's `steps:`: each step's own keys (`name`, `always`,
//! `expect.failure`), the keys a step spells differently because the step
//! takes the name, then its kind's body, parsed like a probe's.
use serde_json::{Map, Value as Json};

use super::load::{parse_kind, take_kind};
use super::source_map::Seg;
use super::{COMMON_KEYS, JourneySpec, STEP_KEYS, STEP_RENAMED_KEYS, StepDef};

pub(super) fn parse_journey(
    mut body: Map<String, Json>,
) -> Result<JourneySpec, (Vec<Seg>, String)> {
    let steps = match body.remove("steps") {
        Some(Json::Array(steps)) => steps,
        Some(_) => {
            return Err((
                vec![Seg::Key("steps".into())],
                "`steps` must be a list".into(),
            ));
        }
        None => return Err((vec![], "a journey needs `steps`".into())),
    };
    if let Some(k) = body.keys().next() {
        return Err((
            vec![Seg::Key(k.clone())],
            format!("unknown field `{k}`, expected `steps`"),
        ));
    }
    if steps.is_empty() {
        return Err((
            vec![Seg::Key("steps".into())],
            "a journey needs at least one step".into(),
        ));
    }
    let mut out = Vec::with_capacity(steps.len());
    for (i, step) in steps.into_iter().enumerate() {
        let at = |mut path: Vec<Seg>| {
            let mut p = vec![Seg::Key("steps".into()), Seg::Index(i)];
            p.append(&mut path);
            p
        };
        out.push(parse_step(step).map_err(|(path, m)| (at(path), m))?);
    }
    Ok(JourneySpec { steps: out })
}

fn parse_step(step: Json) -> Result<StepDef, (Vec<Seg>, String)> {
    let Json::Object(fields) = step else {
        return Err((vec![], "a step must be a mapping".into()));
    };
    let (envelope, mut body): (Map<String, Json>, Map<String, Json>) = fields
        .into_iter()
        .partition(|(k, _)| STEP_KEYS.contains(&k.as_str()));
    let name = match envelope.get("name") {
        Some(Json::String(n)) => n.clone(),
        Some(_) => {
            return Err((
                vec![Seg::Key("name".into())],
                "`name` must be a string".into(),
            ));
        }
        None => return Err((vec![], "missing `name`".into())),
    };
    let always = match envelope.get("always") {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            return Err((
                vec![Seg::Key("always".into())],
                "`always` must be true or false".into(),
            ));
        }
    };
    // `expect: { failure: CLASS }` belongs to the step; other `expect` keys
    // (an http status, a permission decision) stay with the kind.
    let mut expect_failure = None;
    if let Some(Json::Object(e)) = body.get_mut("expect")
        && let Some(f) = e.remove("failure")
    {
        let path = vec![Seg::Key("expect".into()), Seg::Key("failure".into())];
        let Json::String(class) = f else {
            return Err((
                path,
                "must be a failure class name, e.g. auth_rejected".into(),
            ));
        };
        if crate::failure_class_from_name(&class).is_none() {
            return Err((
                path,
                format!(
                    "unknown failure class `{class}` (one of: {})",
                    crate::failure_class_names().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        expect_failure = Some(class);
        if e.is_empty() {
            body.remove("expect");
        }
    }
    let kind = take_kind(&mut body)?;
    if kind == "journey" {
        return Err((
            vec![Seg::Key("kind".into())],
            "a journey step can't be a journey".into(),
        ));
    }
    if let Some(k) = body.keys().find(|k| COMMON_KEYS.contains(&k.as_str())) {
        return Err((
            vec![Seg::Key(k.clone())],
            format!("`{k}` is set on the journey, not on a step"),
        ));
    }
    // A key the step takes for itself has another spelling in a step.
    for (k, key, step_key) in STEP_RENAMED_KEYS {
        if *k != kind {
            continue;
        }
        match body.remove(*step_key) {
            Some(v) => {
                body.insert((*key).to_string(), v);
            }
            None => {
                return Err((
                    vec![],
                    format!(
                        "missing `{step_key}` (a `{kind}` step's `{key}`: `{key}` is the step's own)"
                    ),
                ));
            }
        }
    }
    let spec = parse_kind(&kind, body).map_err(|(mut path, m)| {
        // Errors about the renamed key point at the key as written.
        if let Some(Seg::Key(first)) = path.first_mut()
            && let Some((_, _, step_key)) = STEP_RENAMED_KEYS
                .iter()
                .find(|(k, key, _)| *k == kind && first == key)
        {
            *first = (*step_key).to_string();
        }
        (path, m)
    })?;
    Ok(StepDef {
        name,
        always,
        expect_failure,
        spec,
    })
}
