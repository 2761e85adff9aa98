"""The image canvas (QGraphicsView) and its overlay layers, one QGraphicsItem per layer."""
from frcnn_gui.canvas.layers import BoxSetLayer, DetectionLayer, GroundTruthLayer, class_colour
from frcnn_gui.canvas.view import Canvas

__all__ = ["Canvas", "BoxSetLayer", "DetectionLayer", "GroundTruthLayer", "class_colour"]
