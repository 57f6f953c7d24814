"""Deployment formats: ONNX export and int8, weight-only and mixed-precision rewrites."""
