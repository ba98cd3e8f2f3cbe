//! An in-memory [`MachineImages`] for the unit tests of the image tasks: describe
//! answers follow a script per image, listings return fixed images, and every
//! deregistration and snapshot deletion is recorded. Copies and launch permissions are
//! not asked of it.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use elastic_ci_aws::ec2::{CopyImageRequest, ImageState, MachineImage, MachineImages, OwnedImage};
use elastic_ci_aws::error::{AwsError, AwsErrorKind};

/// One scripted answer to DescribeImages: a state, or a failure of that kind.
pub(crate) type Answer = Result<ImageState, AwsErrorKind>;

#[derive(Default)]
pub(crate) struct TestImages {
    /// By image id; the last answer repeats.
    pub(crate) scripts: Mutex<HashMap<String, Vec<Answer>>>,
    /// What every listing returns.
    pub(crate) owned: Vec<OwnedImage>,
    /// `list REGION PATTERN`, `deregister REGION ID`, `delete REGION SNAPSHOT`, in order.
    pub(crate) calls: Mutex<Vec<String>>,
}

impl TestImages {
    pub(crate) fn scripted(scripts: &[(&str, Vec<Answer>)]) -> TestImages {
        TestImages {
            scripts: Mutex::new(
                scripts.iter().map(|(id, script)| ((*id).to_owned(), script.clone())).collect(),
            ),
            ..TestImages::default()
        }
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(call);
    }
}

#[async_trait]
impl MachineImages for TestImages {
    async fn describe_image(
        &self,
        region: &str,
        image_id: &str,
    ) -> Result<Option<MachineImage>, AwsError> {
        let mut scripts = self.scripts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(script) = scripts.get_mut(image_id) else { return Ok(None) };
        let next = if script.len() > 1 { script.remove(0) } else { script[0].clone() };
        match next {
            Ok(state) => Ok(Some(MachineImage {
                image_id: image_id.to_owned(),
                name: "n".to_owned(),
                state,
                public: false,
            })),
            Err(kind) => Err(AwsError::new(kind, "DescribeImages", region, "scripted")),
        }
    }

    async fn copy_image(&self, _request: &CopyImageRequest) -> Result<String, AwsError> {
        unreachable!("the tests never copy")
    }

    async fn make_public(&self, _region: &str, _image_id: &str) -> Result<(), AwsError> {
        unreachable!("the tests never change launch permissions")
    }

    async fn owned_images(
        &self,
        region: &str,
        name_pattern: &str,
    ) -> Result<Vec<OwnedImage>, AwsError> {
        self.record(format!("list {region} {name_pattern}"));
        Ok(self.owned.clone())
    }

    async fn deregister_image(&self, region: &str, image_id: &str) -> Result<(), AwsError> {
        self.record(format!("deregister {region} {image_id}"));
        Ok(())
    }

    async fn delete_snapshot(&self, region: &str, snapshot_id: &str) -> Result<(), AwsError> {
        self.record(format!("delete {region} {snapshot_id}"));
        Ok(())
    }
}
