"""Outside the test stages the fault switch does not exist (not even an SSM read), and a shop
without a payment integration is told to pay refunds back by hand."""

from __future__ import annotations

import json

import boto3
import pytest

from crm_local.provision import stage_environment


@pytest.fixture
def stage(aws, monkeypatch):
    """Switch the running environment to another stage, its faults parameter set."""
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import base

    import crm.config

    ssm = boto3.client("ssm", region_name="us-east-1")

    def use(name: str) -> None:
        env = stage_environment("prod") | {
            "CRM_STAGE": name,
            "CRM_SENDER_EMAIL": "orders@shop.com",
            "CRM_SECRETS_SOURCE": f"ssm:/crm/{name}/",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        ssm.put_parameter(
            Name=f"/crm/{name}/faults", Value="fulfilment.allocate", Type="String", Overwrite=True
        )
        crm.config.get_settings.cache_clear()
        crm.config._faults_cache = None
        parameters.clear_caches()
        base.DEFAULT_PROVIDERS.clear()  # a fresh SSM client, so the counter below sees it

    yield use
    crm.config.get_settings.cache_clear()
    crm.config._faults_cache = None
    base.DEFAULT_PROVIDERS.clear()


def test_the_fault_switch_works_in_a_test_stage_and_is_never_read_elsewhere(stage):
    from bench.calls import CallCounter
    from crm.config import injected_faults

    with CallCounter() as counter:
        stage("test")
        with counter.measure() as in_test:
            assert injected_faults() == {"fulfilment.allocate"}
        stage("prod")
        with counter.measure() as in_prod:
            assert injected_faults() == frozenset()

    assert in_test.breakdown() == {"ssm.GetParameter": 1}
    assert in_prod.total == 0


def test_without_a_payment_integration_operations_are_told_to_pay_back_by_hand(aws, monkeypatch):
    from crm.adapters import payments

    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName="ops-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=aws["topics"]["crm-local-ops"],
        Protocol="sqs",
        Endpoint=queue_arn["Attributes"]["QueueArn"],
    )
    monkeypatch.setenv("CRM_PAYMENTS", "manual")

    reference = payments.provider().refund("ord_shopify_1", "ref_1", 12_50, "CNY")

    [message] = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    alert = json.loads(json.loads(message["Body"])["Message"])
    assert reference == "manual:ref_1"
    assert alert == {
        "event": "manual_refund",
        "order_id": "ord_shopify_1",
        "refund_id": "ref_1",
        "amount": "12.50",
        "currency": "CNY",
    }
    with pytest.raises(payments.PaymentRefused):
        payments.provider().refund("ord_shopify_1", "ref_2", 0, "CNY")
    listed = boto3.client("s3", region_name="us-east-1").list_objects_v2(
        Bucket="crm-local-data", Prefix="payments/"
    )
    assert listed["KeyCount"] == 0  # nothing pretends to be a payout record
