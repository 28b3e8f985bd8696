"""Benchmarks of e2e-proto: the encryption hot path and the relay, beside a floor and peers.

Run ``python -m benchmarks`` (or ``e2e-bench``); ``--help`` lists the options and
``benchmarks/README.md`` describes the method and each figure.
"""
