"""One module per capability. Each handler parses its event into a typed value, calls the
domain through the store and adapters, and returns a result; app.py only delegates here."""
