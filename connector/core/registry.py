"""The one plugin discovery: a check, sink or action is a module that defines a well-known name.

A package of plugins (``scan/checks``, ``delivery/sinks``, ``respond/actions``) is walked once; every public
module in it (not ``base``, not ``_private``) that defines the attribute registers one plugin. Adding a plugin
is adding a module, and two plugins that claim the same name fail loudly at start instead of shadowing each other.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import TypeGuard, TypeVar

PluginT = TypeVar("PluginT")


def discover(
    package: str,
    attribute: str,
    is_plugin: Callable[[object], TypeGuard[PluginT]],
    name_of: Callable[[PluginT], str],
) -> dict[str, PluginT]:
    """Plugins of ``package`` by name, sorted; a module whose ``attribute`` is of the wrong kind is a bug."""
    found: dict[str, PluginT] = {}
    origin: dict[str, str] = {}
    for module_info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module_info.name.startswith("_") or module_info.name == "base":
            continue
        module_name = f"{package}.{module_info.name}"
        plugin = getattr(importlib.import_module(module_name), attribute, None)
        if plugin is None:
            continue
        if not is_plugin(plugin):
            raise TypeError(f"{module_name}.{attribute} is not a plugin of this package: {plugin!r}")
        name = name_of(plugin)
        if name in found:
            raise RuntimeError(f"{module_name} and {origin[name]} both register {name!r}")
        found[name], origin[name] = plugin, module_name
    return dict(sorted(found.items()))
