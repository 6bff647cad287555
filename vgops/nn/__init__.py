"""nn.Module wrappers of vgops ops, one module per file."""
from .calibration_gate import CalibrationGate

__all__ = ["CalibrationGate"]
