"""PynamoDB models. Table names come from the settings when a repository is built
(`bind_models`), so one model serves every stage and the tests' tables."""

from __future__ import annotations

import os

from pynamodb.attributes import (
    ListAttribute,
    MapAttribute,
    UnicodeAttribute,
    VersionAttribute,
)
from pynamodb.models import Model

from crm.config import Settings


class CustomerModel(Model):
    class Meta:
        table_name = "unbound-customers"
        region = "us-east-1"  # bind_models sets the stage's

    customer_id = UnicodeAttribute(hash_key=True)
    status = UnicodeAttribute(default="active")
    email = UnicodeAttribute(null=True)
    phone = UnicodeAttribute(null=True)
    first_name = UnicodeAttribute(null=True)
    last_name = UnicodeAttribute(null=True)
    birthday = UnicodeAttribute(null=True)
    gender = UnicodeAttribute(null=True)
    locale = UnicodeAttribute(null=True)
    timezone = UnicodeAttribute(null=True)
    address = MapAttribute(null=True)  # type: ignore[var-annotated]
    tags = ListAttribute(null=True)  # type: ignore[var-annotated]
    consents = MapAttribute(null=True)  # type: ignore[var-annotated]
    attributes = MapAttribute(null=True)  # type: ignore[var-annotated]
    external_ids = MapAttribute(null=True)  # type: ignore[var-annotated]
    possible_duplicates = ListAttribute(null=True)  # type: ignore[var-annotated]
    merged_into = UnicodeAttribute(null=True)
    erased_at = UnicodeAttribute(null=True)
    stats = MapAttribute(null=True)  # type: ignore[var-annotated]
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    # Optimistic locking: every save is conditional on the version it read.
    version = VersionAttribute()


class IdentityModel(Model):
    class Meta:
        table_name = "unbound-identities"
        region = "us-east-1"

    identity = UnicodeAttribute(hash_key=True)
    customer_id = UnicodeAttribute()
    created_at = UnicodeAttribute()


ALL_MODELS: tuple[type[Model], ...] = (CustomerModel, IdentityModel)


def bind_models(settings: Settings) -> None:
    """Point the models at the stage's tables. The endpoint comes from botocore's own
    configuration (`AWS_ENDPOINT_URL` locally), the region from the Lambda environment."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    for model, table in (
        (CustomerModel, settings.customers_table),
        (IdentityModel, settings.identities_table),
    ):
        if model.Meta.table_name == table and getattr(model.Meta, "region", None) == region:
            continue
        model.Meta.table_name = table
        model.Meta.region = region
        model._connection = None  # a new table or region needs a new connection
