"""The Chalice app: the only place where triggers meet code.

Every Lambda (routes, schedules, the S3 drop-folder, Step Functions tasks) is declared here
as a one-line delegation into `functions/`. No logic and no heavy imports: this module is the
API Lambda's cold start.
"""

from chalice import AuthResponse, Chalice, ConvertToMiddleware

from crm.api import check_operator_token, contract_errors
from crm.config import get_settings
from crm.observability import logger, metrics

settings = get_settings()  # a stage with a missing variable fails here, at cold start
app = Chalice(app_name="shop-crm")
app.register_middleware(ConvertToMiddleware(logger.inject_lambda_context(clear_state=True)))
app.register_middleware(ConvertToMiddleware(metrics.log_metrics))
app.register_middleware(contract_errors, "http")
# Bodies are JSON whatever the Content-Type says (`curl -d` sends a form type): a body that is
# not JSON is a 400 from the handler, never Chalice's own 415.
ANY_BODY = ["application/json", "*/*"]


@app.authorizer()
def operator(auth_request):
    check_operator_token(auth_request.token)
    return AuthResponse(routes=["*"], principal_id="operator")


# -- open ---------------------------------------------------------------------------------------


@app.route("/health", methods=["GET"])
def health():
    from functions import system

    return system.health()


@app.route("/openapi.json", methods=["GET"])
def openapi():
    from functions import system

    return system.openapi()


# -- customers ----------------------------------------------------------------------------------


@app.route("/customers", methods=["POST"], authorizer=operator, content_types=ANY_BODY)
def upsert_customer():
    from functions import profiles

    return profiles.upsert(app.current_request)


@app.route("/customers", methods=["GET"], authorizer=operator)
def find_customers():
    from functions import profiles

    return profiles.find(app.current_request)


@app.route("/customers/{customer_id}", methods=["GET"], authorizer=operator)
def get_customer(customer_id):
    from functions import profiles

    return profiles.get_customer(customer_id)


@app.route(
    "/customers/{customer_id}", methods=["PATCH"], authorizer=operator, content_types=ANY_BODY
)
def patch_customer(customer_id):
    from functions import profiles

    return profiles.patch(app.current_request, customer_id)


@app.route("/customers/{customer_id}", methods=["DELETE"], authorizer=operator)
def erase_customer(customer_id):
    from functions import profiles

    return profiles.delete(customer_id)


@app.route(
    "/customers/{customer_id}/merge", methods=["POST"], authorizer=operator, content_types=ANY_BODY
)
def merge_customer(customer_id):
    from functions import profiles

    return profiles.merge(app.current_request, customer_id)


@app.route("/customers/{customer_id}/orders", methods=["GET"], authorizer=operator)
def customer_orders(customer_id):
    from functions import profiles

    return profiles.list_orders(app.current_request, customer_id)


@app.route("/customers/{customer_id}/export", methods=["GET"], authorizer=operator)
def export_customer(customer_id):
    from functions import profiles

    return profiles.export(customer_id)


# -- orders and webhooks (authenticated by signature, not by the operator token) ---------------


@app.route("/webhooks/shopify", methods=["POST"], content_types=ANY_BODY)
def shopify_webhook():
    from functions import webhooks

    return webhooks.shopify_webhook(app.current_request)


@app.route("/webhooks/orders", methods=["POST"], content_types=ANY_BODY)
def generic_webhook():
    from functions import webhooks

    return webhooks.generic_webhook(app.current_request)


@app.route("/orders/{order_id}", methods=["GET"], authorizer=operator)
def get_order(order_id):
    from functions import orders

    return orders.get_order(order_id)


@app.route(
    "/orders/{order_id}/refunds", methods=["POST"], authorizer=operator, content_types=ANY_BODY
)
def refund_order(order_id):
    from functions import refunds

    return refunds.post_refund(app.current_request, order_id)


@app.route(
    "/orders/{order_id}/cancel", methods=["POST"], authorizer=operator, content_types=ANY_BODY
)
def cancel_order(order_id):
    from functions import refunds

    return refunds.post_cancel(app.current_request, order_id)


@app.route("/logistics/events", methods=["POST"], content_types=ANY_BODY)
def logistics_event():
    from functions import logistics

    return logistics.post_event(app.current_request)


@app.route("/cases", methods=["GET"], authorizer=operator)
def list_cases():
    from functions import cases

    return cases.list_cases(app.current_request)


@app.route(
    "/cases/{case_id}/resolve", methods=["POST"], authorizer=operator, content_types=ANY_BODY
)
def resolve_case(case_id):
    from functions import cases

    return cases.resolve_case(app.current_request, case_id)


# -- workflow steps (Step Functions tasks) ------------------------------------------------------


@app.lambda_function(name="fulfilment_step")
def fulfilment_step(event, context):
    from functions import fulfilment

    return fulfilment.fulfilment_step(event, context)


@app.lambda_function(name="exception_step")
def exception_step(event, context):
    from functions import cases

    return cases.exception_step(event, context)


@app.lambda_function(name="refund_step")
def refund_step(event, context):
    from functions import refunds

    return refunds.refund_step(event, context)


# -- the S3 drop-folder (its notification is declared with the bucket in infra/resources.py) ----


@app.lambda_function(name="import_file")
def import_file(event, context):
    from functions import imports

    return imports.import_file(event, context)


@app.lambda_function(name="import_step")
def import_step(event, context):
    from functions import imports

    return imports.import_step(event, context)


# -- loyalty ------------------------------------------------------------------------------------


@app.route("/loyalty/program", methods=["GET"], authorizer=operator)
def loyalty_program():
    from functions import ledger

    return ledger.get_program()


@app.route("/customers/{customer_id}/points", methods=["GET"], authorizer=operator)
def customer_points(customer_id):
    from functions import ledger

    return ledger.get_points(app.current_request, customer_id)


@app.route(
    "/customers/{customer_id}/points/redemptions",
    methods=["POST"],
    authorizer=operator,
    content_types=ANY_BODY,
)
def redeem_points(customer_id):
    from functions import ledger

    return ledger.post_redemption(app.current_request, customer_id)


@app.route(
    "/customers/{customer_id}/points/adjustments",
    methods=["POST"],
    authorizer=operator,
    content_types=ANY_BODY,
)
def adjust_points(customer_id):
    from functions import ledger

    return ledger.post_adjustment(app.current_request, customer_id)


# -- inventory and messages ---------------------------------------------------------------------


@app.route("/inventory/{sku}", methods=["GET"], authorizer=operator)
def get_inventory(sku):
    from functions import inventory

    return inventory.get_inventory(sku)


@app.route("/inventory/{sku}", methods=["PUT"], authorizer=operator, content_types=ANY_BODY)
def put_inventory(sku):
    from functions import inventory

    return inventory.put_inventory(app.current_request, sku)


@app.route("/warehouses", methods=["GET"], authorizer=operator)
def list_warehouses():
    from functions import inventory

    return inventory.get_warehouses()


@app.route("/customers/{customer_id}/notifications", methods=["GET"], authorizer=operator)
def customer_notifications(customer_id):
    from functions import notifications

    return notifications.list_notifications(app.current_request, customer_id)


# -- segments, jobs, reports ---------------------------------------------------------------------


@app.route("/segments", methods=["GET"], authorizer=operator)
def list_segments():
    from functions import segments

    return segments.list_segments()


@app.route("/segments/preview", methods=["POST"], authorizer=operator, content_types=ANY_BODY)
def preview_segment():
    from functions import segments

    return segments.preview(app.current_request)


@app.route("/segments/{name}", methods=["GET"], authorizer=operator)
def get_segment(name):
    from functions import segments

    return segments.get_segment(name)


@app.route("/segments/{name}", methods=["PUT"], authorizer=operator, content_types=ANY_BODY)
def put_segment(name):
    from functions import segments

    return segments.put_segment(app.current_request, name)


@app.route("/segments/{name}", methods=["DELETE"], authorizer=operator)
def delete_segment(name):
    from functions import segments

    return segments.delete_segment(name)


@app.route("/segments/{name}/members", methods=["GET"], authorizer=operator)
def segment_members(name):
    from functions import segments

    return segments.members(app.current_request, name)


@app.route("/jobs/{name}/runs", methods=["POST"], authorizer=operator, content_types=ANY_BODY)
def start_job_run(name):
    from functions import jobs

    return jobs.start_run(app.current_request, name)


@app.route("/jobs/{name}/runs/{run_id}", methods=["GET"], authorizer=operator)
def get_job_run(name, run_id):
    from functions import jobs

    return jobs.get_run(name, run_id)


@app.route("/reports/{report}", methods=["GET"], authorizer=operator)
def get_report(report):
    from functions import reports

    return reports.get_report(app.current_request, report)


# The analytics function (pandas; its own package): job runs, previews, reports, erasure's
# reach into the snapshot.
@app.lambda_function(name="analytics")
def analytics(event, context):
    from functions import analytics

    return analytics.handle(event, context)


# -- scheduled jobs -----------------------------------------------------------------------------


# 02:30 in the shop's day (UTC+8 by default): after the day's orders, before its morning.
@app.schedule("cron(30 18 * * ? *)", name="segmentation")
def segmentation(event):
    from functions import analytics

    return analytics.segmentation_schedule(event.to_dict(), event.context)


@app.schedule("cron(0 19 * * ? *)", name="reports")
def reports(event):
    from functions import analytics

    return analytics.reports_schedule(event.to_dict(), event.context)


@app.schedule("cron(15 2 * * ? *)", name="points_expiry")
def points_expiry(event):
    from functions import ledger

    return ledger.points_expiry_job(event.to_dict(), event.context)


@app.schedule("rate(1 hour)", name="low_stock")
def low_stock(event):
    from functions import inventory

    return inventory.low_stock_job(event.to_dict(), event.context)
