# Inputs of the agent image. `cargo xtask ami` sets region, arch, ami_name, version,
# dist_dir, public and ec2_endpoint; versions.auto.pkrvars.hcl pins the third-party
# downloads.

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
  type = string
}

variable "docker_buildx_version" {
  type = string
}

# SHA-256 digests of the downloads, by arch. A download without a digest fails the build.
variable "buildkite_agent_sha256" {
  type = map(string)
}

variable "buildkite_agent_beta_sha256" {
  type = map(string)
}

variable "docker_compose_sha256" {
  type = map(string)
}

variable "docker_buildx_sha256" {
  type = map(string)
}

locals {
  # Graviton for arm64; both sizes build in a few minutes.
  instance_type = var.arch == "arm64" ? "m7g.large" : "m7a.large"
  upload_dir    = "/tmp/elastic-ci"
}
