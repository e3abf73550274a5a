"""Region detection (Faster R-CNN family) on box-annotated images: data, models, training,
evaluation and ONNX export. Everything here needs PyTorch; the service runs the exported
ONNX file through :mod:`iomt.inference.detector` instead.
"""
