"""The application layer: one module per use-case family (record an order event, redeem points,
allocate, refund, send, import a batch...). Services coordinate `store`, `adapters` and `domain`
and know nothing of HTTP or of Lambda events: `functions/` parses a trigger, calls one service
and answers."""
