# The pinned downloads of ../versions.auto.pkrvars.hcl, declared so that a pinned
# versions file can sit beside this template (the release rehearsal pins one); nothing
# here installs them.

variable "buildkite_agent_version" {
  type        = string
  description = "The buildkite agent release (unused by this variant)."
  default     = ""
}

variable "buildkite_agent_url" {
  type        = map(string)
  description = "The buildkite agent URL by arch (unused by this variant)."
  default     = {}
}

variable "buildkite_agent_sha256" {
  type        = map(string)
  description = "The buildkite agent SHA-256 digest by arch (unused by this variant)."
  default     = {}
}

variable "buildkite_agent_beta_version" {
  type        = string
  description = "The buildkite agent beta release (unused by this variant)."
  default     = ""
}

variable "buildkite_agent_beta_url" {
  type        = map(string)
  description = "The buildkite agent beta URL by arch (unused by this variant)."
  default     = {}
}

variable "buildkite_agent_beta_sha256" {
  type        = map(string)
  description = "The buildkite agent beta SHA-256 digest by arch (unused by this variant)."
  default     = {}
}

variable "docker_compose_version" {
  type        = string
  description = "The docker compose release (unused by this variant)."
  default     = ""
}

variable "docker_compose_url" {
  type        = map(string)
  description = "The docker compose URL by arch (unused by this variant)."
  default     = {}
}

variable "docker_compose_sha256" {
  type        = map(string)
  description = "The docker compose SHA-256 digest by arch (unused by this variant)."
  default     = {}
}

variable "docker_buildx_version" {
  type        = string
  description = "The docker buildx release (unused by this variant)."
  default     = ""
}

variable "docker_buildx_url" {
  type        = map(string)
  description = "The docker buildx URL by arch (unused by this variant)."
  default     = {}
}

variable "docker_buildx_sha256" {
  type        = map(string)
  description = "The docker buildx SHA-256 digest by arch (unused by this variant)."
  default     = {}
}
