//! `ldap`: simple bind as a synthetic user over `ldap://` (optionally
//! StartTLS) or `ldaps://`, then an optional search expectation and an
//! optional group-membership check.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::super::{TlsSpec, Value};
use super::{Issues, Validate, check_tls, is_templated, key};

/// `ldap`: a simple bind as a synthetic user over `ldap://` (optionally
/// StartTLS) or `ldaps://`, then an optional search and group-membership
/// check. Steps `connect`, `tls` (with TLS), `bind`, `search`, `member_of`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapSpec {
    /// `ldap://host[:389]` or `ldaps://host[:636]`.
    pub url: String,
    /// Upgrade an `ldap://` connection with the StartTLS extended operation
    /// before binding (not with `ldaps://`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schemars(!skip_serializing_if)]
    pub starttls: bool,
    /// TLS client settings for `ldaps://` and StartTLS (`server_name`
    /// default: the host of `url`).
    #[serde(default)]
    pub tls: TlsSpec,
    /// DN of the synthetic user to bind as.
    pub bind_dn: String,
    /// The password of `bind_dn`, normally `{ secret: NAME }`. Must not be empty: an
    /// empty simple-bind password is an anonymous bind that most servers
    /// accept, so it is refused at load time (inline) and at run time
    /// (secret).
    pub password: Value,
    /// A search run after the bind, as the bound user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<LdapSearch>,
    /// DN of a group the bound user must be a member of (checked only when
    /// everything before passed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_of: Option<String>,
    /// How `member_of` is checked.
    #[serde(default)]
    pub membership: LdapMembership,
}

/// A search run after the bind, as the bound user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapSearch {
    /// The search base DN.
    pub base: String,
    /// An RFC 4515 filter, in parentheses.
    #[serde(default = "default_filter")]
    pub filter: String,
    /// The search scope.
    #[serde(default)]
    pub scope: LdapScope,
    /// Entries the search must return at least; also the size limit sent
    /// to the server, so broad filters stay cheap.
    #[serde(default = "default_min_entries")]
    pub min_entries: usize,
    /// Attributes requested, each of which every returned entry must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
}

fn default_filter() -> String {
    "(objectClass=*)".to_string()
}
fn default_min_entries() -> usize {
    1
}

/// An LDAP search scope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[schemars(transform = scope_aliases)]
pub enum LdapScope {
    /// The base entry only.
    Base,
    /// The base's children (also written `one_level`).
    #[serde(alias = "one_level")]
    One,
    /// The whole subtree (also written `subtree`).
    #[default]
    #[serde(alias = "subtree")]
    Sub,
}

/// serde's aliases are accepted by the loader; the schema must say so.
fn scope_aliases(schema: &mut schemars::Schema) {
    if let Some(serde_json::Value::Array(alts)) = schema.get_mut("oneOf") {
        for (alias, of) in [("one_level", "one"), ("subtree", "sub")] {
            alts.push(serde_json::json!({
                "type": "string",
                "const": alias,
                "description": format!("Same as `{of}`."),
            }));
        }
    }
}

/// How `member_of` is checked. DNs compare case-insensitively, ignoring
/// spaces around `,` and `=`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LdapMembership {
    /// Either `attribute` or `group`.
    #[default]
    Auto,
    /// The user entry's `memberOf` (memberof overlay, Active Directory)
    /// must list the group.
    Attribute,
    /// The group entry must list the user in `member` or `uniqueMember`.
    Group,
}

impl Validate for LdapSpec {
    fn validate(&self) -> Issues {
        let mut out = Issues::new();
        if !is_templated(&self.url) {
            match url::Url::parse(&self.url) {
                Ok(u) if !matches!(u.scheme(), "ldap" | "ldaps") => out.push((
                    vec![key("url")],
                    format!(
                        "`{}`: scheme must be ldap or ldaps, not `{}`",
                        self.url,
                        u.scheme()
                    ),
                )),
                Ok(u) if u.host_str().is_none_or(str::is_empty) => {
                    out.push((vec![key("url")], format!("`{}` has no host", self.url)))
                }
                Ok(u) if u.scheme() == "ldaps" && self.starttls => out.push((
                    vec![key("starttls")],
                    "StartTLS is for ldap:// URLs; ldaps:// is TLS from the start".into(),
                )),
                Ok(_) => {}
                Err(e) => out.push((
                    vec![key("url")],
                    format!("`{}` is not a URL: {e}", self.url),
                )),
            }
        }
        if self.bind_dn.trim().is_empty() {
            out.push((
                vec![key("bind_dn")],
                "must not be empty (that would be an anonymous bind)".into(),
            ));
        }
        if let Value::Plain(p) = &self.password
            && p.is_empty()
        {
            out.push((
                vec![key("password")],
                "must not be empty (an empty password is an anonymous bind)".into(),
            ));
        }
        if let Some(s) = &self.search
            && !is_templated(&s.filter)
            && !(s.filter.starts_with('(') && s.filter.ends_with(')'))
        {
            out.push((
                vec![key("search"), key("filter")],
                format!(
                    "`{}`: an LDAP filter is written in parentheses, e.g. (uid=probe)",
                    s.filter
                ),
            ));
        }
        check_tls(&mut out, &self.tls);
        out
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::{KindSpec, load_str};

    fn errors(body: &str) -> String {
        match load_str(
            "t.yaml",
            &format!("probes:\n  - id: l\n    kind: ldap\n{body}"),
        ) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_checks() {
        let cat = load_str(
            "t.yaml",
            "probes:\n  - id: l\n    kind: ldap\n    url: ldaps://dc1.corp:636\n    bind_dn: uid=p,dc=x\n    password: { secret: pw }\n    search: { base: \"dc=x\" }\n",
        )
        .expect("valid");
        let KindSpec::Ldap(s) = &cat.probes[0].spec else {
            panic!("not ldap")
        };
        let search = s.search.as_ref().expect("search");
        assert_eq!(search.filter, "(objectClass=*)");
        assert_eq!(search.min_entries, 1);
        assert_eq!(s.membership, super::LdapMembership::Auto);

        let base = "    bind_dn: uid=p,dc=x\n    password: { secret: pw }\n";
        let e = errors(&format!("    url: ldaps://h\n    starttls: true\n{base}"));
        assert!(e.contains("StartTLS is for ldap://"), "{e}");
        let e = errors(&format!("    url: https://h\n{base}"));
        assert!(e.contains("scheme must be ldap or ldaps"), "{e}");
        let e = errors("    url: ldap://h\n    bind_dn: uid=p,dc=x\n    password: \"\"\n");
        assert!(e.contains("anonymous bind"), "{e}");
        let e = errors(&format!(
            "    url: ldap://h\n{base}    search: {{ base: \"dc=x\", filter: \"uid=p\" }}\n"
        ));
        assert!(e.contains("written in parentheses"), "{e}");
    }
}
