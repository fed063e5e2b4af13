//! `permission`: one authorization decision (OPA, OpenFGA, SpiceDB or a
//! generic JSON endpoint) that must come back allow or deny.
use serde::{Deserialize, Serialize};

use super::Validate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionSpec {
    pub url: String,
}
impl Validate for PermissionSpec {}
