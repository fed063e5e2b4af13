//! Reading OpenSLO YAML field by field with the path of every field at hand,
//! so that each refusal names it (`spec.objectives[1].op`), and with the
//! list of fields each mapping may have, so that nothing is ignored
//! silently: a key the importer does not handle is either one of OpenSLO v1
//! it refuses with a reason, or not OpenSLO v1 at all, and both are errors.
use yaml_rust2::Yaml;
use yaml_rust2::yaml::Hash;

/// One problem: the field's path and why it can't be represented.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

/// The problems of one document, collected rather than stopping at the
/// first, so one run lists everything to change.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn refuse(&mut self, path: &str, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A mapping and where it is.
#[derive(Clone, Debug)]
pub struct Map<'a> {
    hash: &'a Hash,
    pub path: String,
}

/// The path of `key` under `parent` (`spec` + `service` = `spec.service`).
pub fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl<'a> Map<'a> {
    /// `yaml` as a mapping at `path`; anything else (a list, a scalar) is a
    /// problem named at `path`. `null` (a key with nothing after it) is an
    /// empty mapping.
    pub fn of(yaml: &'a Yaml, path: &str, p: &mut Problems) -> Option<Map<'a>> {
        static EMPTY: std::sync::OnceLock<Hash> = std::sync::OnceLock::new();
        match yaml {
            Yaml::Hash(hash) => Some(Map {
                hash,
                path: path.to_string(),
            }),
            Yaml::Null => Some(Map {
                hash: EMPTY.get_or_init(Hash::new),
                path: path.to_string(),
            }),
            _ => {
                p.refuse(path, "must be a mapping");
                None
            }
        }
    }

    /// The value of `key`, absent when missing or `null`.
    pub fn get(&self, key: &str) -> Option<&'a Yaml> {
        match self.hash.get(&Yaml::String(key.to_string())) {
            None | Some(Yaml::Null) => None,
            Some(v) => Some(v),
        }
    }

    /// Every key, as text.
    pub fn keys(&self) -> Vec<String> {
        self.hash
            .keys()
            .map(|k| match k {
                Yaml::String(s) => s.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Whether `key` is written at all (even as `null`).
    pub fn has(&self, key: &str) -> bool {
        self.hash.contains_key(&Yaml::String(key.to_string()))
    }

    /// The path of `key` in this mapping.
    pub fn at(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A string field; a non-string value is a problem.
    pub fn str(&self, key: &str, p: &mut Problems) -> Option<&'a str> {
        match self.get(key)? {
            Yaml::String(s) => Some(s.as_str()),
            _ => {
                p.refuse(&self.at(key), "must be a string");
                None
            }
        }
    }

    /// A nested mapping field.
    pub fn map(&self, key: &str, p: &mut Problems) -> Option<Map<'a>> {
        Map::of(self.get(key)?, &self.at(key), p)
    }

    /// Every key that is neither in `known` (handled by the caller) nor in
    /// `refused` (OpenSLO fields with the reason they can't be represented)
    /// is reported as not being OpenSLO v1; every key in `refused` that is
    /// present (and not null or empty) with its reason.
    pub fn check_keys(&self, known: &[&str], refused: &[(&str, &str)], p: &mut Problems) {
        for (k, v) in self.hash {
            let key = match k {
                Yaml::String(s) => s.clone(),
                other => format!("{other:?}"),
            };
            if known.contains(&key.as_str()) {
                continue;
            }
            if let Some((_, why)) = refused.iter().find(|(name, _)| *name == key) {
                if !is_empty(v) {
                    p.refuse(&self.at(&key), *why);
                }
                continue;
            }
            p.refuse(
                &self.at(&key),
                "not a field of this OpenSLO v1 object (a typo, or another version)",
            );
        }
    }
}

/// `null`, an empty list or an empty mapping: written but saying nothing.
pub fn is_empty(y: &Yaml) -> bool {
    match y {
        Yaml::Null => true,
        Yaml::Array(a) => a.is_empty(),
        Yaml::Hash(h) => h.is_empty(),
        _ => false,
    }
}

/// A YAML number as an exact decimal, from its text as written; strings
/// (even `"0.99"`) are not numbers.
pub fn decimal(y: &Yaml) -> Option<super::decimal::Decimal> {
    match y {
        Yaml::Integer(i) => Some(super::decimal::Decimal::int(*i)),
        Yaml::Real(text) => super::decimal::Decimal::parse(text),
        _ => None,
    }
}

/// A short rendering of a scalar for messages.
pub fn show(y: &Yaml) -> String {
    match y {
        Yaml::String(s) => format!("`{s}`"),
        Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => "null".into(),
        Yaml::Array(_) => "a list".into(),
        Yaml::Hash(_) => "a mapping".into(),
        _ => "an unsupported value".into(),
    }
}
