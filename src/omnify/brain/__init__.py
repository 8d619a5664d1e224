"""The brain: explainable analytics over a client's synced numbers.

Pure modules (no I/O, no database, no HTTP): :mod:`.fatigue`, :mod:`.anomaly`,
:mod:`.allocation`, :mod:`.ltv`, :mod:`.ideas`, orchestrated per client by
:func:`omnify.brain.run.run_brain`. :mod:`.llm` is the one optional I/O module (an
OpenAI-compatible idea provider, off by default) and is never imported by the others.
See docs/brain.md for the methods and bench/brain_eval.py for their measured accuracy.
"""
