"""Prints the circles of statekeep's import graph, imports under TYPE_CHECKING
counted (tests/test_layers.py reads the imports):

    .venv/bin/python tests/import_cycles.py
"""

from __future__ import annotations

from test_layers import describe_cycles

if __name__ == "__main__":
    print(describe_cycles())
