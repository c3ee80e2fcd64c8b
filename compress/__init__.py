"""compress: prune, distill, quantize and export CNNs, and measure what it bought.

Importing this package is cheap; the stages import torch and onnxruntime when used.
"""

__version__ = "0.1.0"
