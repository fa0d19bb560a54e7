"""The pipeline a backup is compared with: stdin (tar --zstd) streamed into an S3 multipart
upload by boto3's transfer manager, as `aws s3 cp - s3://bucket/key` does (the AWS CLI is built
on the same s3transfer library). Usage: bench_backup_upload.py ENDPOINT BUCKET KEY"""
import sys

import boto3
from boto3.s3.transfer import TransferConfig

endpoint, bucket, key = sys.argv[1:4]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    aws_access_key_id="manman",
    aws_secret_access_key="manman",
    region_name="us-east-1",
)
s3.upload_fileobj(
    sys.stdin.buffer, bucket, key, Config=TransferConfig(multipart_chunksize=16 * 1024 * 1024)
)
