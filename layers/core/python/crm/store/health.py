"""Can the stage's tables be reached? Used by `GET /health`."""

from __future__ import annotations

from pynamodb.exceptions import PynamoDBException

from crm.config import get_settings
from crm.store.models import ALL_MODELS, bind_models


def check_tables() -> dict[str, bool]:
    bind_models(get_settings())
    result: dict[str, bool] = {}
    for model in ALL_MODELS:
        try:
            result[model.Meta.table_name] = bool(model.exists())
        except PynamoDBException:
            result[model.Meta.table_name] = False
    return result
