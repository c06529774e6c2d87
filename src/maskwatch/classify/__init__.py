"""The mask classifier: an ONNX model that labels face crops."""

from maskwatch.classify.model import DEFAULT_MODEL_PATH, MaskClassifier, ModelInfo

__all__ = ["DEFAULT_MODEL_PATH", "MaskClassifier", "ModelInfo"]
