# A stripped variant of ../amazon-linux-2023.pkr.hcl for tests against a local AWS
# emulator (moto): the same inputs `cargo xtask ami` passes and the same manifest, no
# instance to connect to (so no provisioners), a fixed source image, and no calls to
# real AWS endpoints. It leaves out what Debian's Packer 1.6.6, which runs it, does not
# know: plugin requirements and imds_support.

variable "region" {
  type        = string
  description = "The region the image is built in."
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
  description = "The stack version the image belongs to."
}

variable "dist_dir" {
  type        = string
  description = "The directory of the instance binaries (unused: nothing is provisioned)."
}

variable "public" {
  type        = bool
  description = "Whether anyone may launch the image."
  default     = false
}

variable "ec2_endpoint" {
  type        = string
  description = "The emulator's EC2 endpoint."
}

variable "manifest" {
  type        = string
  description = "Where Packer writes its manifest of the images built."
  default     = "packer-manifest.json"
}

variable "source_ami" {
  type        = string
  description = "The image to start from (empty: one of the images the emulator ships for the arch)."
  default     = ""
}

locals {
  # moto's x86_64 and arm64 images.
  source_ami = var.source_ami != "" ? var.source_ami : (var.arch == "arm64" ? "ami-0e9271c829888680e" : "ami-12c6146b")
}

source "amazon-ebs" "al2023" {
  region              = var.region
  custom_endpoint_ec2 = var.ec2_endpoint
  ami_name            = var.ami_name
  ami_description     = "Buildkite Elastic CI Stack ${var.version}, Amazon Linux 2023 ${var.arch}"
  ami_groups          = var.public ? ["all"] : []
  instance_type       = var.arch == "arm64" ? "m7g.large" : "m7a.large"
  source_ami          = local.source_ami
  communicator        = "none"

  skip_credential_validation = true
  skip_metadata_api_check    = true
  skip_region_validation     = true

  tags = {
    Name         = var.ami_name
    Version      = var.version
    Architecture = var.arch
  }
}

build {
  sources = ["source.amazon-ebs.al2023"]

  post-processor "manifest" {
    output     = var.manifest
    strip_path = true
    custom_data = {
      arch    = var.arch
      version = var.version
    }
  }
}
