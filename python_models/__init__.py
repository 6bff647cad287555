"""Model definitions (GLF, DRN, FSAN, IA-Net, FSM) built on the public vgops API."""
