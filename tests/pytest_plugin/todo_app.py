"""The sample project's application: one entity class with an indexed field.

tests/test_pytest_plugin.py copies this folder into a pytester directory and
runs its tests there, as a project that installed statekeep would."""

from __future__ import annotations

from typing import Annotated

from statekeep import Entity, Indexed


class Todo(Entity):
    title: Annotated[str, Indexed()]
    done: bool = False
