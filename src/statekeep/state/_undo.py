"""undo() and redo(): each a new version, back or forward one step of the
history (see _history), announced to subscribers like any other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._history import History


class Undoable:
    """AppState's undo and redo (a mixin: the attributes are AppState's)."""

    _lock: Any
    _history: History
    _coordinator: Any

    if TYPE_CHECKING:

        def _check_open(self) -> None: ...
        def _warm(self) -> Any: ...
        def _commit(
            self, root: Any, changes: tuple[tuple[Any, ...], ...], undoable: bool
        ) -> None: ...
        def _run_later(self) -> None: ...
        def _not_in_callback(self, what: str) -> None: ...

    def undo(self) -> bool:
        """Goes back one version (as a new version); False if there is none."""
        return self._step(back=True)

    def redo(self) -> bool:
        """Goes forward again after undo(); False if there is nothing to redo."""
        return self._step(back=False)

    def _step(self, back: bool) -> bool:
        """One step of the undo stack (back) or of the redo stack onto the other."""
        with self._lock:
            self._check_open()
            self._not_in_callback("undo()" if back else "redo()")
            self._warm()
            self._coordinator.flush()
            history = self._history
            source, target = (history.undo, history.redo) if back else (history.redo, history.undo)
            if not source:
                return False
            step = source.pop()
            target.append(step)
            # a step is an entry: (version, its root, the paths changed, bytes, the root before)
            self._commit(step[4] if back else step[1], step[2], False)
            self._run_later()
            return True

    @property
    def can_undo(self) -> bool:
        return bool(self._history.undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._history.redo)
