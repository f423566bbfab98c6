"""Sionna, imported without touching torch's global random state.

When ``sionna.phy`` is first imported, its ``Config`` seeds its generators and, with no seed set, also calls
``torch.default_generator.seed()``: torch's *global* generator gets a fresh random seed. Code that had seeded
torch (``torch.manual_seed``) and then, for the first time in the process, built a Sionna block would go on
with an unseeded stream: ``semcom train --algorithm robust --variant jscc`` gave other weights in every
process. Every module of :mod:`semcom.phy` imports this one before Sionna, so the first import happens here,
with torch's global state saved and restored around it. (Sionna's own generators do not matter to semcom:
every block semcom builds draws from a generator of its own, :mod:`semcom.phy._rng`.)
"""

import torch

_state = torch.random.get_rng_state()
try:
    import sionna.phy  # noqa: F401
finally:
    torch.random.set_rng_state(_state)
    del _state
