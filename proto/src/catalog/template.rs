//! Journey templates: `{{ steps.<step>.<path> }}` in any string of a step's
//! body, filled in on the agent from earlier steps' outputs just before the
//! step runs. Only `steps.` is a root: environment variables are refused so
//! that secrets keep coming by reference (`{ secret: NAME }`) and stay
//! redactable.
use serde_json::Value as Json;

/// One `{{ ... }}` reference: the step it reads and the path below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    pub step: String,
    pub path: Vec<String>,
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "steps.{}", self.step)?;
        for p in &self.path {
            write!(f, ".{p}")?;
        }
        Ok(())
    }
}

/// A piece of a templated string.
enum Piece<'a> {
    Text(&'a str),
    Ref(Reference),
}

fn parse_expr(expr: &str) -> Result<Reference, String> {
    let expr = expr.trim();
    let mut parts = expr.split('.');
    match parts.next() {
        Some("steps") => {}
        Some("env") => {
            return Err(format!(
                "`{{{{ {expr} }}}}`: environment variables are not allowed in templates; \
                 pass credentials as `{{ secret: NAME }}`"
            ));
        }
        _ => {
            return Err(format!(
                "`{{{{ {expr} }}}}`: a template reads an earlier step's output, \
                 e.g. `{{{{ steps.login.access_token }}}}`"
            ));
        }
    }
    let step = parts
        .next()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("`{{{{ {expr} }}}}`: missing the step name after `steps.`"))?;
    let path: Vec<String> = parts.map(str::to_string).collect();
    if path.is_empty() {
        return Err(format!(
            "`{{{{ {expr} }}}}`: name an output of step `{step}`, e.g. `steps.{step}.access_token`"
        ));
    }
    let ok = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b':')
    };
    if !ok(step) || !path.iter().all(|p| ok(p)) {
        return Err(format!(
            "`{{{{ {expr} }}}}`: invalid characters in the path"
        ));
    }
    Ok(Reference {
        step: step.to_string(),
        path,
    })
}

fn pieces(s: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("unclosed `{{{{` in `{s}`"))?;
        out.push(Piece::Ref(parse_expr(&after[..end])?));
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// Every reference in a string (errors for malformed templates).
pub fn references(s: &str) -> Result<Vec<Reference>, String> {
    Ok(pieces(s)?
        .into_iter()
        .filter_map(|p| match p {
            Piece::Ref(r) => Some(r),
            Piece::Text(_) => None,
        })
        .collect())
}

/// Every string in a JSON value with the key path that leads to it.
pub fn strings(value: &Json) -> Vec<(Vec<super::source_map::Seg>, &str)> {
    use super::source_map::Seg;
    fn walk<'a>(v: &'a Json, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, &'a str)>) {
        match v {
            Json::String(s) => out.push((path.clone(), s)),
            Json::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk(item, path, out);
                    path.pop();
                }
            }
            Json::Object(map) => {
                for (k, item) in map {
                    path.push(Seg::Key(k.clone()));
                    walk(item, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn lookup<'a>(r: &Reference, scope: &'a Json) -> Result<&'a Json, String> {
    let step = scope
        .get(&r.step)
        .ok_or_else(|| format!("`{{{{ {r} }}}}`: step `{}` has produced no outputs", r.step))?;
    let mut v = step;
    for (i, p) in r.path.iter().enumerate() {
        let next = match v {
            Json::Object(m) => m.get(p),
            Json::Array(a) => p.parse::<usize>().ok().and_then(|n| a.get(n)),
            _ => None,
        };
        v = next.ok_or_else(|| {
            let have = match v {
                Json::Object(m) => m.keys().cloned().collect::<Vec<_>>().join(", "),
                _ => String::new(),
            };
            let at = if i == 0 {
                format!("step `{}`", r.step)
            } else {
                format!("`{}`", r.path[..i].join("."))
            };
            if have.is_empty() {
                format!("`{{{{ {r} }}}}`: {at} has no `{p}`")
            } else {
                format!("`{{{{ {r} }}}}`: {at} has no `{p}` (it has: {have})")
            }
        })?;
    }
    Ok(v)
}

/// Fills every template in `value` from `scope` (`{ "<step>": outputs }`).
/// A string that is exactly one template takes the referenced value as it
/// is (an object stays an object); templates inside text are replaced by
/// their text form.
pub fn render(value: &Json, scope: &Json) -> Result<Json, String> {
    Ok(match value {
        Json::String(s) if s.contains("{{") => {
            let ps = pieces(s)?;
            if let [Piece::Ref(r)] = ps.as_slice() {
                lookup(r, scope)?.clone()
            } else {
                let mut out = String::new();
                for p in ps {
                    match p {
                        Piece::Text(t) => out.push_str(t),
                        Piece::Ref(r) => match lookup(&r, scope)? {
                            Json::String(v) => out.push_str(v),
                            other => out.push_str(&other.to_string()),
                        },
                    }
                }
                Json::String(out)
            }
        }
        Json::Array(items) => Json::Array(
            items
                .iter()
                .map(|i| render(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render(v, scope)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn whole_string_template_keeps_the_type_and_text_templates_interpolate() {
        let scope = json!({"login": {"access_token": "tok", "claims": {"sub": "u1", "n": 3}}});
        let v = json!({
            "token": "{{ steps.login.access_token }}",
            "input": {"user": "{{steps.login.claims.sub}}", "all": "{{ steps.login.claims }}"},
            "header": "Bearer {{ steps.login.access_token }} n={{ steps.login.claims.n }}",
            "plain": "no templates", "num": 5
        });
        let r = render(&v, &scope).expect("render");
        assert_eq!(r["token"], "tok");
        assert_eq!(r["input"]["user"], "u1");
        assert_eq!(r["input"]["all"], json!({"sub": "u1", "n": 3}));
        assert_eq!(r["header"], "Bearer tok n=3");
        assert_eq!(r["plain"], "no templates");
        assert_eq!(r["num"], 5);
    }

    #[test]
    fn missing_values_name_what_exists() {
        let scope = json!({"login": {"access_token": "tok"}});
        let e = render(&json!("{{ steps.login.id_token }}"), &scope).expect_err("missing");
        assert!(
            e.contains("has no `id_token`") && e.contains("access_token"),
            "{e}"
        );
        let e = render(&json!("{{ steps.nope.x }}"), &scope).expect_err("missing step");
        assert!(e.contains("step `nope`"), "{e}");
    }

    #[test]
    fn env_and_malformed_templates_are_refused() {
        let e = references("{{ env.HOME }}").expect_err("env");
        assert!(e.contains("environment variables are not allowed"), "{e}");
        assert!(references("{{ steps.login }}").is_err());
        assert!(references("{{ steps.login.x").is_err());
        assert!(references("{{ other.x }}").is_err());
        let r = references("a {{ steps.a.b.c }} b").expect("ok");
        assert_eq!(r[0].step, "a");
        assert_eq!(r[0].path, vec!["b", "c"]);
    }
}
