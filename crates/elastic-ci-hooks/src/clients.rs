//! The AWS clients the hooks use, built only when a hook needs them (a job without
//! secrets or ECR login never loads AWS configuration), once per region.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use elastic_ci_aws::config::{AwsSettings, aws_sdk_config};
use elastic_ci_aws::ecr::{EcrRegistryAuth, RegistryAuth};
use elastic_ci_aws::s3::{ObjectStore, S3ObjectStore};
use tokio::sync::Mutex;

/// Builds clients for a region (`None`: the SDK's own region chain).
#[async_trait]
pub trait Clients: Send + Sync {
    async fn object_store(&self, region: Option<&str>) -> Arc<dyn ObjectStore>;
    async fn registry_auth(&self, region: &str, profile: Option<&str>) -> Arc<dyn RegistryAuth>;
}

/// [`Clients`] over the AWS SDK, honouring the standard `AWS_*` variables.
#[derive(Debug)]
pub struct SdkClients {
    settings: AwsSettings,
    object_stores: Mutex<HashMap<Option<String>, Arc<S3ObjectStore>>>,
}

impl SdkClients {
    pub fn new(env: &HashMap<String, String>) -> SdkClients {
        SdkClients { settings: AwsSettings::from_env_map(env), object_stores: Mutex::default() }
    }
}

#[async_trait]
impl Clients for SdkClients {
    async fn object_store(&self, region: Option<&str>) -> Arc<dyn ObjectStore> {
        let key = region.map(str::to_owned);
        let mut stores = self.object_stores.lock().await;
        if let Some(store) = stores.get(&key) {
            return Arc::clone(store) as Arc<dyn ObjectStore>;
        }
        let settings = self.settings.clone().with_overrides(key.clone(), None, None);
        let store = Arc::new(S3ObjectStore::new(&aws_sdk_config(&settings).await, &settings));
        stores.insert(key, Arc::clone(&store));
        store
    }

    async fn registry_auth(&self, region: &str, profile: Option<&str>) -> Arc<dyn RegistryAuth> {
        let settings = self.settings.clone().with_overrides(
            Some(region.to_owned()),
            profile.map(str::to_owned),
            None,
        );
        Arc::new(EcrRegistryAuth::new(&aws_sdk_config(&settings).await))
    }
}
