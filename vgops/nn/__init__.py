"""nn.Module wrappers of vgops ops, one module per file."""
from .calibration_gate import CalibrationGate
from .gated_correlation import GatedCorrelation
from .padded_coattention import PaddedCoAttention

__all__ = ["CalibrationGate", "GatedCorrelation", "PaddedCoAttention"]
