import pytest

from crm.config import ConfigError, get_secrets, load_settings
from crm_local.provision import stage_environment


def test_each_stage_of_the_chalice_config_is_a_valid_environment():
    for stage in ("local", "prod"):
        settings = load_settings(stage_environment(stage))
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
    env_secrets.setenv("CRM_WEBHOOK_SECRET_PREVIOUS", "old")
    with pytest.raises(ConfigError, match="CRM_WEBHOOK_SECRET"):
        get_secrets("webhook_secret")
