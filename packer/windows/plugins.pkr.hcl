# The Packer plugins the image needs (`packer init packer/windows` installs them on
# Packer 1.7 or later). Debian's Packer 1.6.6 predates plugins and has the amazon-ebs
# builder built in: the project's checks validate the template without this file there.
packer {
  required_version = ">= 1.7.0"
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = ">= 1.3.0"
    }
  }
}
