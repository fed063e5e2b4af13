//! OAuth 2.0 / OpenID Connect kinds: token grants (`client_credentials`,
//! `password`, `refresh`, `authorization_code`), token use (`introspect`,
//! `userinfo`, `revoke`) and `jwt_validate`.
use serde::{Deserialize, Serialize};

use super::super::Value;
use super::Validate;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCredentialsSpec {
    pub issuer: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Value>,
}
impl Validate for ClientCredentialsSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSpec {
    pub issuer: String,
    pub client_id: String,
    pub username: String,
    pub password: Value,
}
impl Validate for PasswordSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshSpec {
    pub issuer: String,
    pub client_id: String,
    pub refresh_token: String,
}
impl Validate for RefreshSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeSpec {
    pub issuer: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub username: String,
    pub password: Value,
}
impl Validate for AuthorizationCodeSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectSpec {
    pub issuer: String,
    pub token: String,
}
impl Validate for IntrospectSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserinfoSpec {
    pub issuer: String,
    pub token: String,
}
impl Validate for UserinfoSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeSpec {
    pub issuer: String,
    pub token: String,
}
impl Validate for RevokeSpec {}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtValidateSpec {
    pub token: String,
    pub issuer: String,
}
impl Validate for JwtValidateSpec {}
