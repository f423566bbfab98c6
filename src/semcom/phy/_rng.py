"""Per-object random generators for Sionna blocks.

Every Sionna block draws its randomness from ``self.torch_rng``, which is
Sionna's process-wide ``sionna.phy.config.torch_rng(device)``. Two links in one
process would then share (and perturb) one stream, and seeding one link would
mean mutating a global. :func:`use_generator` instead points every Sionna
object inside a module at a ``torch.Generator`` of its own: it swaps the
object's class for a subclass (same name, same module, ``isinstance`` still
holds) whose ``torch_rng`` property returns that generator. Nothing else of the
Sionna class changes. The subclasses live in this module under encoded names
(resolved lazily by the module's ``__getattr__``), so seeded links pickle and
unpickle in a fresh process (Dask workers, multiprocessing).
"""

from __future__ import annotations

from semcom.phy import _sionna  # noqa: F401  (first: Sionna's import must not reseed torch)

# isort: split

import torch
from sionna.phy import Object

_SEEDED: dict[type, type] = {}
_PREFIX, _DOT, _SEP = "_Seeded__", "_D_", "__C__"


def _seeded_class(cls: type) -> type:
    sub = _SEEDED.get(cls)
    if sub is None:
        key = _PREFIX + cls.__module__.replace(".", _DOT) + _SEP + cls.__qualname__.replace(".", _DOT)
        sub = type(cls.__name__, (cls,), {
            "torch_rng": property(lambda self: self._semcom_generator),
            "_semcom_seeded": True,
            "__module__": __name__,
            "__qualname__": key,
            "__doc__": cls.__doc__,
        })
        _SEEDED[cls] = sub
        globals()[key] = sub
    return sub


def __getattr__(name: str):
    """Rebuild a seeded subclass from its encoded name (unpickling in a fresh process)."""
    if name.startswith(_PREFIX) and _SEP in name:
        import importlib

        module, qualname = name[len(_PREFIX):].split(_SEP, 1)
        obj = importlib.import_module(module.replace(_DOT, "."))
        for part in qualname.split(_DOT):
            obj = getattr(obj, part)
        return _seeded_class(obj)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_generator(module: torch.nn.Module, generator: torch.Generator) -> torch.nn.Module:
    """Make every Sionna object in ``module`` (itself included) draw from ``generator``; returns ``module``."""
    for m in module.modules():
        if isinstance(m, Object):
            if not getattr(type(m), "_semcom_seeded", False):
                m.__class__ = _seeded_class(type(m))
            m.__dict__["_semcom_generator"] = generator
    return module


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed``."""
    return torch.Generator(device="cpu").manual_seed(int(seed))
