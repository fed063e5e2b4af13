//! The catalog's login keys, shared by every kind that signs in through
//! HTML (`authorization_code`, `saml_login`): resolving the password and the
//! TOTP secret, compiling selectors and `login_steps` into the engine's
//! [`Config`], and the page recorder with every secret it must hide.
use std::time::Duration;

use authpulse_proto::catalog::{LoginStep, TlsSpec, Value};

use super::Config;
use crate::probes::RunContext;

/// The login keys as a kind's spec spells them.
pub struct Keys<'a> {
    pub username: &'a str,
    pub password: &'a Value,
    pub totp: Option<&'a Value>,
    pub totp_digits: u8,
    pub totp_period: Duration,
    pub username_field: Option<&'a str>,
    pub password_field: Option<&'a str>,
    pub totp_field: Option<&'a str>,
    pub form_selector: Option<&'a str>,
    pub consent_button: Option<&'a str>,
    pub login_steps: &'a [LoginStep],
    pub max_pages: u8,
    pub tls: &'a TlsSpec,
}

/// The resolved secrets of one run.
pub struct Credentials {
    pub password: String,
    pub totp: Option<totp_rs::Totp>,
}

impl Keys<'_> {
    /// Resolves the password and the TOTP secret; `Err` is a config message.
    pub fn credentials(&self, ctx: &RunContext<'_>) -> Result<Credentials, String> {
        let password = crate::secrets::resolve(self.password, ctx.secrets, &ctx.redactor)
            .map_err(|e| e.to_string())?;
        let totp = self.totp.map(|v| self.totp_generator(v, ctx)).transpose()?;
        Ok(Credentials { password, totp })
    }

    /// The TOTP generator for the secret `v` (base32, spaces and padding allowed).
    fn totp_generator(&self, v: &Value, ctx: &RunContext<'_>) -> Result<totp_rs::Totp, String> {
        let raw =
            crate::secrets::resolve(v, ctx.secrets, &ctx.redactor).map_err(|e| e.to_string())?;
        let cleaned: String = raw
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .collect::<String>()
            .to_ascii_uppercase();
        let secret = totp_rs::Secret::try_from_base32(&cleaned)
            .map_err(|_| "totp: the secret is not base32".to_string())?;
        // Not `build()`: it refuses the 80-bit secrets many IdPs still issue.
        Ok(totp_rs::Builder::new()
            .with_secret(secret)
            .with_digits(self.totp_digits)
            .with_step_duration(self.totp_period.as_secs().max(1))
            .build_noncompliant())
    }

    /// The engine's settings; `Err` for a selector or a `login_steps`
    /// secret that can't be used.
    pub fn config<'a>(
        &'a self,
        creds: &'a Credentials,
        ctx: &RunContext<'_>,
        kind: &'static str,
        start_step: &'static str,
    ) -> Result<Config<'a>, String> {
        let selector = |what: &str, s: Option<&str>| {
            s.map(|s| {
                scraper::Selector::parse(s)
                    .map_err(|e| format!("{what} `{s}` is not a valid CSS selector: {e}"))
            })
            .transpose()
        };
        let steps = super::script::compile(self.login_steps, |v| {
            let value = crate::secrets::resolve(v, ctx.secrets, &ctx.redactor)
                .map_err(|e| e.to_string())?;
            let name = match v {
                Value::Secret { secret } => Some(secret.clone()),
                Value::Plain(_) => None,
            };
            Ok((value, name))
        })?;
        Ok(Config {
            kind,
            username: self.username,
            password: &creds.password,
            totp: creds.totp.as_ref(),
            hints: super::page::Hints {
                username_field: self.username_field,
                password_field: self.password_field,
                totp_field: self.totp_field,
            },
            form_selector: selector("form_selector", self.form_selector)?,
            consent_button: selector("consent_button", self.consent_button)?,
            steps,
            max_pages: usize::from(self.max_pages),
            tls: self.tls,
            start_step,
        })
    }

    /// With `--save-pages`: the recorder, told every secret to hide.
    pub fn recorder(
        &self,
        creds: &Credentials,
        engine: &Config<'_>,
        ctx: &RunContext<'_>,
    ) -> Option<super::save::Recorder> {
        let dir = ctx.save_pages.clone()?;
        let mut r = super::save::Recorder::new(&dir);
        r.secrets
            .add(secret_name(self.password, "password"), &creds.password);
        for (_, value, name) in engine.steps.iter().flat_map(|s| &s.fill) {
            if let Some(n) = name {
                r.secrets.add(n, value);
            }
        }
        if let Some(v) = self.totp
            && let Ok(raw) = crate::secrets::resolve(v, ctx.secrets, &ctx.redactor)
        {
            r.secrets.add(secret_name(v, "totp"), &raw);
        }
        Some(r)
    }
}

/// The secret's name for saved pages (`fallback` for a plain value).
fn secret_name<'v>(v: &'v Value, fallback: &'v str) -> &'v str {
    match v {
        Value::Secret { secret } => secret,
        Value::Plain(_) => fallback,
    }
}
