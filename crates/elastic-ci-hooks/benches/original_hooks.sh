#!/bin/bash
# The original stack's per-job work for one job, with the AWS CLI, for comparison with
# elastic-ci-hooks (see hooks.rs beside this file). It makes the calls the original's
# bash hooks and plugins made: mktemp for the Docker config, `docker ps`, the df/jq
# disk check, HeadBucket and the secrets fetches, ssh-agent, the env-file eval,
# `aws --version`, `aws sts get-caller-identity` and `aws ecr get-login-password`
# piped to `docker login`, then the pre-command docker login and the pre-exit
# clean-up. The original fetched secrets with a Go helper (one process, concurrent
# SDK calls); here each object is one `aws s3 cp` in the background, so that part
# costs more than it did in the original, and the bench reports it separately.
#
# Usage: original_hooks.sh BUCKET PIPELINE_SLUG   (with the AWS_* variables of moto)
set -euo pipefail
bucket="$1"
prefix="$2"
now() { date +%s%N; }
phase() { echo "phase $1 $(( ($(now) - $2) / 1000000 )) ms" >&2; }

job_start=$(now)
# environment hook
DOCKER_CONFIG="$(mktemp -d)"
export DOCKER_CONFIG BUILDKITE_DOCKER_CONFIG_TEMP_DIRECTORY="${DOCKER_CONFIG}"
docker ps >/dev/null
data_root="$(jq -r '."data-root" // empty' /etc/docker/daemon.json 2>/dev/null || true)"
df -k --output=avail "${data_root:-/}" >/dev/null
df --output=iavail "${data_root:-/}" >/dev/null

secrets_start=$(now)
aws s3api head-bucket --bucket "${bucket}" >/dev/null
work="$(mktemp -d)"
keys=("${prefix}/private_ssh_key" "${prefix}/id_rsa_github" private_ssh_key id_rsa_github
  env environment "${prefix}/env" "${prefix}/environment" git-credentials "${prefix}/git-credentials")
for key in "${keys[@]}"; do
  (aws s3 cp --quiet "s3://${bucket}/${key}" "${work}/$(echo "${key}" | tr / _)" 2>/dev/null || true) &
done
for list_prefix in secret-files "${prefix}/secret-files"; do
  aws s3api list-objects-v2 --bucket "${bucket}" --prefix "${list_prefix}" --query 'Contents[].Key' --output text >"${work}/list-$(echo "${list_prefix}" | tr / _)" &
done
wait
secret_keys=$(cat "${work}"/list-* | tr '\t' '\n' | grep -E '(_SECRET|_SECRET_KEY|_PASSWORD|_TOKEN|_ACCESS_KEY)$' || true)
for key in ${secret_keys}; do
  aws s3 cp --quiet "s3://${bucket}/${key}" "${work}/secret_$(basename "${key}")" &
done
wait
phase secrets-fetch "${secrets_start}"
eval "$(ssh-agent -s)" >/dev/null
for key_file in "${work}/${prefix}_private_ssh_key" "${work}/private_ssh_key"; do
  if [[ -f "${key_file}" ]]; then SSH_ASKPASS=/bin/false ssh-add - <"${key_file}" 2>/dev/null; fi
done
set -o allexport
for env_file in "${work}/env" "${work}/environment" "${work}/${prefix}_env" "${work}/${prefix}_environment"; do
  # shellcheck source=/dev/null
  if [[ -f "${env_file}" ]]; then source "${env_file}"; fi
done
set +o allexport
for secret in "${work}"/secret_*; do
  [[ -f "${secret}" ]] && export "$(basename "${secret#*secret_}")=$(cat "${secret}")"
done
phase secrets "${secrets_start}"

ecr_start=$(now)
aws --version >/dev/null 2>&1
account="$(aws sts get-caller-identity --query Account --output text)"
aws ecr get-login-password | docker login --username AWS --password-stdin "${account}.dkr.ecr.us-east-1.amazonaws.com" >/dev/null
phase ecr "${ecr_start}"

# pre-command hook
echo "${DOCKER_LOGIN_PASSWORD:-}" | docker login --username "${DOCKER_LOGIN_USER:-none}" --password-stdin >/dev/null

# pre-exit hook
rm -rf "${DOCKER_CONFIG}" "${work}"
eval "$(ssh-agent -k)" >/dev/null
phase job "${job_start}"
