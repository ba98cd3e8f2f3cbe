# Inputs of the agent image. `cargo xtask ami` sets region, arch, ami_name, version,
# dist_dir, public, manifest and ec2_endpoint (and encrypt_boot and kms_key_id when
# asked); versions.auto.pkrvars.hcl pins the third-party downloads.

variable "region" {
  type        = string
  description = "The AWS region the image is built in."
}

variable "arch" {
  type        = string
  description = "The CPU architecture: x86_64 or arm64."
  validation {
    condition     = contains(["x86_64", "arm64"], var.arch)
    error_message = "The arch must be x86_64 or arm64."
  }
}

variable "ami_name" {
  type        = string
  description = "The name of the image; unique per account and region."
}

variable "version" {
  type        = string
  description = "The stack version the image belongs to (git describe)."
}

variable "dist_dir" {
  type        = string
  description = "The directory holding elastic-ci-bootstrap and elastic-ci-hooks for arch."
}

variable "public" {
  type        = bool
  description = "Whether anyone may launch the image."
  default     = false
}

variable "ec2_endpoint" {
  type        = string
  description = "An EC2 endpoint to use instead of the region's (empty: the region's)."
  default     = ""
}

variable "buildkite_agent_version" {
  type        = string
  description = "The agent release baked in as the stable channel."
}

variable "buildkite_agent_beta_version" {
  type        = string
  description = "The agent release baked in as the beta channel."
}

variable "docker_compose_version" {
  type        = string
  description = "The Docker Compose CLI plugin release."
}

variable "docker_buildx_version" {
  type        = string
  description = "The Docker Buildx CLI plugin release."
}

# Where each download comes from and its SHA-256 digest, by arch: written by
# `cargo xtask pin-downloads`. A download without a digest fails the build.
variable "buildkite_agent_url" {
  type        = map(string)
  description = "The stable agent's release archive, by arch."
}

variable "buildkite_agent_sha256" {
  type        = map(string)
  description = "The SHA-256 digest of the stable agent's archive, by arch."
}

variable "buildkite_agent_beta_url" {
  type        = map(string)
  description = "The beta agent's release archive, by arch."
}

variable "buildkite_agent_beta_sha256" {
  type        = map(string)
  description = "The SHA-256 digest of the beta agent's archive, by arch."
}

variable "docker_compose_url" {
  type        = map(string)
  description = "The Docker Compose plugin binary, by arch."
}

variable "docker_compose_sha256" {
  type        = map(string)
  description = "The SHA-256 digest of the Docker Compose plugin, by arch."
}

variable "docker_buildx_url" {
  type        = map(string)
  description = "The Docker Buildx plugin binary, by arch."
}

variable "docker_buildx_sha256" {
  type        = map(string)
  description = "The SHA-256 digest of the Docker Buildx plugin, by arch."
}

variable "encrypt_boot" {
  type        = bool
  description = "Whether the image's snapshots are encrypted (images with encrypted snapshots cannot be made public)."
  default     = false
}

variable "kms_key_id" {
  type        = string
  description = "The KMS key that encrypts the snapshots with encrypt_boot (empty: the account's default EBS key)."
  default     = ""
}

variable "manifest" {
  type        = string
  description = "Where Packer writes its manifest of the images built; `cargo xtask ami` reads the AMI ids from it."
  default     = "packer-manifest.json"
}

locals {
  # Graviton for arm64; both sizes build in a few minutes.
  instance_type = var.arch == "arm64" ? "m7g.large" : "m7a.large"
  upload_dir    = "/tmp/elastic-ci"
}
