//! `ldap`: bind as a synthetic user, optional search and group membership.
use serde::{Deserialize, Serialize};

use super::super::Value;
use super::Validate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSpec {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    pub bind_dn: String,
    pub password: Value,
}
impl Validate for LdapSpec {}
