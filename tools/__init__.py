"""Developer tools run from the repository root, never shipped in the wheel.

    make bench          # = python -m tools.bench        training throughput, docs/benchmarks.md
    make infra-smoke    # = python -m tools.infra_smoke  the server deployment path, for real
"""
