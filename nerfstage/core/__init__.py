"""The foundation every stage imports: error types (``errors``), lazy package exports (``lazy``), the lazy loader
of optional native backends (``native``: C++ kernels, tinycudann) and the package version (``version``). Nothing
here imports a stage or the app, and importing it loads neither torch nor a compiled extension; the stages
(``capture``, ``nerf``, ``render``, ``export``) and the app layer (``nerfstage.app``: CLI, whole-chain runner,
report, viewer) build on it."""
