// One C++ loop over a param group's tensors, for the planned step of rmsprop.torch: the
// checks and the version bump that Python would pay for tensor by tensor
// (rmsprop/torch/native/__init__.py says why and how it is built).
//
// Only what torch exports to extensions is used: THPVariable_Unpack, TensorImpl::data(),
// TensorImpl::grad(), TensorImpl::bump_version(). Both loops first read everything they need,
// so that the cache misses of many tensors overlap.
#include <Python.h>
#include <torch/csrc/autograd/python_variable.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <vector>

namespace {

enum FlatStatus : long { kMoved = 0, kGradsUnbound = 1, kBound = 2 };

c10::TensorImpl* impl_of(PyObject* tensor) {
  return THPVariable_Unpack(tensor).unsafeGetTensorImpl();
}

// A buffer of n int64 values (a NumPy int64 array, say), or a Python error.
bool int64_table(PyObject* obj, Py_buffer* view, Py_ssize_t n, const char* name) {
  if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) return false;
  const char* format = view->format == nullptr ? "B" : view->format;
  const char code = format[0] == '<' || format[0] == '=' || format[0] == '@' ? format[1]
                                                                               : format[0];
  if (view->itemsize != 8 || (code != 'q' && code != 'l') ||
      view->len != n * static_cast<Py_ssize_t>(sizeof(int64_t))) {
    PyErr_Format(PyExc_ValueError, "%s: %zd int64 values expected, got %zd bytes of '%s'",
                 name, n, view->len, format);
    PyBuffer_Release(view);
    return false;
  }
  return true;
}

// flat_status(params, expected, addresses, grad_impls) -> 0, 1 or 2
//
// 0 when `params` is not the list `expected` (the same objects, in order) or a parameter's
// data no longer starts at addresses[i] (`p.data = ...` moved it); else 1 when some
// parameter's gradient is not the tensor whose TensorImpl is at grad_impls[i]; else 2.
PyObject* flat_status(PyObject*, PyObject* args) {
  PyObject *params, *expected, *addresses_obj, *grads_obj;
  if (!PyArg_ParseTuple(args, "O!O!OO", &PyList_Type, &params, &PyList_Type, &expected,
                        &addresses_obj, &grads_obj))
    return nullptr;
  const Py_ssize_t n = PyList_GET_SIZE(expected);
  Py_buffer addresses, grads;
  if (!int64_table(addresses_obj, &addresses, n, "addresses")) return nullptr;
  if (!int64_table(grads_obj, &grads, n, "grad_impls")) {
    PyBuffer_Release(&addresses);
    return nullptr;
  }
  const auto* address = static_cast<const int64_t*>(addresses.buf);
  const auto* grad = static_cast<const int64_t*>(grads.buf);
  long status = PyList_GET_SIZE(params) == n ? kBound : kMoved;
  try {
    for (Py_ssize_t i = 0; i < n && status != kMoved; ++i) {
      PyObject* item = PyList_GET_ITEM(params, i);
      if (item != PyList_GET_ITEM(expected, i)) {  // else a tensor: the watch's own list
        status = kMoved;
        break;
      }
      const c10::TensorImpl* impl = impl_of(item);
      if (reinterpret_cast<int64_t>(impl->data()) != address[i]) status = kMoved;
      else if (reinterpret_cast<int64_t>(impl->grad().unsafeGetTensorImpl()) != grad[i])
        status = kGradsUnbound;
    }
  } catch (const std::exception&) {
    status = kMoved;  // data() refused (a tensor without storage): not the planned tensor
  }
  PyBuffer_Release(&addresses);
  PyBuffer_Release(&grads);
  return PyLong_FromLong(status);
}

// plan_grads(params, expected, has_grad, addresses, sizes, grad_addresses) -> list or None
//
// The gradients of a planned group's step, where the plan still holds: `params` is the list
// `expected` (the same objects, in order); parameter i has a gradient exactly where
// has_grad[i] (one byte each) says; and the j-th parameter with a gradient still has its data
// at addresses[j] and a dense, contiguous gradient of its dtype and of sizes[j] elements.
// Then the gradients' data addresses are written to grad_addresses (a writable buffer of as many int64) and the
// gradients returned as a list; else None, and grad_addresses is left as it was.
PyObject* plan_grads(PyObject*, PyObject* args) {
  PyObject *params, *expected, *has_obj, *addresses_obj, *sizes_obj, *out_obj;
  if (!PyArg_ParseTuple(args, "O!O!OOOO", &PyList_Type, &params, &PyList_Type, &expected,
                        &has_obj, &addresses_obj, &sizes_obj, &out_obj))
    return nullptr;
  const Py_ssize_t n = PyList_GET_SIZE(expected);
  Py_buffer has;
  if (PyObject_GetBuffer(has_obj, &has, PyBUF_C_CONTIGUOUS) != 0) return nullptr;
  if (has.len != n) {
    PyErr_Format(PyExc_ValueError, "has_grad: %zd bytes expected, got %zd", n, has.len);
    PyBuffer_Release(&has);
    return nullptr;
  }
  const auto* with_grad = static_cast<const unsigned char*>(has.buf);
  Py_ssize_t m = 0;
  for (Py_ssize_t i = 0; i < n; ++i) m += with_grad[i] != 0;
  Py_buffer addresses, sizes, out;
  if (!int64_table(addresses_obj, &addresses, m, "addresses")) {
    PyBuffer_Release(&has);
    return nullptr;
  }
  if (!int64_table(sizes_obj, &sizes, m, "sizes")) {
    PyBuffer_Release(&has);
    PyBuffer_Release(&addresses);
    return nullptr;
  }
  if (PyObject_GetBuffer(out_obj, &out, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0 ||
      out.len != m * static_cast<Py_ssize_t>(sizeof(int64_t))) {
    if (!PyErr_Occurred()) {
      PyErr_Format(PyExc_ValueError, "grad_addresses: %zd int64 values expected", m);
      PyBuffer_Release(&out);
    }
    PyBuffer_Release(&has);
    PyBuffer_Release(&addresses);
    PyBuffer_Release(&sizes);
    return nullptr;
  }
  const auto* address = static_cast<const int64_t*>(addresses.buf);
  const auto* size = static_cast<const int64_t*>(sizes.buf);
  std::vector<const at::Tensor*> grads;
  std::vector<int64_t> grad_address;
  grads.reserve(m);
  grad_address.reserve(m);
  bool holds = PyList_GET_SIZE(params) == n;
  Py_ssize_t j = 0;  // the parameters with a gradient so far
  try {
    for (Py_ssize_t i = 0; holds && i < n; ++i) {
      PyObject* item = PyList_GET_ITEM(params, i);
      if (item != PyList_GET_ITEM(expected, i)) {
        holds = false;
        break;
      }
      const c10::TensorImpl* impl = impl_of(item);
      const at::Tensor& grad = impl->grad();
      if (grad.defined() != (with_grad[i] != 0)) {
        holds = false;
      } else if (grad.defined()) {
        const c10::TensorImpl* g = grad.unsafeGetTensorImpl();
        holds = reinterpret_cast<int64_t>(impl->data()) == address[j] &&
                g->layout() == c10::kStrided && g->dtype() == impl->dtype() &&
                g->numel() == size[j] && g->is_contiguous();
        if (holds) {
          grads.push_back(&grad);
          grad_address.push_back(reinterpret_cast<int64_t>(g->data()));
        }
        ++j;
      }
    }
  } catch (const std::exception&) {
    holds = false;  // a tensor that refuses data() or is_contiguous(): the ordinary path says why
  }
  holds = holds && j == m;
  PyObject* result = Py_None;
  if (holds) {
    result = PyList_New(m);
    for (Py_ssize_t k = 0; result != nullptr && k < m; ++k) {
      PyObject* wrapped = nullptr;
      try {
        wrapped = THPVariable_Wrap(*grads[k]);
      } catch (const std::exception& error) {
        PyErr_SetString(PyExc_RuntimeError, error.what());
      }
      if (wrapped == nullptr) {
        Py_CLEAR(result);
        break;
      }
      PyList_SET_ITEM(result, k, wrapped);
    }
    if (result != nullptr)
      std::copy(grad_address.begin(), grad_address.end(), static_cast<int64_t*>(out.buf));
  } else {
    Py_INCREF(result);
  }
  PyBuffer_Release(&has);
  PyBuffer_Release(&addresses);
  PyBuffer_Release(&sizes);
  PyBuffer_Release(&out);
  return result;
}

// bump(tensors): every version counter + 1, as torch.autograd.graph.increment_version
// (which leaves inference tensors alone: they have no counter).
PyObject* bump(PyObject*, PyObject* tensors) {
  if (!PyList_Check(tensors)) {
    PyErr_Format(PyExc_TypeError, "bump: a list of tensors expected, got %s",
                 Py_TYPE(tensors)->tp_name);
    return nullptr;
  }
  const Py_ssize_t n = PyList_GET_SIZE(tensors);
  std::vector<c10::TensorImpl*> impls;
  impls.reserve(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    PyObject* item = PyList_GET_ITEM(tensors, i);
    // a C-level type check: THPVariable_Check may run Python (__instancecheck__) and throw
    if (!PyObject_TypeCheck(item, reinterpret_cast<PyTypeObject*>(THPVariableClass))) {
      PyErr_Format(PyExc_TypeError, "bump: item %zd is a %s, not a tensor", i,
                   Py_TYPE(item)->tp_name);
      return nullptr;  // before any counter moved
    }
    impls.push_back(impl_of(item));
  }
  // Read every counter before the first increment: an atomic increment waits for the loads
  // before it, which would serialise the cache misses.
  static volatile uint32_t seen;  // the loads' sink, so that they are not dropped
  uint32_t sum = 0;
  for (const auto* impl : impls) {
    const auto& counter = impl->version_counter();
    if (counter.enabled()) sum += counter.current_version();
  }
  seen = sum;
  for (auto* impl : impls)
    if (impl->version_counter().enabled()) impl->bump_version();
  Py_RETURN_NONE;
}

// No C++ exception may cross into Python (it would abort the process): the functions catch
// what their loops can throw; this is the last resort for anything else (bad_alloc, say).
template <PyObject* (*Function)(PyObject*, PyObject*)>
PyObject* guarded(PyObject* self, PyObject* args) noexcept {
  try {
    return Function(self, args);
  } catch (const std::exception& error) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, error.what());
  } catch (...) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "unknown C++ exception");
  }
  return nullptr;
}

PyMethodDef methods[] = {
    {"flat_status", guarded<flat_status>, METH_VARARGS, "See group_pass.cpp."},
    {"plan_grads", guarded<plan_grads>, METH_VARARGS, "See group_pass.cpp."},
    {"bump", guarded<bump>, METH_O, "See group_pass.cpp."},
    {nullptr, nullptr, 0, nullptr}};

#define RMSPROP_STR2(x) #x
#define RMSPROP_STR(x) RMSPROP_STR2(x)
PyModuleDef module = {PyModuleDef_HEAD_INIT, RMSPROP_STR(TORCH_EXTENSION_NAME), nullptr, -1,
                      methods};

}  // namespace

#define RMSPROP_CONCAT(a, b) a##b
#define RMSPROP_INIT(name) RMSPROP_CONCAT(PyInit_, name)
PyMODINIT_FUNC RMSPROP_INIT(TORCH_EXTENSION_NAME)(void) { return PyModule_Create(&module); }
