"""The entry points, one module per capability. Each one parses its trigger (an HTTP request, a
workflow step's input, an S3 notification, a schedule), calls one service of `crm.services`,
and answers. No business decisions here, and no imports between these modules: `app.py`
imports each lazily, inside the handler, so that a Lambda loads only what its trigger needs."""
