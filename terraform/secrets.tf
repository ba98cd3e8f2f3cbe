# The agent token, the pipeline signing key and the secrets bucket.

resource "aws_ssm_parameter" "agent_token" {
  count = local.create_token_parameter ? 1 : 0
  #checkov:skip=CKV_AWS_337:The AWS managed key (aws/ssm) encrypts the token; users who need their own key store the token themselves and set buildkite_agent_token_parameter_store_path and _kms_key.

  name        = local.token_parameter_name
  description = "Buildkite agent token"
  type        = "SecureString"
  value       = var.buildkite_agent_token
  tags        = local.common_tags
}

resource "aws_kms_key" "pipeline_signing" {
  count = local.create_signing_key ? 1 : 0
  #checkov:skip=CKV_AWS_7:Rotation is not supported for asymmetric signing keys.

  description              = "Buildkite pipeline signing key of ${var.stack_name}"
  customer_master_key_spec = var.pipeline_signing_kms_key_spec
  key_usage                = "SIGN_VERIFY"
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "AccountAdministers"
      Effect    = "Allow"
      Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
      Action    = "kms:*"
      Resource  = "*"
    }]
  })
  # Destroying the module schedules the key's deletion; it can be restored until then.
  deletion_window_in_days = 30
  tags                    = merge(local.common_tags, { Name = "${var.stack_name}-PipelineSigningKey" })
}

# Secrets: a versioned, encrypted, private bucket with access logging.
resource "aws_s3_bucket" "managed_secrets_logging" {
  count = local.create_secrets_bucket ? 1 : 0
  #checkov:skip=CKV_AWS_21:Access logs are written once and never changed; versioning would only add cost.
  #checkov:skip=CKV_AWS_144:Secrets stay in one region; replication is the user's choice.
  #checkov:skip=CKV_AWS_145:SSE-S3 encrypts the logs; a customer key would add cost and a key policy to manage.
  #checkov:skip=CKV2_AWS_61:Access logs are kept; expiry is the user's choice.
  #checkov:skip=CKV2_AWS_62:Nothing needs to react to new access logs.

  bucket_prefix = "${lower(var.stack_name)}-secrets-logs-"
  tags          = local.common_tags
}

resource "aws_s3_bucket" "managed_secrets" {
  count = local.create_secrets_bucket ? 1 : 0
  #checkov:skip=CKV_AWS_144:Secrets stay in one region; replication is the user's choice.
  #checkov:skip=CKV_AWS_145:SSE-S3 encrypts the secrets; a customer key would add cost and a key policy to manage.
  #checkov:skip=CKV2_AWS_61:Old versions of secrets are kept for recovery; expiry is the user's choice.
  #checkov:skip=CKV2_AWS_62:Nothing needs to react to new secrets.

  bucket_prefix = "${lower(var.stack_name)}-secrets-"
  tags          = local.common_tags
}

resource "aws_s3_bucket_versioning" "managed_secrets" {
  count = local.create_secrets_bucket ? 1 : 0

  bucket = aws_s3_bucket.managed_secrets[0].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "managed_secrets" {
  count = local.create_secrets_bucket ? 1 : 0

  bucket        = aws_s3_bucket.managed_secrets[0].id
  target_bucket = aws_s3_bucket.managed_secrets_logging[0].id
  target_prefix = ""
}

resource "aws_s3_bucket_server_side_encryption_configuration" "secrets" {
  for_each = local.create_secrets_bucket ? { secrets = aws_s3_bucket.managed_secrets[0].id, logs = aws_s3_bucket.managed_secrets_logging[0].id } : {}

  bucket = each.value
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_public_access_block" "secrets" {
  for_each = local.create_secrets_bucket ? { secrets = aws_s3_bucket.managed_secrets[0].id, logs = aws_s3_bucket.managed_secrets_logging[0].id } : {}

  bucket                  = each.value
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "secrets" {
  for_each = local.create_secrets_bucket ? { secrets = aws_s3_bucket.managed_secrets[0].id, logs = aws_s3_bucket.managed_secrets_logging[0].id } : {}

  bucket = each.value
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_policy" "managed_secrets" {
  count = local.create_secrets_bucket ? 1 : 0

  bucket = aws_s3_bucket.managed_secrets[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Sid       = "DenyInsecureTransport"
      Effect    = "Deny"
      Principal = "*"
      Action    = "s3:*"
      Resource  = [aws_s3_bucket.managed_secrets[0].arn, "${aws_s3_bucket.managed_secrets[0].arn}/*"]
      Condition = { Bool = { "aws:SecureTransport" = "false" } }
    }]
  })
  depends_on = [aws_s3_bucket_public_access_block.secrets]
}

resource "aws_s3_bucket_policy" "managed_secrets_logging" {
  count = local.create_secrets_bucket ? 1 : 0

  bucket = aws_s3_bucket.managed_secrets_logging[0].id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "ServerAccessLogs"
        Effect    = "Allow"
        Principal = { Service = "logging.s3.amazonaws.com" }
        Action    = "s3:PutObject"
        Resource  = "${aws_s3_bucket.managed_secrets_logging[0].arn}/*"
        Condition = {
          ArnLike      = { "aws:SourceArn" = aws_s3_bucket.managed_secrets[0].arn }
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
      {
        Sid       = "DenyInsecureTransport"
        Effect    = "Deny"
        Principal = "*"
        Action    = "s3:*"
        Resource  = [aws_s3_bucket.managed_secrets_logging[0].arn, "${aws_s3_bucket.managed_secrets_logging[0].arn}/*"]
        Condition = { Bool = { "aws:SecureTransport" = "false" } }
      },
    ]
  })
  depends_on = [aws_s3_bucket_public_access_block.secrets]
}
