//! `cargo xtask bench lambda`: a full first deploy and an unchanged redeploy against moto,
//! `deployctl deploy lambda` versus the same sequence as an AWS CLI shell script (the Python
//! package awscli in the xtask venv). Both deploy the same pushed image by digest, so only the
//! AWS part is compared. Alternating runs; medians, ratios and mutating-call counts.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::util::{root, step};

const RUNS: usize = 5;

/// The first-deploy script: what a hand-written deploy does, one CLI call per resource.
pub(crate) const SCRIPT_DEPLOY: &str = r#"set -euo pipefail
A="$VENV/bin/aws"
TRUST='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}'
ROLE_ARN=$($A iam create-role --role-name "$FN-role" --assume-role-policy-document "$TRUST" --query Role.Arn --output text)
$A iam attach-role-policy --role-name "$FN-role" --policy-arn arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole
$A lambda create-function --function-name "$FN" --package-type Image --code ImageUri="$IMAGE" --role "$ROLE_ARN" --memory-size 512 --timeout 30 --environment "Variables={PORT=8080,AWS_LWA_PORT=8080,AWS_LWA_READINESS_CHECK_PATH=/health}" >/dev/null
$A lambda wait function-active-v2 --function-name "$FN"
V=$($A lambda publish-version --function-name "$FN" --query Version --output text)
$A lambda create-alias --function-name "$FN" --name live --function-version "$V" >/dev/null
API=$($A apigatewayv2 create-api --name "$FN" --protocol-type HTTP --query ApiId --output text)
INT=$($A apigatewayv2 create-integration --api-id "$API" --integration-type AWS_PROXY --integration-uri "arn:aws:lambda:us-east-1:123456789012:function:$FN:live" --payload-format-version 2.0 --query IntegrationId --output text)
$A apigatewayv2 create-route --api-id "$API" --route-key '$default' --target "integrations/$INT" >/dev/null
$A apigatewayv2 create-stage --api-id "$API" --stage-name '$default' --auto-deploy >/dev/null
$A lambda add-permission --function-name "$FN" --qualifier live --statement-id apigw --action lambda:InvokeFunction --principal apigateway.amazonaws.com --source-arn "arn:aws:execute-api:us-east-1:123456789012:$API/*" >/dev/null
$A logs create-log-group --log-group-name "/aws/lambda/$FN"
"#;

/// The redeploy script: a script cannot tell "unchanged", so it updates and publishes.
pub(crate) const SCRIPT_REDEPLOY: &str = r#"set -euo pipefail
A="$VENV/bin/aws"
$A lambda update-function-code --function-name "$FN" --image-uri "$IMAGE" >/dev/null
$A lambda wait function-updated-v2 --function-name "$FN"
$A lambda update-function-configuration --function-name "$FN" --memory-size 512 --timeout 30 --environment "Variables={PORT=8080,AWS_LWA_PORT=8080,AWS_LWA_READINESS_CHECK_PATH=/health}" >/dev/null
$A lambda wait function-updated-v2 --function-name "$FN"
V=$($A lambda publish-version --function-name "$FN" --query Version --output text)
$A lambda update-alias --function-name "$FN" --name live --function-version "$V" >/dev/null
"#;

/// AWS CLI calls in a script that are not waits (every one of them mutates).
pub(crate) fn mutating_calls(script: &str) -> usize {
    script
        .lines()
        .filter(|l| l.contains("$A ") && !l.contains(" wait "))
        .count()
}

/// What both sides deploy, and how to run them against an AWS endpoint.
pub(crate) struct Setup {
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    docker: String,
    registry: String,
    venv: String,
    /// The image as deployctl is given it (the test registry, by digest).
    pushed: String,
    /// The same digest as the script names it (an ECR URI).
    ecr_image: String,
    /// Makes app and function names unique to this bench run.
    pub stamp: u64,
}

impl Setup {
    /// Services up, fixtures built, the hello image pushed once; `sub` under `target/bench/`.
    pub fn new(sub: &str) -> Result<(Self, String)> {
        let env = crate::services::up()?;
        let get = |k: &str| {
            env.get(k)
                .cloned()
                .with_context(|| format!("services.env has no {k}"))
        };
        let endpoint = get("DEPLOYCTL_TEST_AWS_ENDPOINT")?;
        crate::fixtures::build()?;
        let dir = root().join("target/bench").join(sub);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir)?;
        copy_app(&root().join("fixtures/apps/hello"), &dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            % 100_000;
        let mut s = Self {
            bin: crate::util::release_binary()?,
            dir,
            docker: get("DEPLOYCTL_TEST_DOCKER_HOST")?,
            registry: get("DEPLOYCTL_TEST_REGISTRY")?,
            venv: get("DEPLOYCTL_TEST_VENV")?,
            pushed: String::new(),
            ecr_image: String::new(),
            stamp,
        };

        step("pushing the hello image once (both sides deploy this digest)");
        s.write_config(&format!("bench-{stamp}"))?;
        let mut push = Command::new(&s.bin);
        push.args(["--output", "json", "push"]).current_dir(&s.dir);
        s.aws_env(&mut push, &endpoint);
        let out = push.output()?;
        if !out.status.success() {
            bail!("push failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let last = String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .to_owned();
        let result: serde_json::Value = serde_json::from_str(&last)?;
        let digest = result["image"]["digest"]
            .as_str()
            .context("push printed no digest")?
            .to_owned();
        s.pushed = format!("{}/bench-{stamp}@{digest}", s.registry);
        s.ecr_image =
            format!("123456789012.dkr.ecr.us-east-1.amazonaws.com/bench-{stamp}@{digest}");
        Ok((s, endpoint))
    }

    fn aws_env(&self, c: &mut Command, endpoint: &str) {
        c.env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.join("no-aws-credentials"),
            )
            .env("DOCKER_HOST", &self.docker)
            .env("DOCKER_CONFIG", self.dir.join("no-docker-config"))
            .env("DEPLOYCTL_ECR_PUSH_ENDPOINT", &self.registry)
            .env("VENV", &self.venv);
    }

    /// The app's deploy.yaml, naming the app (and so the function) `name`.
    pub fn write_config(&self, name: &str) -> Result<()> {
        fs::write(
            self.dir.join("deploy.yaml"),
            format!(
                "version: \"1.0\"\napp:\n  name: {name}\n  port: 8080\n  health_check_path: /health\nlambda:\n  enabled: true\n  region: us-east-1\n"
            ),
        )?;
        Ok(())
    }

    /// `deployctl deploy lambda` of the pushed image: wall time, mutating calls it counted.
    pub fn deploy(&self, endpoint: &str) -> Result<(Duration, usize)> {
        let mut c = Command::new(&self.bin);
        c.args([
            "--output",
            "json",
            "deploy",
            "lambda",
            "--image",
            &self.pushed,
        ])
        .current_dir(&self.dir);
        self.aws_env(&mut c, endpoint);
        let start = Instant::now();
        let out = c.output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "deployctl deploy failed: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let result: serde_json::Value =
            serde_json::from_str(text.lines().last().unwrap_or_default())?;
        let mutating = result["aws_calls"]["mutating"].as_u64().unwrap_or(0) as usize;
        Ok((took, mutating))
    }

    /// One of the AWS CLI scripts for function `fname`: wall time.
    pub fn script(&self, body: &str, fname: &str, endpoint: &str) -> Result<Duration> {
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(body)
            .env("FN", fname)
            .env("IMAGE", &self.ecr_image);
        self.aws_env(&mut c, endpoint);
        let start = Instant::now();
        let out = c.output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "the AWS CLI script failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    }
}

/// The median, in seconds.
pub(crate) fn median(v: &[Duration]) -> f64 {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).map_or(0.0, Duration::as_secs_f64)
}

pub fn lambda() -> Result<i32> {
    let (setup, endpoint) = Setup::new("lambda")?;
    let stamp = setup.stamp;
    let (mut ours_first, mut ours_again, mut theirs_first, mut theirs_again) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut our_mutating = (0, 0);
    for i in 0..RUNS {
        step(&format!("run {}/{RUNS}", i + 1));
        setup.write_config(&format!("bench-d{stamp}-{i}"))?;
        let (t1, m1) = setup.deploy(&endpoint)?;
        let (t2, m2) = setup.deploy(&endpoint)?;
        ours_first.push(t1);
        ours_again.push(t2);
        our_mutating = (m1, m2);

        let fname = format!("bench-s{stamp}-{i}");
        theirs_first.push(setup.script(SCRIPT_DEPLOY, &fname, &endpoint)?);
        theirs_again.push(setup.script(SCRIPT_REDEPLOY, &fname, &endpoint)?);
        println!(
            "    deployctl first {:.2}s again {:.3}s   aws cli script first {:.2}s again {:.2}s",
            ours_first[i].as_secs_f64(),
            ours_again[i].as_secs_f64(),
            theirs_first[i].as_secs_f64(),
            theirs_again[i].as_secs_f64()
        );
    }
    let (of, oa, tf, ta) = (
        median(&ours_first),
        median(&ours_again),
        median(&theirs_first),
        median(&theirs_again),
    );
    println!(
        "\nbench lambda: against moto_server, same pushed image, {RUNS} alternating runs each
  full first deploy   deployctl median {of:.2}s ({} mutating calls)   aws cli script median {tf:.2}s ({} mutating calls)
  unchanged redeploy  deployctl median {oa:.3}s ({} mutating calls)   aws cli script median {ta:.2}s ({} mutating calls)
  ratio first deploy deployctl/script = {:.3} (target <= 0.2)
  ratio redeploy     deployctl/script = {:.3}; deployctl redeploy {oa:.3}s (target: 0 mutating calls and <= 0.5 s)",
        our_mutating.0,
        mutating_calls(SCRIPT_DEPLOY),
        our_mutating.1,
        mutating_calls(SCRIPT_REDEPLOY),
        of / tf,
        oa / ta,
    );
    Ok(0)
}

/// Copies the files (not the directories) of `from` into `to`.
pub(crate) fn copy_app(from: &std::path::Path, to: &std::path::Path) -> Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            fs::copy(entry.path(), to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
