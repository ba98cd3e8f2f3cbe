//! The EC2 image adapter (signed Query API calls) against the emulator.

use elastic_ci_aws::ec2::{CopyImageRequest, Ec2MachineImages, ImageState, MachineImages};
use elastic_ci_aws::error::AwsErrorKind;
use elastic_ci_testkit::moto::{REGION, moto};
use elastic_ci_testkit::names::unique_name;

/// An image the emulator ships in every region.
const SHIPPED_IMAGE: &str = "ami-12c6146b";

#[tokio::test]
async fn ec2_copies_an_image_to_another_region_and_makes_it_public() {
    let Some(moto) = moto() else { return };
    let images = Ec2MachineImages::new(&moto.sdk_config());

    let source = images.describe_image(REGION, SHIPPED_IMAGE).await.unwrap().unwrap();
    assert_eq!(source.state, ImageState::Available);

    let name = unique_name("ec2-copy");
    let copy_id = images
        .copy_image(&CopyImageRequest {
            source_region: REGION.to_owned(),
            source_image_id: SHIPPED_IMAGE.to_owned(),
            region: "eu-west-1".to_owned(),
            name: name.clone(),
            description: Some("a copy & more <test>".to_owned()),
        })
        .await
        .unwrap();
    assert!(copy_id.starts_with("ami-"), "{copy_id}");
    assert_ne!(copy_id, SHIPPED_IMAGE);

    let copy = images.describe_image("eu-west-1", &copy_id).await.unwrap().unwrap();
    assert_eq!((copy.name.as_str(), copy.public), (name.as_str(), false));
    // The copy lives in the destination region only.
    assert_eq!(images.describe_image("eu-central-1", &copy_id).await.unwrap(), None);

    images.make_public("eu-west-1", &copy_id).await.unwrap();
    assert!(images.describe_image("eu-west-1", &copy_id).await.unwrap().unwrap().public);
}

#[tokio::test]
async fn ec2_missing_images_are_none_or_not_found() {
    let Some(moto) = moto() else { return };
    let images = Ec2MachineImages::new(&moto.sdk_config());
    assert_eq!(images.describe_image(REGION, "ami-0000000000000dead").await.unwrap(), None);

    let error = images
        .copy_image(&CopyImageRequest {
            source_region: REGION.to_owned(),
            source_image_id: "ami-0000000000000dead".to_owned(),
            region: "eu-west-1".to_owned(),
            name: unique_name("ec2-missing"),
            description: None,
        })
        .await
        .unwrap_err();
    assert_eq!(error.kind, AwsErrorKind::NotFound, "{error}");
    assert!(error.to_string().starts_with("CopyImage us-east-1/ami-0000000000000dead"), "{error}");
}

#[tokio::test]
async fn ec2_lists_owned_images_by_name_then_deregisters_them_and_their_snapshots() {
    let Some(moto) = moto() else { return };
    let images = Ec2MachineImages::new(&moto.sdk_config());
    let prefix = unique_name("ec2-prune");
    let mut copies = Vec::new();
    for suffix in ["a", "b"] {
        let copy_id = images
            .copy_image(&CopyImageRequest {
                source_region: REGION.to_owned(),
                source_image_id: SHIPPED_IMAGE.to_owned(),
                region: "eu-west-1".to_owned(),
                name: format!("{prefix}-{suffix}"),
                description: None,
            })
            .await
            .unwrap();
        copies.push(copy_id);
    }

    let mut owned = images.owned_images("eu-west-1", &format!("{prefix}-*")).await.unwrap();
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    let ids: Vec<&str> = owned.iter().map(|image| image.image_id.as_str()).collect();
    assert_eq!(ids, [copies[0].as_str(), copies[1].as_str()]);
    assert_eq!(owned[0].name, format!("{prefix}-a"));
    assert_eq!(owned[0].architecture, "x86_64");
    assert!(!owned[0].creation_date.is_empty(), "{owned:?}");
    // The shipped images belong to another account; names of other tests do not match.
    assert!(images.owned_images(REGION, &format!("{prefix}-*")).await.unwrap().is_empty());

    images.deregister_image("eu-west-1", &owned[0].image_id).await.unwrap();
    for snapshot in &owned[0].snapshot_ids {
        images.delete_snapshot("eu-west-1", snapshot).await.unwrap();
    }
    let left = images.owned_images("eu-west-1", &format!("{prefix}-*")).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].image_id, copies[1]);

    let error = images.delete_snapshot("eu-west-1", "snap-0000000000000dead").await.unwrap_err();
    assert_eq!(error.kind, AwsErrorKind::NotFound, "{error}");
}
