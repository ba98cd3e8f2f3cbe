//! EC2: the image operations the release tooling needs, across regions (describe,
//! copy, make public; list an account's images, deregister them and delete their
//! snapshots), and what the operator's tool reads of the network and the instances
//! ([`Network`]).
//!
//! Unlike the other adapters this one does not use an AWS SDK crate: `aws-sdk-ec2` is
//! by far the largest service crate (several hundred operations, minutes of compile
//! time on a two-core machine, for every build of the workspace), and we need six
//! operations of EC2's plain Query protocol. [`Ec2MachineImages`] sends them as
//! form-encoded POSTs signed with SigV4 (`aws-sigv4`, already in the SDK's dependency
//! tree), with the credentials, endpoint overrides and region names of the shared
//! `SdkConfig`, and reads the few fields it needs from the XML answer.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_types::service_config::ServiceConfigKey;
use elastic_ci_core::backoff::Backoff;
use tracing::{instrument, warn};

use crate::error::{AwsError, AwsErrorKind, classify};
use crate::retry::retry;
use crate::xml::Element;

/// The EC2 Query API version every request names.
const API_VERSION: &str = "2016-11-15";

/// Attempts per call for throttling and transport failures, first try included.
const CALL_BACKOFF: Backoff =
    Backoff::doubling(4, Duration::from_millis(250), Duration::from_secs(2));

/// One image, as far as the release tooling cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineImage {
    pub image_id: String,
    pub name: String,
    pub state: ImageState,
    /// Whether every account may launch it.
    pub public: bool,
}

/// Where an image is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageState {
    /// Still being created or copied.
    Pending,
    Available,
    /// Any state an image does not come back from (`failed`, `error`, `invalid`,
    /// `deregistered`, `disabled`), with EC2's word for it.
    Unusable(String),
}

impl ImageState {
    fn parse(state: &str) -> ImageState {
        match state {
            "pending" | "transient" => ImageState::Pending,
            "available" => ImageState::Available,
            other => ImageState::Unusable(other.to_owned()),
        }
    }
}

impl fmt::Display for ImageState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageState::Pending => f.write_str("pending"),
            ImageState::Available => f.write_str("available"),
            ImageState::Unusable(state) => f.write_str(state),
        }
    }
}

/// An image of this account, with what deciding whether to keep it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedImage {
    pub image_id: String,
    pub name: String,
    pub state: ImageState,
    /// `x86_64` or `arm64`.
    pub architecture: String,
    /// When EC2 made it, as EC2 writes it (ISO 8601, UTC, so it sorts as text).
    pub creation_date: String,
    /// The EBS snapshots behind its block devices.
    pub snapshot_ids: Vec<String>,
    /// Its tags, by key.
    pub tags: BTreeMap<String, String>,
}

/// A copy of an image into another region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyImageRequest {
    pub source_region: String,
    pub source_image_id: String,
    /// The region the copy is made in.
    pub region: String,
    pub name: String,
    pub description: Option<String>,
}

#[async_trait]
pub trait MachineImages: Send + Sync {
    /// The image `image_id` in `region`, or `None` when the region has no such image.
    async fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<MachineImage>, AwsError>;

    /// Starts a copy (with the source's tags) and returns the new image's id; the copy
    /// is `Pending` until EC2 has finished it.
    async fn copy_image(&self, request: &CopyImageRequest) -> Result<String, AwsError>;

    /// Lets every account launch the image (launch permission group `all`).
    async fn make_public(&self, region: &str, image_id: &str) -> Result<(), AwsError>;

    /// Every image this account owns in `region` whose name matches `name_pattern`
    /// (EC2's wildcards: `*` and `?`).
    async fn owned_images(
        &self,
        region: &str,
        name_pattern: &str,
    ) -> Result<Vec<OwnedImage>, AwsError>;

    /// Deregisters an image; its snapshots stay until deleted.
    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), AwsError>;

    /// Deletes an EBS snapshot (one no registered image uses any more).
    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<(), AwsError>;
}

/// [`MachineImages`] over EC2's Query API.
#[derive(Debug, Clone)]
pub struct Ec2MachineImages {
    http: reqwest::Client,
    credentials: Option<SharedCredentialsProvider>,
    /// An endpoint for every region (an emulator), or `None` for the regional ones.
    endpoint_url: Option<String>,
}

impl Ec2MachineImages {
    /// Uses the credentials of `sdk_config` and its endpoint override, if any: the
    /// EC2-specific one (`AWS_ENDPOINT_URL_EC2`, or `endpoint_url` in an `[services]`
    /// profile section) first, then the general one (`AWS_ENDPOINT_URL`).
    pub fn new(sdk_config: &SdkConfig) -> Ec2MachineImages {
        let service_endpoint = sdk_config.service_config().and_then(|config| {
            let key = ServiceConfigKey::builder()
                .service_id("EC2")
                .env("AWS_ENDPOINT_URL")
                .profile("endpoint_url")
                .build()
                .ok()?;
            config.load_config(key)
        });
        let endpoint_url =
            service_endpoint.or_else(|| sdk_config.endpoint_url().map(str::to_owned));
        Ec2MachineImages {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap_or_default(),
            credentials: sdk_config.credentials_provider(),
            endpoint_url,
        }
    }

    fn endpoint(&self, region: &str) -> String {
        match &self.endpoint_url {
            Some(url) => url.clone(),
            None if region.starts_with("cn-") => format!("https://ec2.{region}.amazonaws.com.cn/"),
            None => format!("https://ec2.{region}.amazonaws.com/"),
        }
    }

    /// Sends one action, retrying throttling and transport failures; returns the XML
    /// body of a successful answer.
    async fn call(
        &self,
        region: &str,
        action: &'static str,
        resource: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        retry(
            CALL_BACKOFF,
            |error: &AwsError| {
                matches!(
                    error.kind,
                    AwsErrorKind::Throttled | AwsErrorKind::Transport | AwsErrorKind::Service
                )
            },
            |retrying| warn!(error = %retrying.error, attempt = retrying.attempt.number, "retrying"),
            |_| self.call_once(region, action, resource, params),
        )
        .await
    }

    async fn call_once(
        &self,
        region: &str,
        action: &'static str,
        resource: &str,
        params: &[(&str, &str)],
    ) -> Result<String, AwsError> {
        let fail = |kind, message: String| AwsError::new(kind, action, resource, message);
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("Action", action).append_pair("Version", API_VERSION);
            for (name, value) in params {
                form.append_pair(name, value);
            }
            form.finish()
        };

        let provider = self.credentials.as_ref().ok_or_else(|| {
            fail(AwsErrorKind::AccessDenied, "no credentials are configured".to_owned())
        })?;
        let credentials = provider.provide_credentials().await.map_err(|error| {
            fail(AwsErrorKind::AccessDenied, format!("no credentials: {error}"))
        })?;
        let identity = credentials.into();
        let signing_params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("ec2")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| fail(AwsErrorKind::Validation, format!("signing: {error}")))?
            .into();
        let url = self.endpoint(region);
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let signable = SignableRequest::new(
            "POST",
            &url,
            [("content-type", content_type)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(|error| fail(AwsErrorKind::Validation, format!("signing: {error}")))?;
        let (instructions, _signature) = sign(signable, &signing_params)
            .map_err(|error| fail(AwsErrorKind::Validation, format!("signing: {error}")))?
            .into_parts();

        let mut request = self.http.post(&url).header("content-type", content_type);
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| fail(AwsErrorKind::Transport, error.to_string()))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|error| {
            fail(AwsErrorKind::Transport, format!("reading the answer: {error}"))
        })?;
        if (200..300).contains(&status) {
            return Ok(text);
        }
        let answer = Element::parse(&text);
        let code = answer.as_ref().and_then(|answer| answer.find_text("Code"));
        let message =
            answer.as_ref().and_then(|answer| answer.find_text("Message")).unwrap_or_default();
        Err(AwsError {
            kind: classify(code.as_deref(), status),
            operation: action,
            resource: resource.to_owned(),
            code,
            message,
        })
    }
}

#[async_trait]
impl MachineImages for Ec2MachineImages {
    #[instrument(skip_all, fields(region, image_id))]
    async fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<MachineImage>, AwsError> {
        let resource = format!("{region}/{image_id}");
        let answer = match self
            .call(region, "DescribeImages", &resource, &[("ImageId.1", image_id)])
            .await
        {
            Ok(answer) => answer,
            Err(error) if error.kind == AwsErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(parse_image(&answer))
    }

    #[instrument(skip_all, fields(source = %request.source_image_id, region = %request.region))]
    async fn copy_image(&self, request: &CopyImageRequest) -> Result<String, AwsError> {
        let resource =
            format!("{}/{} to {}", request.source_region, request.source_image_id, request.region);
        let mut params = vec![
            ("SourceRegion", request.source_region.as_str()),
            ("SourceImageId", request.source_image_id.as_str()),
            ("Name", request.name.as_str()),
            ("CopyImageTags", "true"),
        ];
        if let Some(description) = &request.description {
            params.push(("Description", description.as_str()));
        }
        let answer = self.call(&request.region, "CopyImage", &resource, &params).await?;
        Element::parse(&answer).and_then(|answer| answer.find_text("imageId")).ok_or_else(|| {
            AwsError::new(AwsErrorKind::Service, "CopyImage", resource, "the answer has no imageId")
        })
    }

    #[instrument(skip_all, fields(region, image_id))]
    async fn make_public(&self, region: &str, image_id: &str) -> Result<(), AwsError> {
        let resource = format!("{region}/{image_id}");
        self.call(
            region,
            "ModifyImageAttribute",
            &resource,
            &[("ImageId", image_id), ("LaunchPermission.Add.1.Group", "all")],
        )
        .await?;
        Ok(())
    }

    #[instrument(skip_all, fields(region, name_pattern))]
    async fn owned_images(
        &self,
        region: &str,
        name_pattern: &str,
    ) -> Result<Vec<OwnedImage>, AwsError> {
        let resource = format!("{region}/{name_pattern}");
        let answer = self
            .call(
                region,
                "DescribeImages",
                &resource,
                &[
                    ("Owner.1", "self"),
                    ("Filter.1.Name", "name"),
                    ("Filter.1.Value.1", name_pattern),
                ],
            )
            .await?;
        Ok(parse_owned_images(&answer))
    }

    #[instrument(skip_all, fields(region, image_id))]
    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), AwsError> {
        let resource = format!("{region}/{image_id}");
        self.call(region, "DeregisterImage", &resource, &[("ImageId", image_id)]).await?;
        Ok(())
    }

    #[instrument(skip_all, fields(region, snapshot_id))]
    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<(), AwsError> {
        let resource = format!("{region}/{snapshot_id}");
        self.call(region, "DeleteSnapshot", &resource, &[("SnapshotId", snapshot_id)]).await?;
        Ok(())
    }
}

/// Every image of a DescribeImages answer.
fn parse_owned_images(answer: &str) -> Vec<OwnedImage> {
    let Some(answer) = Element::parse(answer) else { return Vec::new() };
    let Some(images) = answer.find("imagesSet") else { return Vec::new() };
    images
        .items()
        .filter_map(|item| {
            let snapshot_ids = item
                .children_named("blockDeviceMapping")
                .flat_map(Element::items)
                .filter_map(|mapping| mapping.find_text("snapshotId"))
                .collect();
            let tags = item
                .children_named("tagSet")
                .flat_map(Element::items)
                .filter_map(|tag| Some((tag.child_text("key")?, tag.child_text("value")?)))
                .collect();
            Some(OwnedImage {
                image_id: item.child_text("imageId")?,
                name: item.child_text("name").unwrap_or_default(),
                state: ImageState::parse(&item.child_text("imageState")?),
                architecture: item.child_text("architecture").unwrap_or_default(),
                creation_date: item.child_text("creationDate").unwrap_or_default(),
                snapshot_ids,
                tags,
            })
        })
        .collect()
}

/// Whether a subnet can reach the internet, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubnetRoute {
    /// No such subnet.
    Missing,
    /// The subnet's route table (or its VPC's main one) has no default route.
    NoRouteOut,
    /// A default route (`0.0.0.0/0`) through this target: an internet, NAT or transit
    /// gateway, an instance or a peering.
    Out(String),
}

/// What the operator's tool reads of the network and the instances.
#[async_trait]
pub trait Network: Send + Sync {
    /// Whether `subnet_id` exists and has a default route.
    async fn subnet_route(&self, region: &str, subnet_id: &str) -> Result<SubnetRoute, AwsError>;

    /// The image id of a launch template's latest version; `None` for a missing
    /// template.
    async fn launch_template_image(
        &self,
        region: &str,
        launch_template_id: &str,
    ) -> Result<Option<String>, AwsError>;

    /// The launch time of each of `instance_ids` that EC2 knows.
    async fn launch_times(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, SystemTime>, AwsError>;
}

#[async_trait]
impl Network for Ec2MachineImages {
    #[instrument(skip_all, fields(region, subnet_id))]
    async fn subnet_route(&self, region: &str, subnet_id: &str) -> Result<SubnetRoute, AwsError> {
        let subnets = match self
            .call(region, "DescribeSubnets", subnet_id, &[("SubnetId.1", subnet_id)])
            .await
        {
            Ok(answer) => answer,
            Err(error) if error.kind == AwsErrorKind::NotFound => return Ok(SubnetRoute::Missing),
            Err(error) if error.code.as_deref() == Some("InvalidSubnetID.NotFound") => {
                return Ok(SubnetRoute::Missing);
            }
            Err(error) => return Err(error),
        };
        let Some(vpc_id) = Element::parse(&subnets).and_then(|answer| answer.find_text("vpcId"))
        else {
            return Ok(SubnetRoute::Missing);
        };
        let associated = self
            .call(
                region,
                "DescribeRouteTables",
                subnet_id,
                &[("Filter.1.Name", "association.subnet-id"), ("Filter.1.Value.1", subnet_id)],
            )
            .await?;
        let tables = if Element::parse(&associated)
            .is_some_and(|answer| answer.find_text("routeTableId").is_some())
        {
            associated
        } else {
            self.call(
                region,
                "DescribeRouteTables",
                subnet_id,
                &[
                    ("Filter.1.Name", "vpc-id"),
                    ("Filter.1.Value.1", &vpc_id),
                    ("Filter.2.Name", "association.main"),
                    ("Filter.2.Value.1", "true"),
                ],
            )
            .await?
        };
        Ok(default_route(&tables).map_or(SubnetRoute::NoRouteOut, SubnetRoute::Out))
    }

    #[instrument(skip_all, fields(region, launch_template_id))]
    async fn launch_template_image(
        &self,
        region: &str,
        launch_template_id: &str,
    ) -> Result<Option<String>, AwsError> {
        let answer = match self
            .call(
                region,
                "DescribeLaunchTemplateVersions",
                launch_template_id,
                &[("LaunchTemplateId", launch_template_id), ("LaunchTemplateVersion.1", "$Latest")],
            )
            .await
        {
            Ok(answer) => answer,
            Err(error) if error.kind == AwsErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        Ok(Element::parse(&answer).and_then(|answer| answer.find_text("imageId")))
    }

    #[instrument(skip_all, fields(region, instances = instance_ids.len()))]
    async fn launch_times(
        &self,
        region: &str,
        instance_ids: &[String],
    ) -> Result<BTreeMap<String, SystemTime>, AwsError> {
        if instance_ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let names: Vec<String> =
            (1..=instance_ids.len()).map(|index| format!("InstanceId.{index}")).collect();
        let params: Vec<(&str, &str)> =
            names.iter().map(String::as_str).zip(instance_ids.iter().map(String::as_str)).collect();
        let answer =
            self.call(region, "DescribeInstances", &instance_ids.join(","), &params).await?;
        Ok(parse_launch_times(&answer))
    }
}

/// The target of the first default route (`0.0.0.0/0`) in a DescribeRouteTables
/// answer.
fn default_route(answer: &str) -> Option<String> {
    const TARGETS: [&str; 5] =
        ["gatewayId", "natGatewayId", "transitGatewayId", "instanceId", "vpcPeeringConnectionId"];
    let answer = Element::parse(answer)?;
    let route = answer.descendants().into_iter().find(|element| {
        element.name == "item"
            && element.child_text("destinationCidrBlock").as_deref() == Some("0.0.0.0/0")
    })?;
    TARGETS.iter().find_map(|tag| route.child_text(tag)).filter(|target| target != "local")
}

/// Instance id to launch time, from a DescribeInstances answer.
fn parse_launch_times(answer: &str) -> BTreeMap<String, SystemTime> {
    let Some(answer) = Element::parse(answer) else { return BTreeMap::new() };
    answer
        .descendants()
        .into_iter()
        .filter(|element| element.name == "item")
        .filter_map(|instance| {
            let launch = instance.child_text("launchTime")?;
            Some((
                instance.child_text("instanceId")?,
                elastic_ci_core::lifecycle::parse_rfc3339(&launch)?,
            ))
        })
        .collect()
}

/// The first image of a DescribeImages answer.
fn parse_image(answer: &str) -> Option<MachineImage> {
    let answer = Element::parse(answer)?;
    let item = answer.find("imagesSet")?.items().next()?;
    Some(MachineImage {
        image_id: item.child_text("imageId")?,
        name: item.child_text("name").unwrap_or_default(),
        state: ImageState::parse(&item.child_text("imageState")?),
        public: item.child_text("isPublic").as_deref() == Some("true"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_image_from_a_describe_images_answer() {
        let answer = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>r</requestId>
  <imagesSet>
    <item>
      <imageId>ami-0abc</imageId>
      <imageState>pending</imageState>
      <isPublic>false</isPublic>
      <name>buildkite &amp; co</name>
      <blockDeviceMapping><item><deviceName>/dev/xvda</deviceName></item></blockDeviceMapping>
      <tagSet><item><key>Name</key><value>x</value></item></tagSet>
    </item>
  </imagesSet>
</DescribeImagesResponse>"#;
        assert_eq!(
            parse_image(answer),
            Some(MachineImage {
                image_id: "ami-0abc".to_owned(),
                name: "buildkite & co".to_owned(),
                state: ImageState::Pending,
                public: false,
            })
        );
    }

    #[test]
    fn reads_the_default_route_and_launch_times() {
        let tables = "<routeTableSet><item><routeTableId>rtb-1</routeTableId><routeSet><item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId></item><item><destinationCidrBlock>0.0.0.0/0</destinationCidrBlock><gatewayId>igw-9</gatewayId></item></routeSet></item></routeTableSet>";
        assert_eq!(default_route(tables).as_deref(), Some("igw-9"));
        let local_only = "<routeSet><item><destinationCidrBlock>10.0.0.0/16</destinationCidrBlock><gatewayId>local</gatewayId></item></routeSet>";
        assert_eq!(default_route(local_only), None);
        let instances = "<instancesSet><item><instanceId>i-1</instanceId><launchTime>2024-01-02T03:04:05.000Z</launchTime></item><item><instanceId>i-2</instanceId></item></instancesSet>";
        let times = parse_launch_times(instances);
        assert_eq!(times.len(), 1);
        assert!(times.contains_key("i-1"));
    }

    #[test]
    fn reads_every_owned_image_with_its_snapshots_and_tags() {
        let answer = r#"<DescribeImagesResponse><imagesSet>
  <item>
    <imageId>ami-1</imageId><imageState>available</imageState><architecture>arm64</architecture>
    <creationDate>2025-01-02T03:04:05.000Z</creationDate><name>elastic-ci-stack-linux-arm64-v1</name>
    <blockDeviceMapping>
      <item><deviceName>/dev/xvda</deviceName><ebs><snapshotId>snap-a</snapshotId></ebs></item>
      <item><deviceName>/dev/xvdb</deviceName><virtualName>ephemeral0</virtualName></item>
      <item><deviceName>/dev/xvdc</deviceName><ebs><snapshotId>snap-b</snapshotId></ebs></item>
    </blockDeviceMapping>
    <tagSet><item><key>Version</key><value>v1.2.3</value></item><item><key>Name</key><value>&lt;item&gt;</value></item></tagSet>
  </item>
  <item><imageId>ami-2</imageId><imageState>pending</imageState><name>n</name></item>
  <item><name>no id</name></item>
</imagesSet></DescribeImagesResponse>"#;
        let images = parse_owned_images(answer);
        assert_eq!(images.len(), 2, "{images:?}");
        assert_eq!(images[0].image_id, "ami-1");
        assert_eq!(images[0].architecture, "arm64");
        assert_eq!(images[0].creation_date, "2025-01-02T03:04:05.000Z");
        assert_eq!(images[0].snapshot_ids, ["snap-a", "snap-b"]);
        assert_eq!(images[0].tags["Version"], "v1.2.3");
        assert_eq!(images[0].tags["Name"], "<item>");
        assert_eq!(
            (images[1].state.clone(), images[1].snapshot_ids.len()),
            (ImageState::Pending, 0)
        );
        assert!(
            parse_owned_images("<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>")
                .is_empty()
        );
    }

    #[test]
    fn an_empty_images_set_is_no_image() {
        let answer = "<DescribeImagesResponse><imagesSet/></DescribeImagesResponse>";
        assert_eq!(parse_image(answer), None);
        let answer = "<DescribeImagesResponse><imagesSet>\n</imagesSet></DescribeImagesResponse>";
        assert_eq!(parse_image(answer), None);
    }

    #[test]
    fn states_that_do_not_recover_are_unusable() {
        assert_eq!(ImageState::parse("available"), ImageState::Available);
        assert_eq!(ImageState::parse("transient"), ImageState::Pending);
        assert_eq!(ImageState::parse("failed"), ImageState::Unusable("failed".to_owned()));
        assert_eq!(ImageState::parse("failed").to_string(), "failed");
    }
}
