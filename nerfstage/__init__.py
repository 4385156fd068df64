"""nerfstage: phone video -> radiance field -> fly-throughs, meshes and LED-wall plates.

Importing this package is cheap: it imports neither torch nor any compiled extension. The stages live in
``nerfstage.capture``, ``nerfstage.nerf``, ``nerfstage.render`` and ``nerfstage.export``.
"""

__version__ = "0.1.0"
