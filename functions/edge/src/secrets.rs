//! The API token and ckanpackager's secret from AWS Secrets Manager: the deployed stack names
//! the secrets (`SHEAF_API_TOKEN_SECRET_ID`, `SHEAF_PACKAGER_SECRET_ID`) instead of holding
//! their values, so neither is in the template, its parameters or a function's configuration.
//! Each is read once, when the process starts, and kept for its life: a changed value reaches
//! the functions as their instances are replaced (or at once with any configuration update).

use anyhow::{Context, bail};
use common::aws::{AwsSettings, load_sdk_config};

use crate::{Config, var};

/// A secret the configuration may name instead of holding its value.
struct SecretVariable {
    /// The variable holding the value itself.
    value: &'static str,
    /// The variable naming the secret (an ARN or a name) that holds it.
    secret_id: &'static str,
    /// Where the value goes in the configuration.
    slot: fn(&mut Config) -> &mut Option<String>,
}

const API_TOKEN: SecretVariable = SecretVariable {
    value: "SHEAF_API_TOKEN",
    secret_id: "SHEAF_API_TOKEN_SECRET_ID",
    slot: |config| &mut config.api_token,
};
const PACKAGER_SECRET: SecretVariable = SecretVariable {
    value: "SHEAF_PACKAGER_SECRET",
    secret_id: "SHEAF_PACKAGER_SECRET_ID",
    slot: |config| &mut config.packager.secret,
};

impl Config {
    /// Fills the API token and the packager secret from Secrets Manager where the
    /// environment names a secret. A secret that cannot be read stops the start with the
    /// reason (running on without it would refuse every call, silently); its value is never
    /// logged.
    pub async fn resolve_secrets(&mut self) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        for variable in [API_TOKEN, PACKAGER_SECRET] {
            match var(variable.secret_id) {
                Some(_) if (variable.slot)(self).is_some() => bail!(
                    "both {} and {} are set: keep one",
                    variable.value,
                    variable.secret_id
                ),
                Some(id) => ids.push((variable, id)),
                None => {}
            }
        }
        if ids.is_empty() {
            return Ok(());
        }
        let sdk = load_sdk_config(&AwsSettings {
            endpoint_url: self.endpoint_url.clone(),
            ..AwsSettings::default()
        })
        .await;
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        // Read at once, not one after the other: each is a round trip of the cold start.
        let reads = ids.iter().map(|(variable, id)| read(&client, variable, id));
        let values = futures::future::try_join_all(reads).await?;
        for ((variable, id), value) in ids.into_iter().zip(values) {
            tracing::info!(secret = %id, variable = variable.value, "secret read");
            *(variable.slot)(self) = Some(value);
        }
        Ok(())
    }
}

/// The text a secret holds, trimmed; a secret without text is an error.
async fn read(
    client: &aws_sdk_secretsmanager::Client,
    variable: &SecretVariable,
    id: &str,
) -> anyhow::Result<String> {
    let answer = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)
        .with_context(|| format!("reading the secret {id} ({})", variable.secret_id))?;
    Ok(answer
        .secret_string()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .with_context(|| format!("the secret {id} ({}) holds no text", variable.secret_id))?
        .to_string())
}
