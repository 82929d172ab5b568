"""A STAND-IN for Nuke's ``nuke`` module, for tests only: this is not Nuke, and Nuke was not run.

It implements just the documented calls farmplug's Nuke menu uses, with the signatures of
Foundry's Python API reference (learn.foundry.com/nuke/developers, ``nuke`` module):
``nuke.menu(name)``, ``Menu.addMenu(name)``, ``Menu.addCommand(name, command, shortcut, icon,
tooltip, index)``, ``nuke.selectedNodes(filter)``, ``nuke.toNode(name)``, ``nuke.nodes.Read(**knobs)``,
a node's ``knob[...]`` with ``value()``/``setValue()``, ``name()``, ``Class()``, ``xpos()``,
``ypos()``, ``setXYpos(x, y)``, ``nuke.ProgressTask(name)`` with ``setProgress(i)``,
``setMessage(s)`` and ``isCancelled()``, ``nuke.executeInMainThread(call, args=(), kwargs={})``,
``nuke.message(prompt)``, ``nuke.choice(title, prompt, options, default=0)`` and
``nuke.getInput(prompt, default)``.

What a test decides, it scripts: the selection, the answers to dialogs, whether a progress task
is cancelled. ``executeInMainThread`` queues the call, as Nuke does, and :meth:`StandIn.run_main_thread`
plays Nuke's event loop.
"""

from __future__ import annotations

import itertools
import sys
import threading
import types
from collections.abc import Callable


class Knob:
    def __init__(self, value):
        self._value = value

    def value(self):
        return self._value

    def setValue(self, value):
        self._value = value


class Node:
    def __init__(self, cls: str, name: str, knobs: dict):
        self._class, self._name = cls, name
        self._knobs = {k: Knob(v) for k, v in knobs.items()}
        self._xy = (0, 0)

    def __getitem__(self, name: str) -> Knob:
        return self._knobs[name]

    def knobs(self) -> dict:
        return dict(self._knobs)

    def name(self) -> str:
        return self._name

    def Class(self) -> str:
        return self._class

    def xpos(self) -> int:
        return self._xy[0]

    def ypos(self) -> int:
        return self._xy[1]

    def setXYpos(self, x: int, y: int) -> None:
        self._xy = (x, y)


class Menu:
    def __init__(self, name: str):
        self.name = name
        self.items: dict[str, Menu | Callable | str] = {}

    def addMenu(self, name: str, **_) -> Menu:
        menu = self.items.get(name)
        if not isinstance(menu, Menu):
            menu = self.items[name] = Menu(name)
        return menu

    def addCommand(self, name: str, command=None, shortcut: str = "", icon: str = "", tooltip: str = "",
                   index: int = -1, **_):
        self.items[name] = command
        return command


class ProgressTask:
    def __init__(self, name: str, owner: StandIn):
        self.name = name
        self.progress: list[int] = []
        self.messages: list[str] = []
        self._owner = owner
        owner.tasks.append(self)

    def setProgress(self, i: int) -> None:
        if not isinstance(i, int):
            raise TypeError("setProgress takes an integer")
        self.progress.append(i)

    def setMessage(self, s: str) -> None:
        self.messages.append(s)

    def isCancelled(self) -> bool:
        return self._owner.cancel_tasks


class StandIn:
    """One stand-in ``nuke`` module and the state a test scripts and inspects."""

    def __init__(self):
        self.menus: dict[str, Menu] = {}
        self.dag: list[Node] = []
        self.selected: list[Node] = []
        self.messages: list[str] = []
        self.answers: list = []
        self.asked: list[tuple] = []
        self.tasks: list[ProgressTask] = []
        self.cancel_tasks = False
        self.main_queue: list[tuple[Callable, tuple, dict]] = []
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.module = self._module()

    # -- what the test does ----------------------------------------------------------------------
    def read(self, file: str, first: int, last: int, *, selected: bool = True) -> Node:
        node = self._add("Read", {"file": file, "first": float(first), "last": float(last)})
        if selected:
            self.selected.append(node)
        return node

    def run_main_thread(self) -> list:
        """Run the calls worker threads queued for the main thread, in order; returns their results."""
        with self._lock:
            queued, self.main_queue = self.main_queue, []
        return [call(*args, **kwargs) for call, args, kwargs in queued]

    def install(self) -> types.ModuleType:
        sys.modules["nuke"] = self.module
        return self.module

    # -- the module --------------------------------------------------------------------------------
    def _add(self, cls: str, knobs: dict) -> Node:
        node = Node(cls, f"{cls}{next(self._counter)}", knobs)
        self.dag.append(node)
        return node

    def _module(self) -> types.ModuleType:
        nuke = types.ModuleType("nuke", "STAND-IN for Nuke's nuke module (tests only; not Nuke)")
        owner = self

        def menu(name: str) -> Menu:
            return owner.menus.setdefault(name, Menu(name))

        def selectedNodes(filter: str | None = None) -> list[Node]:
            return [n for n in owner.selected if filter is None or n.Class() == filter]

        def toNode(name: str) -> Node | None:
            return next((n for n in owner.dag if n.name() == name), None)

        def executeInMainThread(call, args=(), kwargs=None):
            if not isinstance(args, tuple):
                raise TypeError("args must be a tuple")
            with owner._lock:
                owner.main_queue.append((call, args, kwargs or {}))

        def message(prompt: str) -> None:
            if threading.current_thread() is not threading.main_thread():
                raise RuntimeError("stand-in: nuke.message called outside the main thread")
            owner.messages.append(prompt)

        def _answer(kind: str, *question):
            owner.asked.append((kind, *question))
            return owner.answers.pop(0) if owner.answers else None

        def choice(title: str, prompt: str, options, default: int = 0):
            return _answer("choice", title, prompt, list(options), default)

        def getInput(prompt: str, default: str = ""):
            return _answer("getInput", prompt, default)

        class _Nodes:
            def Read(self, **knobs) -> Node:
                if threading.current_thread() is not threading.main_thread():
                    raise RuntimeError("stand-in: nodes are created in the main thread only")
                return owner._add("Read", knobs)

        def progress_task(name: str) -> ProgressTask:
            return ProgressTask(name, owner)

        nuke.menu, nuke.selectedNodes, nuke.toNode = menu, selectedNodes, toNode
        nuke.executeInMainThread, nuke.message, nuke.choice, nuke.getInput = executeInMainThread, message, choice, getInput
        nuke.nodes = _Nodes()
        nuke.ProgressTask = progress_task
        return nuke
