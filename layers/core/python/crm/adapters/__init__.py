"""Adapters to AWS services other than DynamoDB (S3, SES, SNS, Step Functions, EventBridge).

Clients are created on first use, never at import time, so the local endpoint or moto is in
place before any client exists."""
