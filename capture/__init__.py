"""Capture stage: footage or photos -> posed dataset (nerfstudio ``transforms.json``), and the dataset loader."""
