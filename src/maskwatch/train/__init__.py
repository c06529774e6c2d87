"""Training a mask classifier: data audit, leakage-free split, Keras training, ONNX export.

Everything here except :mod:`maskwatch.train.audit` and :mod:`maskwatch.train.split` needs the
``train`` extra (``pip install "maskwatch[train]"``).
"""
