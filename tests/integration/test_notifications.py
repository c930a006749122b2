"""The one send path for transactional messages, against moto: SES and SNS, the dedup key
(also under concurrency), consent, retries, the timeline route, and erasure."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError

from crm.adapters import messaging
from crm.domain.errors import Unavailable
from tests.conftest import OPERATOR

JSON = {**OPERATOR, "Content-Type": "application/json"}
ACCOUNT, REGION = "123456789012", "us-east-1"
TABLE = "crm-local-notifications"
CONFIRMED = {
    "order_name": "#1001",
    "total": "309.00 CNY",
    "lines": [{"title": "Jasmine tea", "quantity": 2}],
}
SHIPPED = {"order_name": "#1001", "carrier": "SF Express", "tracking_number": "SF1234567"}


def new_customer(api, **fields):
    response = api.http.post("/customers", headers=JSON, body=json.dumps(fields))
    assert response.status_code == 201, response.body
    return response.json_body["customer_id"]


def timeline(api, customer_id, query=""):
    response = api.http.get(f"/customers/{customer_id}/notifications{query}", headers=OPERATOR)
    return response.status_code, json.loads(response.body)


def emails_sent():
    from moto.ses.models import ses_backends

    return list(ses_backends[ACCOUNT][REGION].sent_messages)


def sms_sent():
    from moto.sns.models import sns_backends

    return list(sns_backends[ACCOUNT][REGION].sms_messages.values())


def table_items():
    ddb = boto3.client("dynamodb", region_name=REGION)
    return ddb.scan(TableName=TABLE, ConsistentRead=True)["Items"]


def test_an_email_is_sent_through_ses_and_shown_on_the_timeline(api):
    from crm.services import notifications

    customer_id = new_customer(api, email="Mei@Example.com", locale="zh-CN")

    outcome = notifications.send(customer_id, "order_confirmed", CONFIRMED, "order:1:confirmed")

    assert outcome["status"] == "sent" and outcome["channel"] == "email"
    assert outcome["to"] == "m***@example.com"
    [message] = emails_sent()
    assert message.destinations == {"ToAddresses": ["mei@example.com"]}
    assert message.source == messaging.DEFAULT_SENDER
    assert message.subject == "您的订单 #1001 已确认"
    assert "Jasmine tea \u00d7 2" in message.body and "309.00 CNY" in message.body
    assert boto3.client("ses", region_name=REGION).get_send_quota()["SentLast24Hours"] == 1

    status, body = timeline(api, customer_id)
    assert status == 200 and body["next_cursor"] is None
    [item] = body["items"]
    assert item == {
        "notification_id": outcome["notification_id"],
        "kind": "order_confirmed",
        "channel": "email",
        "to": "m***@example.com",
        "status": "sent",
        "reason": None,
        "locale": "zh-CN",
        "subject": "您的订单 #1001 已确认",
        "text": message.body,
        "dedup_key": "order:1:confirmed",
        "at": outcome["at"],
        "provider_message_id": message.id,
    }
    view = api.http.get(f"/customers/{customer_id}", headers=OPERATOR).json_body
    assert [n["notification_id"] for n in view["recent_notifications"]] == [
        outcome["notification_id"]
    ]
    export = api.http.get(f"/customers/{customer_id}/export", headers=OPERATOR).json_body
    assert export["notifications"][0]["to"] == "mei@example.com"


def test_an_english_profile_gets_english(api):
    from crm.services import notifications

    customer_id = new_customer(api, email="sam@example.com", locale="en-GB")
    notifications.send(customer_id, "order_shipped", SHIPPED, "order:2:shipped")
    [message] = emails_sent()
    assert message.subject == "Your order #1001 has shipped"
    assert "SF1234567" in message.body


def test_the_same_dedup_key_sends_once(api):
    from crm.services import notifications

    customer_id = new_customer(api, email="once@example.com")
    first = notifications.send(customer_id, "order_delivered", {"order_name": "#7"}, "o:7:dlv")
    second = notifications.send(customer_id, "order_delivered", {"order_name": "#7"}, "o:7:dlv")

    assert first["status"] == "sent"
    assert second["status"] == "duplicate" and second["dedup_key"] == "o:7:dlv"
    assert len(emails_sent()) == 1
    assert len(timeline(api, customer_id)[1]["items"]) == 1


def test_ten_concurrent_sends_with_one_key_send_one_message(api):
    from crm.services import notifications

    customer_id = new_customer(api, email="race@example.com")

    def attempt(_: int):
        return notifications.send(
            customer_id, "refund_issued", {"order_name": "#9", "amount": "10.00 CNY"}, "o:9:rf"
        )

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(attempt, range(10)))

    assert sorted(o["status"] for o in outcomes) == ["duplicate"] * 9 + ["sent"]
    assert len(emails_sent()) == 1
    assert len(timeline(api, customer_id)[1]["items"]) == 1


def test_email_opted_out_with_a_phone_goes_by_sms(api):
    from crm.services import notifications

    customer_id = new_customer(
        api, email="quiet@example.com", phone="13800138000", consents={"email": False}
    )

    outcome = notifications.send(customer_id, "order_shipped", SHIPPED, "order:3:shipped")

    assert outcome["status"] == "sent" and outcome["channel"] == "sms"
    assert outcome["reason"] == "email_opted_out"
    assert outcome["to"] == "+86*******8000"
    assert emails_sent() == []
    [(phone, text)] = sms_sent()
    assert phone == "+8613800138000"
    assert "SF1234567" in text and "顺丰" not in text  # the carrier as given
    item = timeline(api, customer_id)[1]["items"][0]
    assert item["subject"] is None and item["text"] == text


def test_no_contact_and_opted_out_are_recorded_as_skipped(api):
    from crm.services import notifications

    nobody = new_customer(api, external_ids={"shopify": "404"})
    opted_out = new_customer(api, email="no@example.com", consents={"email": False})

    first = notifications.send(nobody, "order_delivered", {"order_name": "#1"}, "k1")
    second = notifications.send(opted_out, "order_delivered", {"order_name": "#1"}, "k2")

    assert (first["status"], first["reason"], first["channel"]) == ("skipped", "no_contact", None)
    assert (second["status"], second["reason"]) == ("skipped", "opted_out")
    assert emails_sent() == [] and sms_sent() == []
    [item] = timeline(api, opted_out)[1]["items"]
    assert item["status"] == "skipped" and item["to"] is None and item["text"] is None
    # A skip is an outcome too: the same key does not try again.
    again = notifications.send(nobody, "order_delivered", {"order_name": "#1"}, "k1")
    assert again["status"] == "duplicate"


def test_an_unavailable_provider_gives_the_key_back_so_a_retry_sends(api, monkeypatch):
    from crm.services import notifications

    customer_id = new_customer(api, email="retry@example.com")
    real = messaging.send_email

    def down(*_args, **_kwargs):
        raise Unavailable("SES is down")

    monkeypatch.setattr(messaging, "send_email", down)
    with pytest.raises(Unavailable):
        notifications.send(customer_id, "order_delivered", {"order_name": "#5"}, "o:5:dlv")
    assert emails_sent() == []
    assert timeline(api, customer_id)[1]["items"] == []

    monkeypatch.setattr(messaging, "send_email", real)
    outcome = notifications.send(customer_id, "order_delivered", {"order_name": "#5"}, "o:5:dlv")
    assert outcome["status"] == "sent"
    assert len(emails_sent()) == 1


def test_a_refused_message_is_recorded_as_failed_and_not_raised(api, monkeypatch):
    from crm.services import notifications

    customer_id = new_customer(api, email="refused@example.com")
    monkeypatch.setenv("CRM_SENDER_EMAIL", "unverified@shop.example")  # SES rejects it

    outcome = notifications.send(customer_id, "order_delivered", {"order_name": "#6"}, "o:6")

    assert outcome["status"] == "failed"
    assert outcome["reason"] == "delivery_refused:MessageRejected"
    assert emails_sent() == []
    again = notifications.send(customer_id, "order_delivered", {"order_name": "#6"}, "o:6")
    assert again["status"] == "duplicate"  # a refusal for good is not retried


def test_the_adapter_tells_a_refusal_from_an_outage(aws, monkeypatch):
    class Failing:
        def __init__(self, code):
            self.code = code

        def publish(self, **_kwargs):
            raise ClientError({"Error": {"Code": self.code, "Message": "x"}}, "Publish")

    with monkeypatch.context() as patched:
        patched.setattr(messaging, "_sns", lambda: Failing("Throttling"))
        with pytest.raises(Unavailable):
            messaging.send_sms("+8613800138000", "hi")
        patched.setattr(messaging, "_sns", lambda: Failing("InvalidParameter"))
        with pytest.raises(messaging.DeliveryRefused):
            messaging.send_sms("+8613800138000", "hi")
    with pytest.raises(messaging.DeliveryRefused):  # moto checks E.164, as SNS does
        messaging.send_sms("not a number", "hi")


def test_an_incomplete_context_is_refused_before_anything_is_claimed(api):
    from crm.domain.errors import ValidationFailed
    from crm.services import notifications

    customer_id = new_customer(api, email="ctx@example.com")
    with pytest.raises(ValidationFailed):
        notifications.send(customer_id, "order_shipped", {"order_name": "#1"}, "o:1:shp")
    assert notifications.send(customer_id, "order_shipped", SHIPPED, "o:1:shp")["status"] == "sent"


def test_the_timeline_pages_newest_first(api):
    from crm.services import notifications

    customer_id = new_customer(api, email="pages@example.com")
    sent = [
        notifications.send(customer_id, "order_delivered", {"order_name": f"#{i}"}, f"p:{i}")
        for i in range(3)
    ]

    status, first = timeline(api, customer_id, "?limit=2")
    assert status == 200 and len(first["items"]) == 2 and first["next_cursor"]
    status, rest = timeline(api, customer_id, f"?limit=2&cursor={first['next_cursor']}")
    assert status == 200 and rest["next_cursor"] is None
    items = first["items"] + rest["items"]
    assert {i["notification_id"] for i in items} == {s["notification_id"] for s in sent}
    assert [i["at"] for i in items] == sorted((i["at"] for i in items), reverse=True)
    assert timeline(api, customer_id, "?limit=0")[0] == 422


def test_an_unknown_customer_is_404(api):
    from crm.domain.errors import NotFound
    from crm.services import notifications

    status, body = timeline(api, "cus_nobody")
    assert status == 404 and body["error"]["code"] == "not_found"
    with pytest.raises(NotFound):
        notifications.send("cus_nobody", "order_delivered", {"order_name": "#1"}, "x")


def test_erasure_leaves_no_text_or_address_in_the_notifications_table(api):
    from crm.services import notifications

    email_customer = new_customer(api, email="gone@example.com", phone="13900139000")
    sms_customer = new_customer(api, phone="13700137000")
    notifications.send(email_customer, "order_confirmed", CONFIRMED, "e:1")
    notifications.send(email_customer, "order_shipped", SHIPPED, "e:2")
    notifications.send(sms_customer, "order_shipped", SHIPPED, "e:3")
    held = json.dumps(table_items(), ensure_ascii=False)
    assert "gone@example.com" in held and "+8613700137000" in held

    for customer_id in (email_customer, sms_customer):
        erased = api.http.delete(f"/customers/{customer_id}", headers=OPERATOR)
        assert erased.status_code == 200, erased.body
    assert erased.json_body["notifications_forgotten"] == 1

    held = json.dumps(table_items(), ensure_ascii=False)
    for value in ("gone@example.com", "13900139000", "13700137000", "#1001", "SF1234567"):
        assert value not in held
    records = [i for i in table_items() if not i["customer_id"]["S"].startswith("dedup#")]
    assert len(records) == 3
    for item in records:
        assert not {"to", "subject", "text"} & set(item)
        assert {"kind", "channel", "status", "at"} <= set(item)
    kinds = sorted(i["kind"]["S"] for i in records if i["customer_id"]["S"] == email_customer)
    assert kinds == ["order_confirmed", "order_shipped"]  # what happened stays, for the books
    # ... but nothing about an erased person is served any more (decision 58)
    status, body = timeline(api, email_customer)
    assert (status, body["error"]["code"]) == (404, "erased")

    # A message for an erased customer is not sent, and holds nothing personal.
    later = notifications.send(email_customer, "order_delivered", {"order_name": "#2"}, "e:4")
    assert (later["status"], later["reason"], later["to"]) == ("skipped", "erased", None)
