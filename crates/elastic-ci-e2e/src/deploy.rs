//! What every deployment of the stack on the local AWS emulator shares: the template
//! rendered with moto's images, the scaler's code where the template reads it, and the
//! launch template's UserData read back.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, ensure};
use base64::Engine;
use elastic_ci_testkit::moto::{Moto, REGION};
use xtask::{project, template};

use crate::moto_api::{MotoApi, xml_first};

/// One of moto's fake x86_64 images, the rendered template's `linuxamd64` AMI.
pub const AMD64_AMI: &str = "ami-12c6146b";
/// One of moto's fake arm64 images, the rendered template's `linuxarm64` AMI.
pub const ARM64_AMI: &str = "ami-0e9271c829888680e";
/// The smallest valid zip archive (an empty one): moto stores a function's code but
/// never runs it.
pub const EMPTY_ZIP: &[u8] = b"PK\x05\x06\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// The template as `cargo xtask template` renders it, with moto's images for the
/// emulator's region and the scaler zips in `<lambda_bucket_prefix>-<region>`.
pub fn render_template(version: &str, lambda_bucket_prefix: &str) -> anyhow::Result<String> {
    let source_path = project::root().join(template::SOURCE);
    let source = std::fs::read_to_string(&source_path)
        .with_context(|| format!("failed to read {}", source_path.display()))?;
    let mappings = template::parse_mappings(
        &format!("{REGION}:\n  linuxamd64: {AMD64_AMI}\n  linuxarm64: {ARM64_AMI}\n"),
        Path::new("moto's images"),
    )?;
    template::render(
        &source,
        &template::RenderOptions {
            version: version.to_owned(),
            ami_mappings: Some(mappings),
            lambda_bucket_prefix: lambda_bucket_prefix.to_owned(),
        },
    )
}

/// Puts a placeholder zip at both keys a rendered template reads the scaler's code
/// from, in the emulator region's bucket (created if missing).
pub async fn upload_scaler_zips(moto: &Moto, rendered_template: &str) -> anyhow::Result<()> {
    let zips = template::scaler_zips(rendered_template)?;
    let bucket = format!("{}-{REGION}", zips.bucket_prefix);
    if let Err(error) = moto.s3().create_bucket().bucket(&bucket).send().await {
        let error = error.into_service_error();
        ensure!(
            error.is_bucket_already_owned_by_you(),
            "failed to create bucket {bucket}: {error}"
        );
    }
    for key in [&zips.x86_64_key, &zips.arm64_key] {
        moto.put_object(&bucket, key, EMPTY_ZIP).await;
    }
    Ok(())
}

/// The inputs a UserData document hands the bootstrapper, and the line count its
/// shell part checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInputs {
    /// The `NAME=value` lines of the quoted heredoc, in order.
    pub lines: Vec<(String, String)>,
    /// The count the shell part compares the written file's lines with.
    pub expected_lines: usize,
    /// The whole shell part, from `#!/bin/bash` (or `<powershell>` on Windows).
    pub shell_part: String,
}

impl BootInputs {
    /// The value of input `name`, if the UserData has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.lines.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// The value of input `name`, for tests: panics when the UserData lacks it.
    pub fn value(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| panic!("{name} is not in the UserData"))
    }

    /// The input names.
    pub fn names(&self) -> BTreeSet<String> {
        self.lines.iter().map(|(name, _)| name.clone()).collect()
    }
}

/// Reads the shell part of a UserData document (rendered, or the template's `!Sub`):
/// the Linux one's quoted heredoc, or the Windows one's single-quoted here-string.
pub fn parse_user_data(user_data: &str) -> anyhow::Result<BootInputs> {
    if user_data.contains("<powershell>") {
        return parse_windows_user_data(user_data);
    }
    let start = user_data.find("#!/bin/bash").context("the UserData has no shell part")?;
    let shell_part = match user_data[start..].find("\n--==ELASTIC-CI==--") {
        Some(end) => &user_data[start..start + end],
        None => &user_data[start..],
    };
    let shell_part = shell_part.trim_end().to_owned();
    ensure!(
        shell_part.contains("exec /usr/local/bin/elastic-ci-bootstrap boot"),
        "the UserData does not run elastic-ci-bootstrap boot"
    );
    let body = shell_part
        .split_once("<<'ELASTIC_CI_BOOT_INPUTS'\n")
        .and_then(|(_, rest)| rest.split_once("\nELASTIC_CI_BOOT_INPUTS\n"))
        .map(|(body, _)| body)
        .context("the UserData has no ELASTIC_CI_BOOT_INPUTS heredoc")?;
    let lines = input_lines(body)?;
    let expected_lines = shell_part
        .split_once("\")\" -ne ")
        .and_then(|(_, rest)| rest.split(' ').next())
        .and_then(|count| count.parse().ok())
        .context("the UserData does not check its input file's line count")?;
    Ok(BootInputs { lines, expected_lines, shell_part })
}

/// The PowerShell part of a Windows UserData document.
fn parse_windows_user_data(user_data: &str) -> anyhow::Result<BootInputs> {
    let start = user_data.find("<powershell>").context("the UserData has no PowerShell part")?;
    let end = user_data[start..]
        .find("</powershell>")
        .context("the UserData's PowerShell part is not closed")?;
    let shell_part = user_data[start..start + end + "</powershell>".len()].to_owned();
    ensure!(
        shell_part.contains("& 'C:\\buildkite-agent\\bin\\elastic-ci-bootstrap.exe' boot"),
        "the UserData does not run elastic-ci-bootstrap.exe boot"
    );
    let body = shell_part
        .split_once("$inputs = @'\n")
        .and_then(|(_, rest)| rest.split_once("\n'@\n"))
        .map(|(body, _)| body)
        .context("the UserData has no $inputs here-string")?;
    let lines = input_lines(body)?;
    let expected_lines = shell_part
        .split_once("$lines.Count -ne ")
        .and_then(|(_, rest)| rest.split(')').next())
        .and_then(|count| count.parse().ok())
        .context("the UserData does not check its inputs' line count")?;
    Ok(BootInputs { lines, expected_lines, shell_part })
}

fn input_lines(body: &str) -> anyhow::Result<Vec<(String, String)>> {
    body.lines()
        .map(|line| {
            line.split_once('=')
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .with_context(|| format!("UserData input {line:?} is not NAME=value"))
        })
        .collect()
}

/// A launch template's latest version: its data as XML, and its decoded UserData.
pub async fn launch_template(api: &MotoApi, id: &str) -> anyhow::Result<(String, BootInputs)> {
    let xml = api
        .try_query(
            "ec2",
            "2016-11-15",
            &[
                ("Action", "DescribeLaunchTemplateVersions"),
                ("LaunchTemplateId", id),
                ("LaunchTemplateVersion.1", "$Latest"),
            ],
        )
        .await?;
    let encoded = xml_first(&xml, "userData").context("the launch template has no UserData")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .context("the UserData is not base64")?;
    let user_data = String::from_utf8(decoded).context("the UserData is not UTF-8")?;
    let inputs = parse_user_data(&user_data)?;
    Ok((xml, inputs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_boot_inputs_of_the_user_data() {
        let user_data = "#!/bin/bash\ncat > \"$inputs\" <<'ELASTIC_CI_BOOT_INPUTS'\nBUILDKITE_QUEUE=default\nBUILDKITE_AGENT_TAGS=a=b,c=d\nELASTIC_CI_BOOT_INPUTS\nif [ \"$(wc -l < \"$inputs\")\" -ne 2 ]; then exit 1; fi\nexec /usr/local/bin/elastic-ci-bootstrap boot\n";
        let inputs = parse_user_data(user_data).unwrap();
        assert_eq!(
            inputs.lines,
            [
                ("BUILDKITE_QUEUE".to_owned(), "default".to_owned()),
                ("BUILDKITE_AGENT_TAGS".to_owned(), "a=b,c=d".to_owned())
            ]
        );
        assert_eq!(inputs.expected_lines, 2);
        assert_eq!(inputs.get("BUILDKITE_QUEUE"), Some("default"));
        let error = parse_user_data("#!/bin/bash\nexec /usr/local/bin/elastic-ci-bootstrap boot\n")
            .unwrap_err();
        assert!(error.to_string().contains("heredoc"), "{error}");
    }

    #[test]
    fn reads_the_boot_inputs_of_the_windows_user_data() {
        let user_data = "<powershell>\n$inputs = @'\nBUILDKITE_QUEUE=windows\nBUILDKITE_AGENT_TAGS=a=b\n'@\nif ($lines.Count -ne 2) { exit 1 }\n& 'C:\\buildkite-agent\\bin\\elastic-ci-bootstrap.exe' boot\n</powershell>\n<persist>true</persist>\n";
        let inputs = parse_user_data(user_data).unwrap();
        assert_eq!(inputs.value("BUILDKITE_AGENT_TAGS"), "a=b");
        assert_eq!(inputs.expected_lines, 2);
        assert!(inputs.shell_part.ends_with("</powershell>"));
        let error = parse_user_data("<powershell>\n</powershell>").unwrap_err();
        assert!(error.to_string().contains("elastic-ci-bootstrap.exe"), "{error}");
    }
}

/// A VPC made outside any stack, as a user's existing network is: two subnets in two
/// zones, an internet gateway and a route table with a default route to it, associated
/// with both subnets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub vpc_id: String,
    pub subnets: Vec<String>,
    pub internet_gateway: String,
}

const EC2_VERSION: &str = "2016-11-15";

/// One EC2 Query call; `tag` is the element of the answer that is returned.
async fn ec2_call(api: &MotoApi, params: &[(&str, &str)], tag: &str) -> anyhow::Result<String> {
    let xml = api.try_query("ec2", EC2_VERSION, params).await?;
    xml_first(&xml, tag).with_context(|| format!("{:?} answered no {tag}: {xml}", params[0]))
}

/// Builds a [`Network`] in the emulator with explicit EC2 calls on `10.<octet>.0.0/16`.
/// Stacks that create their own VPC cannot be relied on for routing there: moto's
/// CloudFormation does not always associate the stack's route table with its subnets.
pub async fn create_network(api: &MotoApi, octet: u8) -> anyhow::Result<Network> {
    let vpc_id = ec2_call(
        api,
        &[("Action", "CreateVpc"), ("CidrBlock", &format!("10.{octet}.0.0/16"))],
        "vpcId",
    )
    .await?;
    let mut subnets = Vec::new();
    for (third, zone) in [(1, "a"), (2, "b")] {
        let params = [
            ("Action", "CreateSubnet"),
            ("VpcId", vpc_id.as_str()),
            ("CidrBlock", &format!("10.{octet}.{third}.0/24")),
            ("AvailabilityZone", &format!("{REGION}{zone}")),
        ];
        subnets.push(ec2_call(api, &params, "subnetId").await?);
    }
    let internet_gateway =
        ec2_call(api, &[("Action", "CreateInternetGateway")], "internetGatewayId").await?;
    api.try_query(
        "ec2",
        EC2_VERSION,
        &[
            ("Action", "AttachInternetGateway"),
            ("InternetGatewayId", &internet_gateway),
            ("VpcId", &vpc_id),
        ],
    )
    .await?;
    let route_table =
        ec2_call(api, &[("Action", "CreateRouteTable"), ("VpcId", &vpc_id)], "routeTableId")
            .await?;
    api.try_query(
        "ec2",
        EC2_VERSION,
        &[
            ("Action", "CreateRoute"),
            ("RouteTableId", &route_table),
            ("DestinationCidrBlock", "0.0.0.0/0"),
            ("GatewayId", &internet_gateway),
        ],
    )
    .await?;
    for subnet in &subnets {
        let params = [
            ("Action", "AssociateRouteTable"),
            ("RouteTableId", &route_table),
            ("SubnetId", subnet),
        ];
        ec2_call(api, &params, "associationId").await?;
    }
    Ok(Network { vpc_id, subnets, internet_gateway })
}

/// A stack deployed on the emulator.
#[derive(Debug, Clone)]
pub struct DeployedStack {
    pub name: String,
    pub outputs: std::collections::BTreeMap<String, String>,
    /// Logical id to (resource type, physical id).
    pub resources: std::collections::BTreeMap<String, (String, String)>,
}

impl DeployedStack {
    /// The physical id of a resource, by the template's logical id.
    pub fn physical(&self, logical: &str) -> anyhow::Result<&str> {
        self.resources
            .get(logical)
            .map(|(_, physical)| physical.as_str())
            .with_context(|| format!("stack {} has no {logical}", self.name))
    }
}

/// Deploys `rendered_template` as stack `name` with `parameters` (the rest at their
/// defaults), waits for CREATE_COMPLETE and reads back its outputs and resources. The
/// scaler zips must already be in place ([`upload_scaler_zips`]).
pub async fn create_stack(
    moto: &Moto,
    rendered_template: &str,
    name: &str,
    parameters: &[(String, String)],
) -> anyhow::Result<DeployedStack> {
    use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
    let cloudformation = moto.cloudformation();
    let sdk_parameters: Vec<Parameter> = parameters
        .iter()
        .map(|(key, value)| Parameter::builder().parameter_key(key).parameter_value(value).build())
        .collect();
    cloudformation
        .create_stack()
        .stack_name(name)
        .template_body(rendered_template)
        .set_parameters(Some(sdk_parameters))
        .capabilities(Capability::CapabilityIam)
        .capabilities(Capability::CapabilityNamedIam)
        .send()
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "create_stack {name} failed: {}",
                aws_smithy_types::error::display::DisplayErrorContext(error.into_service_error())
            )
        })?;
    let described = cloudformation
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .with_context(|| format!("failed to describe stack {name}"))?;
    let stack = described.stacks().first().context("the new stack is not described")?;
    ensure!(
        stack.stack_status() == Some(&StackStatus::CreateComplete),
        "stack {name} is {:?}: {}",
        stack.stack_status(),
        stack.stack_status_reason().unwrap_or("no reason given")
    );
    let outputs = stack
        .outputs()
        .iter()
        .filter_map(|output| {
            Some((output.output_key()?.to_owned(), output.output_value()?.to_owned()))
        })
        .collect();
    let listed = cloudformation
        .list_stack_resources()
        .stack_name(name)
        .send()
        .await
        .with_context(|| format!("failed to list the resources of stack {name}"))?;
    let mut resources = std::collections::BTreeMap::new();
    for summary in listed.stack_resource_summaries() {
        if let (Some(logical), Some(kind), Some(physical)) =
            (summary.logical_resource_id(), summary.resource_type(), summary.physical_resource_id())
        {
            resources.insert(logical.to_owned(), (kind.to_owned(), physical.to_owned()));
        }
    }
    Ok(DeployedStack { name: name.to_owned(), outputs, resources })
}

/// Renders the template, puts the scaler zips in place and deploys stack `name` with
/// `parameters`: what a test needs to have a stack to operate on.
pub async fn deploy_stack(
    moto: &Moto,
    lambda_bucket_prefix: &str,
    name: &str,
    parameters: &[(String, String)],
) -> anyhow::Result<DeployedStack> {
    let version = template::default_version(&project::root());
    let rendered = render_template(&version, lambda_bucket_prefix)?;
    upload_scaler_zips(moto, &rendered).await?;
    create_stack(moto, &rendered, name, parameters).await
}
