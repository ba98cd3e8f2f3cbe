# Inputs of the Windows agent image. `cargo xtask ami --os windows` sets region,
# ami_name, version, dist_dir, public, manifest and ec2_endpoint; versions.auto.pkrvars.hcl
# pins the third-party downloads. Windows images are x86_64 only.

variable "region" {
  type        = string
  description = "The AWS region the image is built in."
}

variable "arch" {
  type        = string
  description = "The CPU architecture: x86_64 (the only one Windows images are built for)."
  default     = "x86_64"
  validation {
    condition     = var.arch == "x86_64"
    error_message = "Windows images are built for x86_64 only."
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
  description = "The directory holding elastic-ci-bootstrap.exe and elastic-ci-hooks.exe."
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

variable "manifest" {
  type        = string
  description = "Where the manifest post-processor writes the AMI ids."
  default     = "manifest.json"
}

# Each download's version, URL and SHA-256 digest (versions.auto.pkrvars.hcl). A
# download without a digest fails the build.
variable "buildkite_agent_version" {
  type        = string
  description = "The agent release baked in as the stable channel."
}

variable "buildkite_agent_url" {
  type        = string
  description = "The stable agent's Windows release archive."
}

variable "buildkite_agent_sha256" {
  type        = string
  description = "The SHA-256 digest of the stable agent's archive."
}

variable "git_version" {
  type        = string
  description = "The Git for Windows release."
}

variable "git_url" {
  type        = string
  description = "The Git for Windows 64-bit installer."
}

variable "git_sha256" {
  type        = string
  description = "The SHA-256 digest of the Git for Windows installer."
}

variable "nssm_version" {
  type        = string
  description = "The NSSM release that runs the agent as a service."
}

variable "nssm_url" {
  type        = string
  description = "The NSSM release archive."
}

variable "nssm_sha256" {
  type        = string
  description = "The SHA-256 digest of the NSSM archive."
}

variable "cloudwatch_agent_url" {
  type        = string
  description = "The CloudWatch agent's Windows installer, at a versioned URL."
}

variable "cloudwatch_agent_sha256" {
  type        = string
  description = "The SHA-256 digest of the CloudWatch agent installer."
}

locals {
  upload_dir    = "C:/Windows/Temp/elastic-ci"
  instance_type = "m5.large"
}
