//! Object store: S3.

use std::time::SystemTime;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::types::{
    BucketLocationConstraint, CreateBucketConfiguration, PublicAccessBlockConfiguration,
};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tracing::instrument;

use crate::config::AwsSettings;
use crate::error::{AwsError, AwsErrorKind};

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

/// An object's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    pub content_type: Option<String>,
    pub last_modified: Option<SystemTime>,
}

/// A failed download: either S3 failed, or writing what it sent failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("writing s3://{bucket}/{key} failed: {source}")]
    Write {
        bucket: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl DownloadError {
    /// The AWS failure kind, if the failure was on the S3 side.
    pub fn aws_kind(&self) -> Option<AwsErrorKind> {
        match self {
            DownloadError::Aws(error) => Some(error.kind),
            DownloadError::Write { .. } => None,
        }
    }
}

/// What the stack needs from S3.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Streams an object into `writer` chunk by chunk, never holding it all in memory.
    /// Returns the number of bytes written.
    async fn download(
        &self,
        bucket: &str,
        key: &str,
        writer: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64, DownloadError>;

    /// Uploads `body` as one object.
    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(), AwsError>;

    /// Every object under `prefix`, across all pages, in key order.
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectSummary>, AwsError>;

    /// An object's metadata; a missing object is an error of kind `NotFound`.
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError>;

    /// Checks that a bucket exists and can be listed (HeadBucket, which needs
    /// `s3:ListBucket`), and returns its region when S3 says it. A missing bucket is an
    /// error of kind `NotFound`; a bucket in another region than the client's is not
    /// an error: its region is returned.
    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError>;

    /// Creates `bucket` in `region` unless it exists already (HeadBucket first, so a
    /// bucket of another account is an error of kind `AccessDenied`, never taken over).
    /// Returns whether it was created.
    async fn ensure_bucket(&self, bucket: &str, region: &str) -> Result<bool, AwsError>;

    /// Lets anyone, any AWS account's CloudFormation and Lambda included, read the
    /// objects under `prefix`: the bucket's block of public policies is lifted (public
    /// ACLs stay blocked) and its policy becomes one statement granting `s3:GetObject`
    /// on `prefix*`, replacing any earlier policy.
    async fn allow_public_read(&self, bucket: &str, prefix: &str) -> Result<(), AwsError>;
}

/// The bucket policy [`ObjectStore::allow_public_read`] sets.
pub fn public_read_policy(bucket: &str, prefix: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PublicReadOfReleases",
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*"),
        }],
    })
    .to_string()
}

/// [`ObjectStore`] over the AWS SDK.
#[derive(Debug, Clone)]
pub struct S3ObjectStore {
    client: aws_sdk_s3::Client,
}

impl S3ObjectStore {
    pub fn new(sdk_config: &SdkConfig, settings: &AwsSettings) -> S3ObjectStore {
        let config = aws_sdk_s3::config::Builder::from(sdk_config)
            .force_path_style(settings.s3_path_style)
            .build();
        S3ObjectStore { client: aws_sdk_s3::Client::from_conf(config) }
    }
}

fn s3_resource(bucket: &str, key: &str) -> String {
    format!("s3://{bucket}/{key}")
}

#[async_trait]
impl ObjectStore for S3ObjectStore {
    #[instrument(skip_all, fields(bucket, key))]
    async fn download(
        &self,
        bucket: &str,
        key: &str,
        writer: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64, DownloadError> {
        let resource = || s3_resource(bucket, key);
        let output = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetObject", resource(), error))?;
        let mut body = output.body;
        let mut n_bytes = 0u64;
        while let Some(chunk) = body.try_next().await.map_err(|error| {
            AwsError::new(
                AwsErrorKind::Transport,
                "GetObject",
                resource(),
                format!("reading the body: {error}"),
            )
        })? {
            writer.write_all(&chunk).await.map_err(|source| DownloadError::Write {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                source,
            })?;
            n_bytes += chunk.len() as u64;
        }
        writer.flush().await.map_err(|source| DownloadError::Write {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            source,
        })?;
        Ok(n_bytes)
    }

    #[instrument(skip_all, fields(bucket, key, n_bytes = body.len()))]
    async fn upload(
        &self,
        bucket: &str,
        key: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> Result<(), AwsError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .set_content_type(content_type.map(str::to_owned))
            .body(body.into())
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("PutObject", s3_resource(bucket, key), error))?;
        Ok(())
    }

    #[instrument(skip_all, fields(bucket, prefix))]
    async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<ObjectSummary>, AwsError> {
        let mut pages =
            self.client.list_objects_v2().bucket(bucket).prefix(prefix).into_paginator().send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| {
                AwsError::from_sdk("ListObjectsV2", s3_resource(bucket, prefix), error)
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                objects.push(ObjectSummary {
                    key: key.to_owned(),
                    size: object.size().and_then(|size| u64::try_from(size).ok()).unwrap_or(0),
                    last_modified: object
                        .last_modified()
                        .and_then(|time| SystemTime::try_from(*time).ok()),
                });
            }
        }
        Ok(objects)
    }

    #[instrument(skip_all, fields(bucket, key))]
    async fn head(&self, bucket: &str, key: &str) -> Result<ObjectHead, AwsError> {
        let output =
            self.client.head_object().bucket(bucket).key(key).send().await.map_err(|error| {
                AwsError::from_sdk("HeadObject", s3_resource(bucket, key), error)
            })?;
        Ok(ObjectHead {
            size: output.content_length().and_then(|size| u64::try_from(size).ok()).unwrap_or(0),
            content_type: output.content_type().map(str::to_owned),
            last_modified: output.last_modified().and_then(|time| SystemTime::try_from(*time).ok()),
        })
    }

    #[instrument(skip_all, fields(bucket))]
    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        match self.client.head_bucket().bucket(bucket).send().await {
            Ok(output) => Ok(output.bucket_region().map(str::to_owned)),
            Err(error) => {
                // S3 answers a request sent to the wrong region with a 301 that still
                // carries the bucket's region in `x-amz-bucket-region`.
                let moved_region = error.raw_response().and_then(|response| {
                    (response.status().as_u16() == 301)
                        .then(|| response.headers().get("x-amz-bucket-region"))
                        .flatten()
                        .map(str::to_owned)
                });
                match moved_region {
                    Some(region) => Ok(Some(region)),
                    None => Err(AwsError::from_sdk("HeadBucket", format!("s3://{bucket}"), error)),
                }
            }
        }
    }

    #[instrument(skip_all, fields(bucket, region))]
    async fn ensure_bucket(&self, bucket: &str, region: &str) -> Result<bool, AwsError> {
        match self.bucket_region(bucket).await {
            Ok(_) => return Ok(false),
            Err(error) if error.is_not_found() => {}
            Err(error) => return Err(error),
        }
        let mut request = self.client.create_bucket().bucket(bucket);
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        request
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("CreateBucket", format!("s3://{bucket}"), error))?;
        Ok(true)
    }

    #[instrument(skip_all, fields(bucket, prefix))]
    async fn allow_public_read(&self, bucket: &str, prefix: &str) -> Result<(), AwsError> {
        let resource = format!("s3://{bucket}");
        self.client
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(
                PublicAccessBlockConfiguration::builder()
                    .block_public_acls(true)
                    .ignore_public_acls(true)
                    .block_public_policy(false)
                    .restrict_public_buckets(false)
                    .build(),
            )
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("PutPublicAccessBlock", &resource, error))?;
        self.client
            .put_bucket_policy()
            .bucket(bucket)
            .policy(public_read_policy(bucket, prefix))
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("PutBucketPolicy", &resource, error))?;
        Ok(())
    }
}
