import pytest

from crm.config import ConfigError, get_secrets, load_settings
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
    for key in ("CRM_WEBHOOK_SECRET", "CRM_WEBHOOK_SECRET_PREVIOUS"):
        monkeypatch.delenv(key, raising=False)
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
