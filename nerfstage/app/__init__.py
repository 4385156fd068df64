"""The app layer: the ``nerfstage`` CLI, the whole-chain runner (``run`` / ``demo``), its report and the viewer.

It imports the stages; no stage imports it.
"""
