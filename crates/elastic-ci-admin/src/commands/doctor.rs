//! `elastic-ci doctor`: one pass/fail line per prerequisite of a working stack, with
//! what to do about each failure.

use std::io::Write;
use std::time::Duration;

use clap::Args;
use elastic_ci_aws::ec2::ImageState;
use elastic_ci_aws::ec2::SubnetRoute;
use elastic_ci_buildkite::{AgentMetrics, AgentMetricsClient, ClientSettings};
use elastic_ci_core::secret::agent_token;
use serde::Serialize;

use crate::commands::status::DEFAULT_AGENT_ENDPOINT;
use crate::state::read_polls;
use crate::target::LogSource;
use crate::{Context, StackArgs};

/// How recent a successful poll must be.
const POLL_WITHIN: Duration = Duration::from_secs(10 * 60);

/// Arguments of `elastic-ci doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub stack: StackArgs,

    /// Print the checks as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Skip,
}

/// One check's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub verdict: Verdict,
    pub detail: String,
    /// What to do, on failure.
    pub fix: Option<String>,
}

fn pass(name: &'static str, detail: String) -> Check {
    Check { name, verdict: Verdict::Pass, detail, fix: None }
}

fn fail(name: &'static str, detail: String, fix: &str) -> Check {
    Check { name, verdict: Verdict::Fail, detail, fix: Some(fix.to_owned()) }
}

fn skip(name: &'static str, detail: &str) -> Check {
    Check { name, verdict: Verdict::Skip, detail: detail.to_owned(), fix: None }
}

/// Runs `doctor`: exit status 1 when a check fails.
pub async fn doctor(
    context: &Context,
    args: &DoctorArgs,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let checks = vec![
        check_image(context).await,
        check_scaler_zip(context).await,
        check_token(context).await,
        check_subnets(context).await,
        check_polls(context).await,
        check_buildkite(context).await,
    ];
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&checks)?)?;
    } else {
        for check in &checks {
            let verdict = match check.verdict {
                Verdict::Pass => "PASS",
                Verdict::Fail => "FAIL",
                Verdict::Skip => "SKIP",
            };
            let fix = check.fix.as_deref().map_or_else(String::new, |fix| format!(" -> {fix}"));
            writeln!(out, "{verdict} {}: {}{fix}", check.name, check.detail)?;
        }
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|check| check.verdict == Verdict::Fail)
        .map(|check| check.name)
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} checks failed: {}", failed.len(), failed.join(", "))
    }
}

async fn check_image(context: &Context) -> Check {
    const NAME: &str = "ami";
    let region = &context.clients.region;
    let Some(template) = &context.target.launch_template else {
        return skip(NAME, "the stack names no launch template");
    };
    let image = match context.clients.network.launch_template_image(region, template).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            return fail(
                NAME,
                format!("launch template {template} has no image"),
                "update the stack so that it recreates its launch template",
            );
        }
        Err(error) => {
            return fail(
                NAME,
                format!("could not read launch template {template}: {error}"),
                "check the credentials' ec2:DescribeLaunchTemplateVersions permission",
            );
        }
    };
    match context.clients.images.describe_image(region, &image).await {
        Ok(Some(found)) if found.state == ImageState::Available => {
            pass(NAME, format!("{image} exists in {region} ({})", found.name))
        }
        Ok(Some(found)) => fail(
            NAME,
            format!("{image} in {region} is {}", found.state),
            "set ImageId (or ImageIdParameter) to an available image with `elastic-ci upgrade --set ImageId=ami-…`",
        ),
        Ok(None) => fail(
            NAME,
            format!("{image} does not exist in {region}"),
            "set ImageId to an image of this region and the instance types' architecture, or upgrade to a release that has one",
        ),
        Err(error) => fail(
            NAME,
            format!("could not describe {image}: {error}"),
            "check the credentials' ec2:DescribeImages permission",
        ),
    }
}

/// The scaler zip's bucket and key, as the template resolves them.
fn scaler_zip(context: &Context, template: &str) -> Option<(String, String)> {
    let document: serde_yaml_ng::Value = serde_yaml_ng::from_str(template).ok()?;
    let release = &document["Mappings"]["ScalerLambda"]["Release"];
    let bucket = match context.target.parameter("ScalerLambdaS3Bucket") {
        Some(bucket) => bucket.to_owned(),
        None => format!("{}-{}", release["BucketPrefix"].as_str()?, context.clients.region),
    };
    let key = match context.target.parameter("ScalerLambdaS3Key") {
        Some(key) => key.to_owned(),
        None => {
            let arch = if context.target.parameter("LambdaArchitecture") == Some("arm64") {
                "arm64"
            } else {
                "amd64"
            };
            release[arch].as_str()?.to_owned()
        }
    };
    Some((bucket, key))
}

async fn check_scaler_zip(context: &Context) -> Check {
    const NAME: &str = "scaler zip";
    if !context.target.cloudformation {
        return skip(NAME, "not checked for a Terraform deployment");
    }
    if context.target.scaler_function.is_none() {
        return skip(NAME, "the stack has no scaler (MinSize equals MaxSize)");
    }
    let template = match context.clients.stacks.template_body(&context.target.name).await {
        Ok(template) => template,
        Err(error) => {
            return fail(
                NAME,
                format!("could not read the stack's template: {error}"),
                "check the credentials' cloudformation:GetTemplate permission",
            );
        }
    };
    let Some((bucket, key)) = scaler_zip(context, &template) else {
        return fail(
            NAME,
            "the stack's template does not name the scaler's zip".to_owned(),
            "set ScalerLambdaS3Bucket and ScalerLambdaS3Key",
        );
    };
    match context.clients.objects.head(&bucket, &key).await {
        Ok(head) => pass(NAME, format!("s3://{bucket}/{key} exists ({} bytes)", head.size)),
        Err(error) if error.is_not_found() => fail(
            NAME,
            format!("s3://{bucket}/{key} does not exist"),
            "upload the scaler's zip there (cargo xtask publish), or set ScalerLambdaS3Bucket and ScalerLambdaS3Key to where it is",
        ),
        Err(error) => fail(
            NAME,
            format!("could not read s3://{bucket}/{key}: {error}"),
            "check the credentials' s3:GetObject permission",
        ),
    }
}

async fn check_token(context: &Context) -> Check {
    const NAME: &str = "agent token";
    let Some(name) = &context.target.token_parameter else {
        return skip(NAME, "the stack names no token parameter");
    };
    match context.clients.parameters.get(name).await {
        Ok(parameter) => {
            let value = parameter.value.expose();
            if value.trim().is_empty() {
                fail(
                    NAME,
                    format!("parameter {name} is empty"),
                    "store the token with `elastic-ci rotate-token --token-file FILE`",
                )
            } else if value.trim() != value {
                fail(
                    NAME,
                    format!(
                        "parameter {name} has whitespace around the token (a trailing newline?)"
                    ),
                    "store it again without it: `elastic-ci rotate-token --token-file FILE` trims it",
                )
            } else {
                pass(NAME, format!("parameter {name} is readable"))
            }
        }
        Err(error) if error.is_not_found() => fail(
            NAME,
            format!("parameter {name} does not exist"),
            "store the token with `elastic-ci rotate-token --token-file FILE`",
        ),
        Err(error) => fail(
            NAME,
            format!("could not read parameter {name}: {error}"),
            "check the credentials' ssm:GetParameter and kms:Decrypt permissions",
        ),
    }
}

async fn check_subnets(context: &Context) -> Check {
    const NAME: &str = "subnets";
    if context.target.subnets.is_empty() {
        return skip(NAME, "the stack names no subnets");
    }
    let mut routes = Vec::new();
    for subnet in &context.target.subnets {
        match context.clients.network.subnet_route(&context.clients.region, subnet).await {
            Ok(SubnetRoute::Out(target)) => routes.push(format!("{subnet} via {target}")),
            Ok(SubnetRoute::Missing) => {
                return fail(
                    NAME,
                    format!("subnet {subnet} does not exist"),
                    "set Subnets to existing subnets of VpcId",
                );
            }
            Ok(SubnetRoute::NoRouteOut) => {
                return fail(
                    NAME,
                    format!("subnet {subnet} has no default route"),
                    "add a 0.0.0.0/0 route to an internet or NAT gateway: agents reach Buildkite, git hosts and registries through it (VPC endpoints reach AWS services only)",
                );
            }
            Err(error) => {
                return fail(
                    NAME,
                    format!("could not describe subnet {subnet}: {error}"),
                    "check the credentials' ec2:DescribeSubnets and ec2:DescribeRouteTables permissions",
                );
            }
        }
    }
    pass(NAME, format!("routes out: {}", routes.join(", ")))
}

async fn check_polls(context: &Context) -> Check {
    const NAME: &str = "scaler polls";
    let Some(group) = context.target.log_groups.get(&LogSource::Scaler) else {
        return skip(NAME, "the stack has no scaler (MinSize equals MaxSize)");
    };
    match read_polls(&context.clients, group, context.now.checked_sub(POLL_WITHIN)).await {
        Ok(polls) => match polls.iter().rev().find(|poll| poll.succeeded()) {
            Some(poll) => pass(
                NAME,
                format!(
                    "last successful poll at {}",
                    elastic_ci_core::lifecycle::format_rfc3339(poll.time)
                ),
            ),
            None => {
                let last_error = polls.iter().rev().find_map(|poll| poll.error.clone());
                let detail = match last_error {
                    Some(error) => {
                        format!("no successful poll in 10 minutes; the last failed: {error}")
                    }
                    None => "no poll in 10 minutes".to_owned(),
                };
                fail(
                    NAME,
                    detail,
                    "run `elastic-ci why`, and read `elastic-ci logs --source scaler`",
                )
            }
        },
        Err(error) => fail(
            NAME,
            format!("{error:#}"),
            "check the credentials' logs:FilterLogEvents permission",
        ),
    }
}

async fn check_buildkite(context: &Context) -> Check {
    const NAME: &str = "buildkite";
    let Some(name) = &context.target.token_parameter else {
        return skip(NAME, "the stack names no token parameter");
    };
    let Ok(stored) = context.clients.parameters.get(name).await else {
        return skip(NAME, "the token could not be read (see the agent token check)");
    };
    let Ok(token) = agent_token(&stored.value, name) else {
        return skip(NAME, "the token is empty (see the agent token check)");
    };
    let endpoint_text = context.target.parameter("AgentEndpoint").unwrap_or(DEFAULT_AGENT_ENDPOINT);
    let Some(endpoint) = elastic_ci_core::uri::parse_agent_endpoint(endpoint_text) else {
        return fail(
            NAME,
            format!("AgentEndpoint {endpoint_text:?} is not an https:// URL"),
            "set AgentEndpoint to https://agent.buildkite.com/v3",
        );
    };
    let client = match AgentMetricsClient::new(&endpoint, &ClientSettings::standard()) {
        Ok(client) => client,
        Err(error) => return fail(NAME, error.to_string(), "report this as a bug"),
    };
    let queue = context.target.parameter("BuildkiteQueue").unwrap_or("default");
    match client.queue_metrics(queue, &token).await {
        Ok(report) => pass(
            NAME,
            format!(
                "{endpoint_text} accepts the token (organization {})",
                report.organization_slug
            ),
        ),
        Err(error) if error.is_unauthorized() => fail(
            NAME,
            format!("{endpoint_text} refused the token"),
            "create an agent token in Buildkite and store it with `elastic-ci rotate-token`",
        ),
        Err(error) => fail(NAME, error.to_string(), "check that the endpoint is reachable"),
    }
}
