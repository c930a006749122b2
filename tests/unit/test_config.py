import pytest

from crm.config import ConfigError, load_settings
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
