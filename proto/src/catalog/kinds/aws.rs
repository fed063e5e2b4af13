//! AWS identity kinds: `aws_sts`, `aws_cognito`, `aws_iam_permission`, all
//! SigV4-signed with an overridable endpoint.
use serde::{Deserialize, Serialize};

use super::Validate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsStsSpec {
    pub region: String,
}
impl Validate for AwsStsSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsCognitoSpec {
    pub region: String,
}
impl Validate for AwsCognitoSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsIamPermissionSpec {
    pub region: String,
}
impl Validate for AwsIamPermissionSpec {}
