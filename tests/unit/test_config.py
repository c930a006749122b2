import os

import pytest

from crm.config import ConfigError, get_secrets, get_source_secrets, load_settings
from crm_local.provision import stage_environment

# What the deployed template adds to a cloud stage's configuration (its SenderEmail parameter).
DEPLOYED = {"CRM_SENDER_EMAIL": "orders@shop.com"}


def test_each_stage_of_the_chalice_config_is_a_valid_environment():
    for stage in ("local", "prod"):
        settings = load_settings(stage_environment(stage) | (DEPLOYED if stage != "local" else {}))
        assert settings.stage == stage
        assert settings.customers_table.startswith(f"crm-{stage}-")


def test_a_missing_variable_fails_with_every_problem_listed():
    env = stage_environment("local")
    del env["CRM_CUSTOMERS_TABLE"]
    env["CRM_DEFAULT_COUNTRY"] = "China"
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "CRM_CUSTOMERS_TABLE" in str(caught.value)
    assert "CRM_DEFAULT_COUNTRY" in str(caught.value)


def test_secrets_come_from_ssm_or_the_environment_only():
    env = stage_environment("local") | {"CRM_SECRETS_SOURCE": "vault"}
    with pytest.raises(ConfigError):
        load_settings(env)


@pytest.fixture
def env_secrets(monkeypatch: pytest.MonkeyPatch):
    from crm.config import get_settings

    for key, value in stage_environment("local").items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CRM_SECRETS_SOURCE", "env")
    for key in list(os.environ):
        if key.startswith("CRM_WEBHOOK_SECRET"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_get_secrets_is_the_current_secret_alone_without_a_previous_one(env_secrets):
    env_secrets.setenv("CRM_WEBHOOK_SECRET", "new")
    assert get_secrets("webhook_secret") == ["new"]


def test_get_secrets_lists_the_current_then_the_previous_secret(env_secrets):
    env_secrets.setenv("CRM_WEBHOOK_SECRET", "new")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "old")
    assert get_secrets("webhook_secret") == ["new", "old"]


def test_get_secrets_ignores_an_empty_or_repeated_previous_secret(env_secrets):
    env_secrets.setenv("CRM_WEBHOOK_SECRET", "new")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "")
    assert get_secrets("webhook_secret") == ["new"]
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "new")
    assert get_secrets("webhook_secret") == ["new"]


def test_get_secrets_uses_the_local_default_but_never_a_default_previous(env_secrets):
    assert get_secrets("webhook_secret") == ["local-webhook-secret"]
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "old")
    assert get_secrets("webhook_secret") == ["local-webhook-secret", "old"]


def test_get_secrets_fails_like_get_secret_when_the_current_one_is_missing(env_secrets):
    env_secrets.setenv("CRM_STAGE", "prod")
    env_secrets.setenv("CRM_PAYMENTS", "manual")
    env_secrets.setenv("CRM_SENDER_EMAIL", "orders@shop.com")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "old")
    with pytest.raises(ConfigError, match="CRM_WEBHOOK_SECRET"):
        get_secrets("webhook_secret")


# -- a secret per generic source ----------------------------------------------------------------


def test_a_source_with_its_own_secret_gets_it_and_its_previous_alone(env_secrets):
    # Given sources with secrets of their own (`-` becomes `_` in the variable's name)
    env_secrets.setenv("CRM_WEBHOOK_SECRET_WOOCOMMERCE", "woo")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_WOOCOMMERCE_PREVIOUS", "woo-old")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_MY_SHOP", "mine")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "shared-old")
    # Then each has its own, with its own previous one, and never the shared ones
    assert get_source_secrets("webhook_secret", "woocommerce") == ["woo", "woo-old"]
    assert get_source_secrets("webhook_secret", "my-shop") == ["mine"]


@pytest.mark.parametrize("source", ["magento", "previous", "woo_previous", "woo-previous", "W", ""])
def test_a_source_without_its_own_secret_or_with_an_unusable_name_has_none(env_secrets, source):
    # Given the shared secrets, and variables that a name ending in `previous` would read
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "shared-old")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_WOO", "woo")
    env_secrets.setenv("CRM_WEBHOOK_SECRET_WOO_PREVIOUS", "woo-old")
    # Then the source has none of its own (its webhooks use the shared secret)
    assert get_source_secrets("webhook_secret", source) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def ssm_secrets(env_secrets):
    """The secrets in SSM (moto), every cache empty, and the config's clock a fake one."""
    import boto3
    from aws_lambda_powertools.utilities import parameters
    from aws_lambda_powertools.utilities.parameters import base
    from moto import mock_aws

    import crm.config

    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        env_secrets.delenv(key, raising=False)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env_secrets.setenv(key, "testing")
    env_secrets.setenv("AWS_DEFAULT_REGION", "us-east-1")
    env_secrets.setenv("CRM_SECRETS_SOURCE", "ssm:/crm/local/")
    clock = FakeClock()
    env_secrets.setattr(crm.config, "time", clock)

    def forget() -> None:
        parameters.clear_caches()
        base.DEFAULT_PROVIDERS.clear()  # a fresh SSM client, so a counter sees it
        crm.config._previous_absent_until.clear()

    forget()
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        yield ssm, clock
    forget()


def test_in_the_cloud_a_source_without_a_secret_costs_one_ssm_read_per_five_minutes(ssm_secrets):
    from bench.calls import CallCounter

    ssm, clock = ssm_secrets
    with CallCounter() as counter:
        # Given no secret of its own for `magento`, When three of its webhooks arrive
        with counter.measure() as absent:
            for _ in range(3):
                assert get_source_secrets("webhook_secret", "magento") is None
        # Given one (and a previous one) for `woocommerce`, When three of its webhooks arrive
        ssm.put_parameter(
            Name="/crm/local/webhook_secret_woocommerce", Value="woo", Type="SecureString"
        )
        ssm.put_parameter(
            Name="/crm/local/webhook_secret_woocommerce_previous",
            Value="woo-old",
            Type="SecureString",
        )
        with counter.measure() as own:
            for _ in range(3):
                assert get_source_secrets("webhook_secret", "woocommerce") == ["woo", "woo-old"]
        # When magento gets a secret of its own, Then it counts once the absence has expired
        ssm.put_parameter(Name="/crm/local/webhook_secret_magento", Value="m", Type="SecureString")
        assert get_source_secrets("webhook_secret", "magento") is None
        clock.now += 301
        with counter.measure() as later:
            assert get_source_secrets("webhook_secret", "magento") == ["m"]
    # Then an absent secret is read once, a present one (with its previous) once each
    assert absent.breakdown() == {"ssm.GetParameter": 1}
    assert own.breakdown() == {"ssm.GetParameter": 2}
    assert later.breakdown() == {"ssm.GetParameter": 2}


def test_in_the_cloud_a_source_secret_that_cannot_be_read_is_unavailable_never_absent(
    ssm_secrets,
):
    import boto3
    from aws_lambda_powertools.utilities.parameters import SSMProvider, base
    from botocore.stub import Stubber

    from crm.domain.errors import Unavailable

    # Given SSM throttling the read of woocommerce's secret
    client = boto3.client("ssm", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_client_error("get_parameter", service_error_code="ThrottlingException")
    stubber.add_client_error("get_parameter", service_error_code="ParameterNotFound")
    base.DEFAULT_PROVIDERS["ssm"] = SSMProvider(boto3_client=client)
    with stubber:
        # Then it is a failure to retry, not "no secret of its own" (the shared one would do)
        with pytest.raises(Unavailable):
            get_source_secrets("webhook_secret", "woocommerce")
        # And only SSM's "not found" means absent
        assert get_source_secrets("webhook_secret", "woocommerce") is None
    stubber.assert_no_pending_responses()


# -- nothing unsafe serves a shop (cold start) --------------------------------------------------


def cloud(**changes: str) -> dict[str, str]:
    """The prod stage as deployed, with changes (an empty value removes the variable)."""
    env = stage_environment("prod") | DEPLOYED | {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.11"}
    env.update(changes)
    return {k: v for k, v in env.items() if v}


def test_a_cloud_stage_as_deployed_starts():
    assert load_settings(cloud()).stage == "prod"


def test_the_placeholder_payment_provider_is_refused_outside_the_test_stages():
    for placeholder in ({"CRM_PAYMENTS": "local"}, {"CRM_PAYMENTS": ""}):  # set, or the default
        with pytest.raises(ConfigError, match="CRM_PAYMENTS=local is the placeholder"):
            load_settings(cloud(**placeholder))


@pytest.mark.parametrize(
    "sender",
    ["orders@shop.example", "a@example.com", "a@mail.example.org", "a@shop.test", "a@localhost"],
)
def test_an_example_sender_is_refused_outside_the_test_stages(sender):
    with pytest.raises(ConfigError, match="example address"):
        load_settings(cloud(CRM_SENDER_EMAIL=sender))


def test_a_cloud_stage_without_a_sender_is_refused():
    with pytest.raises(ConfigError, match="CRM_SENDER_EMAIL is not set"):
        load_settings(cloud(CRM_SENDER_EMAIL=""))


def test_the_local_stage_refuses_to_start_in_lambda():
    env = stage_environment("local")
    assert load_settings(env).stage == "local"  # the local stack

    with pytest.raises(ConfigError, match="local stage"):
        load_settings(env | {"AWS_EXECUTION_ENV": "AWS_Lambda_python3.11"})


def test_a_test_stage_may_use_the_placeholders_in_the_cloud():
    env = cloud(CRM_STAGE="test", CRM_PAYMENTS="local", CRM_SENDER_EMAIL="orders@shop.example")

    assert load_settings(env).stage == "test"
