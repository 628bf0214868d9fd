"""statekeep's benchmarks: each hot path side by side with the raw driver (the
limit) and SQLAlchemy, in one process run. `python -m benchmarks --help`.

Importable, so a test can smoke-run them:
`benchmarks.main(["--quick", "--no-write"])` returns 0.
"""

from .cli import main

__all__ = ["main"]
