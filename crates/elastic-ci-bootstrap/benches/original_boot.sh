#!/bin/bash
# The AWS and metadata calls the original bk-install-elastic-stack.sh makes during a
# boot, with curl and the AWS CLI, for comparison with `elastic-ci-bootstrap boot`
# (see boot.rs beside this file): the IMDSv2 token and instance id, the git-mirror
# seed listing and download (streamed into tar), the agent token from SSM, bk-fetch of
# the agent env file and of the bootstrap script, and the script run. The system
# actions (chown, systemctl, docker, cfn-signal) are left out on both sides.
#
# Usage: original_boot.sh IMDS_ENDPOINT BUCKET TOKEN_PARAMETER WORK_DIR
# (with the AWS_* variables of moto)
set -euo pipefail
imds="$1"
bucket="$2"
token_parameter="$3"
work="$4"

token=$(curl -sf -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" --max-time 2 "$imds/latest/api/token")
instance_id=$(curl -sf -H "X-aws-ec2-metadata-token: $token" --max-time 2 "$imds/latest/meta-data/instance-id")
[[ "$instance_id" == i-* ]]

mkdir -p "$work/git-mirrors"
for key in $(aws s3api list-objects-v2 --bucket "$bucket" --prefix git-mirror-seeds/ --query 'Contents[].Key' --output text); do
  staging=$(mktemp -d "$work/git-mirrors/.git-mirror-seed-XXXXXX")
  aws s3 cp "s3://$bucket/$key" - | tar -xz -C "$staging"
  mv "$staging"/* "$work/git-mirrors/"
  rm -rf "$staging"
done

agent_token=$(aws ssm get-parameter --name "$token_parameter" --with-decryption --query Parameter.Value --output text)
[[ -n "$agent_token" ]]
aws s3 cp "s3://$bucket/agent.env" "$work/env" >/dev/null
aws s3 cp "s3://$bucket/bootstrap.sh" "$work/elastic_bootstrap" >/dev/null
bash < "$work/elastic_bootstrap"
