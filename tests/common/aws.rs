//! The AWS CLI as tests run it: `aws elb <args> --endpoint-url http://<admin>/`, reading nothing of the host's
//! configuration, with the keys given. A test that cannot run it fails saying how to install it.

use std::process::Stdio;

use super::Elbe;

/// What one `aws` run did.
pub struct Cli {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Cli {
    pub fn json(&self) -> serde_json::Value {
        assert!(self.success, "aws failed: {}", self.stderr);
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }

    /// The error code the CLI printed: `An error occurred (Code) when calling …`.
    pub fn error_code(&self) -> String {
        assert!(!self.success, "aws succeeded: {}", self.stdout);
        self.stderr
            .split_once("An error occurred (")
            .and_then(|(_, rest)| rest.split_once(')'))
            .map(|(code, _)| code.to_owned())
            .unwrap_or_else(|| panic!("no error code in: {}", self.stderr))
    }
}

/// Runs `aws elb <args>` against elbe's admin listener with these keys, reading no configuration of the host's.
pub async fn aws_with(elbe: &Elbe, key: &str, secret: &str, args: &[&str]) -> Cli {
    aws_at(&format!("http://{}/", elbe.admin()), key, secret, args).await
}

/// Runs `aws elb <args>` against the ELB API at `endpoint` with these keys.
pub async fn aws_at(endpoint: &str, key: &str, secret: &str, args: &[&str]) -> Cli {
    let binary = std::env::var("AWS_CLI").unwrap_or_else(|_| "aws".to_owned());
    let home = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(&binary)
        .arg("elb")
        .args(args)
        .args(["--endpoint-url", endpoint, "--region", "local-1", "--output", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_PAGER", "")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("the AWS CLI is needed for these tests and `{binary}` did not run ({e}): install it with `pip install awscli`, or name it in AWS_CLI")
        });
    Cli {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
