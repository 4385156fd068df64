"""nerfstage: phone video -> radiance field -> fly-throughs, meshes and LED-wall plates.

Importing this package is cheap: it imports neither torch nor any compiled extension. The stages live in
``nerfstage.capture``, ``nerfstage.nerf``, ``nerfstage.render`` and ``nerfstage.export``.
"""

from .core.version import __version__

__all__ = ["__version__"]
