"""Experiments: one module per study (it declares and trains its runs, tabulates them, and holds
the rule of its claims table), the claims tables, and what a notebook calls.

Nothing is imported here, so importing one study does not import the others (``autotune``
brings in ``torch._dynamo``)."""
