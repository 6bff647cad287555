// Python entry point of vgops._C. The module has no functions: importing it runs the static
// TORCH_LIBRARY registrations of every op (pytorch/extension-cpp pattern), so no pybind11 and
// the extension can use the stable ABI (one abi3 wheel for every CPython >= 3.10).
#include <Python.h>

extern "C" {
PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "vgops C++/CUDA operators (registered with torch.library)",
      -1, nullptr};
  return PyModule_Create(&module_def);
}
}
