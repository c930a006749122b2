"""The shared core of the CRM, shipped as a Lambda layer.

Dependencies point one way: `store` and `adapters` use `domain`; `domain` imports nothing of AWS.
"""
