"""nn.Module wrappers of vgops ops, one module per file."""
from .calibration_gate import CalibrationGate
from .gated_correlation import GatedCorrelation
from .glf_gates import MultiScaleGatedFusion, TextualGate
from .padded_coattention import PaddedCoAttention

__all__ = ["CalibrationGate", "GatedCorrelation", "MultiScaleGatedFusion", "PaddedCoAttention", "TextualGate"]
