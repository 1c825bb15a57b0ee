"""Package namespaces whose names import on first use (PEP 562).

`import vscale.launch` runs `vscale/__init__.py` first; were the package namespaces eager, every
command would import the models, the diagnostics and Lightning at start (about 10 s of CPU on a 2-core VM) even
when it needs none of them (the launcher and `vscale.prepare` write files; BENCHMARKS.md, command start-up)."""

import importlib


def exports(package: str, homes: dict[str, list[str]]):
    """The `__getattr__` and `__all__` of `package`, whose names live in its submodules (`homes`:
    submodule -> the names it defines)."""
    where = {name: f"{package}.{module}" for module, names in homes.items() for name in names}

    def __getattr__(name: str):
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(where[name]), name)

    return __getattr__, sorted(where)
