# A VPC with two public subnets, unless vpc_id is given.

resource "aws_vpc" "this" {
  count = local.create_vpc_resources ? 1 : 0
  #checkov:skip=CKV2_AWS_11:The stack-built VPC is a convenience for trying the stack; users who need flow logs bring their own VPC with vpc_id.
  #checkov:skip=CKV2_AWS_12:The default security group is unused; the agents get their own.

  cidr_block           = "10.0.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = merge(local.common_tags, { Name = var.stack_name })
}

resource "aws_internet_gateway" "this" {
  count = local.create_vpc_resources ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.common_tags, { Name = var.stack_name })
}

resource "aws_subnet" "public" {
  count = local.create_vpc_resources ? 2 : 0

  vpc_id            = aws_vpc.this[0].id
  cidr_block        = "10.0.${count.index + 1}.0/24"
  availability_zone = local.availability_zones[count.index]
  tags              = merge(local.common_tags, { Name = var.stack_name })

  lifecycle {
    # Changing zones would replace the subnets under running instances.
    ignore_changes = [availability_zone]
  }
}

resource "aws_route_table" "public" {
  count = local.create_vpc_resources ? 1 : 0

  vpc_id = aws_vpc.this[0].id
  tags   = merge(local.common_tags, { Name = var.stack_name })
}

resource "aws_route" "default" {
  count = local.create_vpc_resources ? 1 : 0

  route_table_id         = aws_route_table.public[0].id
  destination_cidr_block = "0.0.0.0/0"
  gateway_id             = aws_internet_gateway.this[0].id
}

resource "aws_route_table_association" "public" {
  count = local.create_vpc_resources ? 2 : 0

  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public[0].id
}

resource "aws_security_group" "vpc_endpoints" {
  count = local.enable_vpc_endpoints ? 1 : 0

  name_prefix = "${var.stack_name}-vpc-endpoints-"
  description = "HTTPS from the VPC to its interface endpoints"
  vpc_id      = aws_vpc.this[0].id
  tags        = local.common_tags

  ingress {
    description = "HTTPS from the VPC"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = [aws_vpc.this[0].cidr_block]
  }

  egress {
    description = "HTTPS within the VPC"
    protocol    = "tcp"
    from_port   = 443
    to_port     = 443
    cidr_blocks = [aws_vpc.this[0].cidr_block]
  }
}

resource "aws_vpc_endpoint" "s3" {
  count = local.enable_vpc_endpoints ? 1 : 0

  vpc_id            = aws_vpc.this[0].id
  service_name      = "com.amazonaws.${local.region}.s3"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = [aws_route_table.public[0].id]
  tags              = local.common_tags
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.enable_vpc_endpoints ? toset(["ecr.api", "ecr.dkr", "ssm", "ssmmessages", "ec2messages", "secretsmanager", "kms"]) : toset([])

  vpc_id              = aws_vpc.this[0].id
  service_name        = "com.amazonaws.${local.region}.${each.key}"
  vpc_endpoint_type   = "Interface"
  private_dns_enabled = true
  subnet_ids          = aws_subnet.public[*].id
  security_group_ids  = [aws_security_group.vpc_endpoints[0].id]
  tags                = local.common_tags
}

resource "aws_security_group" "agents" {
  count = local.create_security_group ? 1 : 0
  #checkov:skip=CKV_AWS_382:Agents reach Buildkite, package registries and git hosts anywhere on the internet.

  name_prefix = "${var.stack_name}-agents-"
  description = "Enable access to agents"
  vpc_id      = local.vpc_id
  tags        = merge(local.common_tags, { Name = var.stack_name })

  egress {
    description = "Agents reach Buildkite and build dependencies"
    protocol    = "-1"
    from_port   = 0
    to_port     = 0
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

# SSH only from the network the user names; a key pair alone opens nothing.
resource "aws_vpc_security_group_ingress_rule" "ssh" {
  count = local.enable_ssh_ingress ? 1 : 0

  security_group_id = aws_security_group.agents[0].id
  description       = "SSH to the agents"
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = var.ssh_ingress_cidr
}
