#!/bin/sh
# One-shot job of the compose stack (service minio-init, image minio/mc): the bucket, with no
# anonymous access, and one application user per client, each limited to its own prefix:
#   MLFLOW_S3_ACCESS_KEY_ID -> s3://$S3_BUCKET/mlflow/   (the MLflow server's proxied artifacts)
#   DVC_S3_ACCESS_KEY_ID    -> s3://$S3_BUCKET/dvc/      (`dvc push`/`dvc pull`, the worker)
# Neither can read or write the other's objects, so a DVC user cannot replace a registered model.
# Safe to run again: it re-sets each secret (rotation) and re-applies the policies.
#
#   sh infra/minio/init-minio.sh                 # needs mc and MINIO_ROOT_USER/PASSWORD (what the job runs)
#   sh infra/minio/init-minio.sh policy mlflow   # print the policy of one prefix (S3_BUCKET), nothing else
set -eu

bucket="${S3_BUCKET:-landmark-lora}"

policy() {  # policy PREFIX -> IAM policy JSON: objects under PREFIX/, listing only under PREFIX
    cat <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation"], "Resource": ["arn:aws:s3:::$bucket"]},
    {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": ["arn:aws:s3:::$bucket"],
     "Condition": {"StringLike": {"s3:prefix": ["$1", "$1/*"]}}},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$bucket/$1/*"]}
  ]
}
JSON
}

if [ "${1:-}" = "policy" ]; then
    policy "$2"
    exit 0
fi

: "${MLFLOW_S3_ACCESS_KEY_ID:?}" "${MLFLOW_S3_SECRET_ACCESS_KEY:?}" "${DVC_S3_ACCESS_KEY_ID:?}" "${DVC_S3_SECRET_ACCESS_KEY:?}"
if [ "$MLFLOW_S3_ACCESS_KEY_ID" = "$DVC_S3_ACCESS_KEY_ID" ]; then
    echo "minio-init: MLFLOW_S3_ACCESS_KEY_ID and DVC_S3_ACCESS_KEY_ID must differ (one user per client)" >&2
    exit 1
fi

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "local/$bucket"
mc anonymous set none "local/$bucket"

grant() {  # grant PREFIX KEY SECRET: the user KEY may use s3://bucket/PREFIX/ only
    name="landmark-lora-$1"
    tmp="$(mktemp)"
    policy "$1" > "$tmp"
    mc admin policy create local "$name" "$tmp" >/dev/null   # replaces an older version of the policy
    rm -f "$tmp"
    mc admin user add local "$2" "$3" >/dev/null   # sets the secret of an existing user too
    info="$(mc admin user info local "$2")"
    # A user left from the single-key layout had `readwrite` on the whole bucket: take it away.
    if printf '%s' "$info" | grep -Eq '(^|[ ,:])readwrite([ ,]|$)'; then
        mc admin policy detach local readwrite --user "$2" >/dev/null
    fi
    printf '%s' "$info" | grep -q "$name" || mc admin policy attach local "$name" --user "$2" >/dev/null
    echo "minio-init: user $2 limited to s3://$bucket/$1/"
}

grant mlflow "$MLFLOW_S3_ACCESS_KEY_ID" "$MLFLOW_S3_SECRET_ACCESS_KEY"
grant dvc "$DVC_S3_ACCESS_KEY_ID" "$DVC_S3_SECRET_ACCESS_KEY"
