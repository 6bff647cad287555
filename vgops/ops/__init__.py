"""Public functions of every op, their fake kernels and autograd registrations."""
