"""Validation: does a model's score answer the use case's question on these cases?

The core works on a table of cases (:mod:`radpilot.validation.cases`) and is usable on
its own: :func:`radpilot.validation.binary.evaluate_binary`.
"""
