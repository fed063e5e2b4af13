//! `scim`: the lifecycle of a synthetic user, with orphan cleanup.
use serde::{Deserialize, Serialize};

use super::Validate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScimSpec {
    pub base_url: String,
}
impl Validate for ScimSpec {}
