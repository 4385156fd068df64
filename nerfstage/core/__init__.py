"""The foundation every stage imports: error types (``errors``), lazy package exports (``lazy``), the package
version, the lazy loader of optional native backends (``native``: C++ kernels, tinycudann), the presets table
(``presets``) and the camera geometry all stages share: ``geometry`` (``Intrinsics``, the one OpenGL <-> OpenCV
axis conversion; numpy only), ``cameras`` (camera models: pixels <-> camera-frame rays) and ``rays`` (world ray
batches by pixel index) -- the one pixel-to-ray path of training, evaluation and rendering. Nothing here imports
a stage or the app; importing this package imports no submodule (``cameras`` and ``rays`` need torch, loaded only
when used) and no compiled extension. The stages (``capture``, ``nerf``, ``render``, ``export``) and the app layer
(``nerfstage.app``: CLI, whole-chain runner, report, viewer) build on it."""
