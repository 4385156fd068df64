"""The foundation every stage imports: error types (``errors``), lazy package exports (``lazy``) and the
package version. Nothing here imports torch or any stage; the stages (``capture``, ``nerf``, ``render``,
``export``) and the app layer (``nerfstage.app``: CLI, whole-chain runner, report, viewer) build on it."""
