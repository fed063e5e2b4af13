//! Client authentication at the token, introspection and revocation
//! endpoints: the spec's client fields ([`ClientConfig`]) resolved into a
//! credential ([`ClientAuth`]: `none`, `client_secret_basic`,
//! `client_secret_post`, `private_key_jwt` with its signed client
//! assertion) and applied to a form POST.
use std::sync::Arc;

use authpulse_proto::catalog::{ClientAuthMethod, Value};
use authpulse_proto::v1::FailureClass;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, EncodingKey};
use url::Url;

use super::{OAuthError, unix_now};
use crate::secrets::{Redactor, SecretStore};

/// The client fields of a spec, borrowed (every token kind has the same flat
/// fields; see `authpulse_proto::catalog::ClientCredentialsSpec`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientConfig<'a> {
    pub client_id: &'a str,
    pub method: Option<ClientAuthMethod>,
    pub client_secret: Option<&'a Value>,
    /// PEM private key for `private_key_jwt`.
    pub private_key: Option<&'a Value>,
    /// `RS256`, `ES256`, … (default: from the key type).
    pub private_key_alg: Option<&'a str>,
    pub key_id: Option<&'a str>,
}

/// A resolved client credential, ready to authenticate requests.
#[derive(Clone)]
pub enum ClientAuth {
    None {
        client_id: String,
    },
    SecretBasic {
        client_id: String,
        secret: String,
    },
    SecretPost {
        client_id: String,
        secret: String,
    },
    PrivateKeyJwt {
        client_id: String,
        key: Arc<EncodingKey>,
        alg: Algorithm,
        kid: Option<String>,
    },
}

impl std::fmt::Debug for ClientAuth {
    // Never print secrets or keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAuth({} {})", self.method_name(), self.client_id())
    }
}

/// How long a client assertion is valid: long enough for clock skew, short
/// enough to be useless if captured.
const ASSERTION_LIFETIME_SECS: u64 = 60;

impl ClientAuth {
    /// Resolves secrets (registering them for redaction) and parses the
    /// private key. The method defaults to `private_key_jwt` when a private
    /// key is given, `client_secret_basic` with a secret, else `none`.
    /// Errors are class `config`.
    pub fn resolve(
        cfg: &ClientConfig<'_>,
        secrets: &SecretStore,
        redactor: &Redactor,
    ) -> Result<ClientAuth, OAuthError> {
        let config = |m: String| OAuthError::new(FailureClass::Config, m);
        let method = cfg
            .method
            .unwrap_or(match (cfg.private_key, cfg.client_secret) {
                (Some(_), _) => ClientAuthMethod::PrivateKeyJwt,
                (None, Some(_)) => ClientAuthMethod::ClientSecretBasic,
                (None, None) => ClientAuthMethod::None,
            });
        let client_id = cfg.client_id.to_string();
        let secret = || -> Result<String, OAuthError> {
            let v = cfg.client_secret.ok_or_else(|| {
                config("`client_secret` is required by this `client_auth`".into())
            })?;
            crate::secrets::resolve(v, secrets, redactor).map_err(|e| config(e.to_string()))
        };
        Ok(match method {
            ClientAuthMethod::None => ClientAuth::None { client_id },
            ClientAuthMethod::ClientSecretBasic => ClientAuth::SecretBasic {
                client_id,
                secret: secret()?,
            },
            ClientAuthMethod::ClientSecretPost => ClientAuth::SecretPost {
                client_id,
                secret: secret()?,
            },
            ClientAuthMethod::PrivateKeyJwt => {
                let v = cfg.private_key.ok_or_else(|| {
                    config("`private_key` is required by `client_auth: private_key_jwt`".into())
                })?;
                let pem = crate::secrets::resolve(v, secrets, redactor)
                    .map_err(|e| config(e.to_string()))?;
                let (key, alg) = signing_key(pem.as_bytes(), cfg.private_key_alg)
                    .map_err(|m| config(format!("`private_key`: {m}")))?;
                ClientAuth::PrivateKeyJwt {
                    client_id,
                    key: Arc::new(key),
                    alg,
                    kid: cfg.key_id.map(str::to_string),
                }
            }
        })
    }

    pub fn client_id(&self) -> &str {
        match self {
            ClientAuth::None { client_id }
            | ClientAuth::SecretBasic { client_id, .. }
            | ClientAuth::SecretPost { client_id, .. }
            | ClientAuth::PrivateKeyJwt { client_id, .. } => client_id,
        }
    }

    /// The `token_endpoint_auth_method` name.
    pub fn method_name(&self) -> &'static str {
        match self {
            ClientAuth::None { .. } => "none",
            ClientAuth::SecretBasic { .. } => "client_secret_basic",
            ClientAuth::SecretPost { .. } => "client_secret_post",
            ClientAuth::PrivateKeyJwt { .. } => "private_key_jwt",
        }
    }

    /// Adds the client's authentication to a form POST to `endpoint`: an
    /// `Authorization` header, or form fields. A client assertion is signed
    /// for `endpoint` as audience (OIDC Core §9 names the token endpoint;
    /// providers accept the endpoint called) and registered for redaction.
    pub fn apply(
        &self,
        endpoint: &Url,
        headers: &mut HeaderMap,
        form: &mut Vec<(String, String)>,
        redactor: &Redactor,
    ) -> Result<(), OAuthError> {
        match self {
            ClientAuth::None { client_id } => {
                form.push(("client_id".into(), client_id.clone()));
            }
            ClientAuth::SecretBasic { client_id, secret } => {
                // RFC 6749 §2.3.1: both parts form-encoded before base64.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let basic = STANDARD.encode(format!("{}:{}", enc(client_id), enc(secret)));
                redactor.remember(&basic);
                let mut value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                    OAuthError::new(
                        FailureClass::Config,
                        "client credentials are not a valid header value",
                    )
                })?;
                value.set_sensitive(true);
                headers.insert(header::AUTHORIZATION, value);
            }
            ClientAuth::SecretPost { client_id, secret } => {
                form.push(("client_id".into(), client_id.clone()));
                form.push(("client_secret".into(), secret.clone()));
            }
            ClientAuth::PrivateKeyJwt {
                client_id,
                key,
                alg,
                kid,
            } => {
                let assertion =
                    client_assertion(client_id, key, *alg, kid.as_deref(), endpoint.as_str())?;
                redactor.remember(&assertion);
                form.push(("client_id".into(), client_id.clone()));
                form.push((
                    "client_assertion_type".into(),
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
                ));
                form.push(("client_assertion".into(), assertion));
            }
        }
        Ok(())
    }
}

/// Parses a PEM private key: RSA (PKCS#1 or PKCS#8) → RS256, EC (SEC1 or
/// PKCS#8) → ES256, unless `alg` names another algorithm of the key's family.
fn signing_key(pem: &[u8], alg: Option<&str>) -> Result<(EncodingKey, Algorithm), String> {
    let wanted: Option<Algorithm> = match alg {
        Some(a) => Some(a.parse().map_err(|_| format!("unknown algorithm `{a}`"))?),
        None => None,
    };
    let rsa = |a| {
        matches!(
            a,
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        )
    };
    let ec = |a| matches!(a, Algorithm::ES256 | Algorithm::ES384);
    if wanted.is_none_or(rsa)
        && let Ok(k) = EncodingKey::from_rsa_pem(pem)
    {
        return Ok((k, wanted.unwrap_or(Algorithm::RS256)));
    }
    if wanted.is_none_or(ec)
        && let Ok(k) = EncodingKey::from_ec_pem(pem)
    {
        return Ok((k, wanted.unwrap_or(Algorithm::ES256)));
    }
    Err(match wanted {
        Some(a) => format!("not a PEM private key usable with {a:?}"),
        None => "not a PEM RSA or EC private key".into(),
    })
}

/// An RFC 7523 client assertion: iss = sub = client_id, aud = endpoint,
/// a fresh jti, valid for a minute.
fn client_assertion(
    client_id: &str,
    key: &EncodingKey,
    alg: Algorithm,
    kid: Option<&str>,
    audience: &str,
) -> Result<String, OAuthError> {
    use rand::RngExt;
    let now = unix_now();
    let jti: [u8; 16] = rand::rng().random();
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    let claims = serde_json::json!({
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": hex::encode(jti),
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECS,
    });
    jsonwebtoken::encode(&header, &claims, key).map_err(|e| {
        OAuthError::new(
            FailureClass::Config,
            format!("signing the client assertion ({alg:?}) failed: {e}"),
        )
    })
}
