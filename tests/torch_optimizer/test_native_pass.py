"""The C++ loop of :mod:`rmsprop.torch.native` against its Python stand-in and torch: the
same status for every change a flat group can see between steps, the same version counters
as :func:`torch.autograd.graph.increment_version`, and a step that still runs, with the same
numbers, where the loop cannot be built."""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pytest
import torch

from rmsprop.torch import RMSprop, native
from rmsprop.torch.group_plan import plans_of
from rmsprop.torch.native import BOUND, GRADS_UNBOUND, MOVED, group_pass, loader

from native_common import use_path


@pytest.fixture
def compiled(monkeypatch):
    use_path(monkeypatch, "native")
    return native.load()


def flat_group(seed=0, shapes=((3,), (700,), (4, 5), (1000,))):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)
    opt = RMSprop(params, lr=1e-2, impl="fused", flat=True)
    layout = next(iter(opt.__dict__["_rmsprop_layouts"].values()))[1]
    return params, opt, layout


def _reorder(params, opt):
    opt.param_groups[0]["params"][0], opt.param_groups[0]["params"][1] = params[1], params[0]


def _same_memory_another_parameter(params, opt, i=0):
    """Another Parameter object on the same memory, with the same gradient: only the identity
    check sees it."""
    other = torch.nn.Parameter(params[i].data)
    other.grad = params[i].grad
    opt.param_groups[0]["params"][i] = other


# change -> the status it must give
CHANGES = {
    "nothing": (lambda params, opt: None, BOUND),
    "grad_replaced": (lambda params, opt: setattr(params[1], "grad", params[1].grad * 2),
                      GRADS_UNBOUND),
    "grad_none": (lambda params, opt: setattr(params[3], "grad", None), GRADS_UNBOUND),
    "grad_detached_view": (  # the same memory, another tensor: not the view
        lambda params, opt: setattr(params[0], "grad", params[0].grad.detach()), GRADS_UNBOUND),
    "data_moved_out": (lambda params, opt: setattr(params[2], "data", params[2].data.clone()),
                       MOVED),
    "data_moved_and_grad_replaced": (
        lambda params, opt: (setattr(params[0], "grad", params[0].grad * 2),
                             setattr(params[3], "data", params[3].data.clone())), MOVED),
    "param_list_reordered": (_reorder, MOVED),
    "same_memory_another_parameter": (_same_memory_another_parameter, MOVED),
    "param_list_shorter": (lambda params, opt: opt.param_groups[0]["params"].pop(), MOVED),
    "param_list_longer": (
        lambda params, opt: opt.param_groups[0]["params"].append(torch.nn.Parameter(
            torch.zeros(2))), MOVED),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_the_loop_and_python_see_every_change_alike(compiled, change):
    params, opt, layout = flat_group()
    opt.step()
    act, expected = CHANGES[change]
    act(params, opt)
    group_params = opt.param_groups[0]["params"]
    assert layout.watch.status_in_python(group_params) == expected
    assert layout.watch.status(group_params) == expected  # the C++ loop


def planned_group(seed=0, shapes=((3,), (700,), (4, 5), (1000,))):
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    for p in params[1:]:  # the first has no gradient: the plan leaves it out
        p.grad = torch.randn(p.shape, generator=gen)
    opt = RMSprop(params, lr=1e-2, impl="fused")
    opt.step()
    return params, opt, plans_of(opt)[id(opt.param_groups[0])].watch


# change -> whether the plan still holds after it
PLAN_CHANGES = {
    "nothing": (lambda params, opt: None, True),
    "new_grad_tensors": (  # zero_grad(set_to_none=True) and backward: new addresses
        lambda params, opt: [setattr(p, "grad", p.grad.clone()) for p in params[1:]], True),
    "grad_removed": (lambda params, opt: setattr(params[2], "grad", None), False),
    "last_grad_removed": (lambda params, opt: setattr(params[3], "grad", None), False),
    "grad_moved_to_another_param": (
        lambda params, opt: (setattr(params[0], "grad", torch.ones(3)),
                             setattr(params[3], "grad", None)), False),
    "grad_added": (lambda params, opt: setattr(params[0], "grad", torch.ones(3)), False),
    "grad_not_contiguous": (
        lambda params, opt: setattr(params[2], "grad", torch.ones(5, 4).t()), False),
    "grad_dtype_changed_through_data": (  # torch's grad setter refuses it, .data does not
        lambda params, opt: setattr(params[2].grad, "data", params[2].grad.data.double()),
        False),
    "grad_sparse": (
        lambda params, opt: setattr(params[1], "grad", torch.ones(700).to_sparse()), False),
    "data_moved_out": (lambda params, opt: setattr(params[3], "data", params[3].data.clone()),
                       False),
    "data_of_the_gradless_moved": (  # not in the plan: its address is not watched
        lambda params, opt: setattr(params[0], "data", params[0].data.clone()), True),
    "param_list_reordered": (_reorder, False),
    "param_list_shorter": (lambda params, opt: opt.param_groups[0]["params"].pop(), False),
    "same_memory_another_parameter": (  # only the identity check sees it
        lambda params, opt: _same_memory_another_parameter(params, opt, 1), False),
}


@pytest.mark.parametrize("change", list(PLAN_CHANGES))
def test_the_loop_and_python_find_the_same_gradients(compiled, change):
    params, opt, watch = planned_group()
    act, holds = PLAN_CHANGES[change]
    act(params, opt)
    group_params = opt.param_groups[0]["params"]
    table = watch.grad_addresses.copy()
    in_python = watch.grads_in_python(group_params)
    native_found = watch.grads(group_params)  # the C++ loop
    assert (in_python is not None) == holds
    assert (native_found is not None) == holds
    if holds:
        expected = [p.grad for p in params[1:]]
        for grads, addresses in (in_python, native_found):
            assert all(g is e for g, e in zip(grads, expected)) and len(grads) == 3
            assert list(addresses) == [g.data_ptr() for g in expected]
    else:
        assert np.array_equal(watch.grad_addresses, table)  # a refusal writes nothing


def test_zero_grad_rebinds_what_the_loop_finds_unbound(compiled):
    params, opt, layout = flat_group()
    opt.step()
    params[1].grad = torch.ones_like(params[1])
    assert layout.watch.status(params) == GRADS_UNBOUND
    opt.zero_grad()
    assert layout.watch.status(params) == BOUND
    assert params[1].grad is layout.grad_views[1]
    assert not params[1].grad.any()


@pytest.mark.parametrize("make", ["list", "tuple"])
def test_versions_go_up_by_one_as_torch_bumps_them(compiled, make):
    tensors = [torch.zeros(3), torch.nn.Parameter(torch.zeros(2)), torch.zeros(4)[1:]]
    theirs = [t.detach().clone() for t in tensors]
    for t, u in zip(tensors, theirs):  # unequal starting versions
        for _ in range(len(u)):
            torch.autograd.graph.increment_version(u)
            torch.autograd.graph.increment_version(t)
    before = [t._version for t in tensors]
    native.bump_versions(tensors if make == "list" else tuple(tensors))
    torch.autograd.graph.increment_version(theirs)
    assert [t._version for t in tensors] == [u._version for u in theirs]
    assert [t._version - b for t, b in zip(tensors, before)] == [1, 1, 1]


def test_inference_tensors_are_left_alone_as_torch_leaves_them(compiled):
    with torch.inference_mode():
        ours, theirs = torch.zeros(3), torch.zeros(3)
    live = [torch.zeros(3), torch.zeros(3)]
    native.bump_versions([ours, live[0]])
    torch.autograd.graph.increment_version([theirs, live[1]])  # neither raises
    assert [t._version for t in live] == [1, 1]


def test_a_list_with_something_else_raises_and_bumps_nothing(compiled):
    tensors = [torch.zeros(2), "not a tensor", torch.zeros(2)]
    with pytest.raises(TypeError, match="item 1 is a str"):
        compiled.bump(tensors)
    assert [tensors[0]._version, tensors[2]._version] == [0, 0]


def test_an_object_whose_class_raises_is_refused_without_running_python(compiled):
    """A type check that ran Python (__instancecheck__, __class__) could throw through C++
    and abort the process."""
    class Impostor:
        @property
        def __class__(self):
            raise RuntimeError("no class")

    with pytest.raises(TypeError, match="item 1 is a Impostor"):
        compiled.bump([torch.zeros(1), Impostor()])


@pytest.mark.parametrize("table", ["addresses", "grad_impls"])
@pytest.mark.parametrize("wrong", ["length", "dtype"])
def test_tables_of_the_wrong_length_or_type_raise(compiled, table, wrong):
    params, opt, layout = flat_group()
    tables = {"addresses": layout.watch.address_table, "grad_impls": layout.watch.grad_table}
    good = tables[table]
    tables[table] = good[:2] if wrong == "length" else good.astype(np.float64)
    with pytest.raises(ValueError, match=f"{table}: 4 int64 values expected"):
        compiled.flat_status(params, layout.watch.params, tables["addresses"],
                             tables["grad_impls"])


def test_a_changed_source_is_a_new_extension(tmp_path, monkeypatch):
    """torch's extension cache is keyed by name: an edited group_pass.cpp must not load the
    module compiled from the old one."""
    copy = tmp_path / "group_pass.cpp"
    copy.write_text(loader.SOURCE.read_text())
    monkeypatch.setattr(loader, "SOURCE", copy)
    same = loader.module_name()
    copy.write_text(loader.SOURCE.read_text() + "\n// edited\n")
    assert loader.module_name() != same


def steps_of(seed):
    """Three flat steps: the parameters and their square_avg."""
    params, opt, _ = flat_group(seed)
    for _ in range(3):
        opt.step()
    return [p.detach().clone() for p in params], [opt.state[p]["square_avg"].clone()
                                                 for p in params]


def test_without_the_loop_the_step_warns_once_and_gives_the_same_numbers(monkeypatch):
    use_path(monkeypatch, "native")
    expected = steps_of(3)
    monkeypatch.setattr(loader, "_built", [])

    def no_compiler():
        raise RuntimeError("Ninja is required to load C++ extensions\nmore lines")

    monkeypatch.setattr(loader, "build", no_compiler)
    with pytest.warns(native.NativeBuildWarning, match="Ninja is required") as caught:
        got = steps_of(3)
    assert len(caught) == 1
    assert native.load() is None
    for a, b in zip(expected[0] + expected[1], got[0] + got[1]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("value", ["0", "false", "OFF", "no"])
def test_rmsprop_native_0_does_not_try_to_build(monkeypatch, value):
    monkeypatch.setattr(loader, "_built", [])
    monkeypatch.setattr(group_pass, "MIN_TENSORS", 1)  # a group that would use the loop
    monkeypatch.setenv(native.ENV, value)
    monkeypatch.setattr(loader, "build", lambda: pytest.fail(f"built with RMSPROP_NATIVE={value}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        steps_of(4)
        assert native.load() is None
    assert loader._built == []


@pytest.fixture
def fake_compiler(compiled, tmp_path, monkeypatch):
    """torch's extension loader replaced by one that 'compiles' by copying the library built
    for this test run, counting its calls; the cache in a temporary directory."""
    import torch.utils.cpp_extension as cpp_extension

    library = native_library()  # where the real build of this run was kept
    assert library.exists()
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    calls = []

    def load_extension(name, sources, build_directory, **kwargs):
        calls.append(build_directory)
        if kwargs.get("interrupt"):
            raise KeyboardInterrupt
        target = f"{build_directory}/{name}{cpp_extension.LIB_EXT}"
        with open(library, "rb") as src, open(target, "wb") as dst:
            dst.write(src.read())
        return compiled

    monkeypatch.setattr(cpp_extension, "load", load_extension)
    return calls


def native_library():
    """Where the library is kept in the cache directory of this moment."""
    import torch.utils.cpp_extension as cpp_extension

    return loader.cache_dir() / f"{loader.module_name()}{cpp_extension.LIB_EXT}"


def test_a_build_is_kept_and_loaded_from_the_cache_afterwards(fake_compiler, tmp_path):
    first = loader.build()
    assert len(fake_compiler) == 1
    kept = sorted(p.name for p in (tmp_path / "rmsprop").iterdir())
    library = native_library().name
    assert kept == [library, library + ".sha256"]  # the scratch directory is gone
    again = loader.build()  # from the cache: torch's loader not called
    assert len(fake_compiler) == 1
    assert again.flat_status is not None and first is not None


def test_an_interrupted_build_leaves_nothing_that_blocks_the_next(fake_compiler, tmp_path,
                                                                  monkeypatch):
    import torch.utils.cpp_extension as cpp_extension

    compile_ = cpp_extension.load
    monkeypatch.setattr(cpp_extension, "load",
                        lambda *a, **k: compile_(*a, **k, interrupt=True))
    with pytest.raises(KeyboardInterrupt):
        loader.build()
    assert list((tmp_path / "rmsprop").iterdir()) == []  # no half-built library, no lock
    monkeypatch.setattr(cpp_extension, "load", compile_)
    assert loader.build() is not None
    assert native_library().exists()


@pytest.fixture
def no_compiler(monkeypatch):
    """A machine where the loop cannot be built, nothing tried yet: the attempts."""
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.setattr(loader, "_built", [])
    attempts = []

    def build():
        attempts.append(1)
        raise RuntimeError("no compiler")

    monkeypatch.setattr(loader, "build", build)
    return attempts


def stopped_by_the_build_warning(opt, params):
    """``opt.step()`` with the build's warning an error: it raises, nothing has changed.
    Returns the parameters' values before."""
    before = [p.detach().clone() for p in params]
    with warnings.catch_warnings():
        warnings.simplefilter("error", native.NativeBuildWarning)
        with pytest.raises(native.NativeBuildWarning):
            opt.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert len(opt.state) == 0
    return before


def test_a_build_warning_raised_as_an_error_stops_the_step_before_it_writes(monkeypatch,
                                                                            no_compiler):
    """Under ``-W error`` the warning is an exception: it must come before any group has
    stepped, and the next step runs (in Python) without trying again."""
    monkeypatch.setattr(group_pass, "MIN_TENSORS", 1)
    gen = torch.Generator().manual_seed(5)
    first = [torch.nn.Parameter(torch.randn(4, generator=gen)) for _ in range(3)]
    second = [torch.nn.Parameter(torch.randn(4, generator=gen)) for _ in range(3)]
    for p in first + second:
        p.grad = torch.randn(4, generator=gen)
    opt = RMSprop([{"params": first, "impl": "loop"}, {"params": second}], lr=1e-2,
                  impl="fused")
    before = stopped_by_the_build_warning(opt, first + second)
    with warnings.catch_warnings():
        warnings.simplefilter("error", native.NativeBuildWarning)
        opt.step()  # no second attempt, no warning: the Python checks
    assert len(no_compiler) == 1
    # one step from the same start, by an optimizer that never failed: nothing was half done
    clones = [torch.nn.Parameter(b.clone()) for b in before]
    for c, p in zip(clones, first + second):
        c.grad = p.grad.clone()
    reference = RMSprop([{"params": clones[:3], "impl": "loop"}, {"params": clones[3:]}],
                        lr=1e-2, impl="fused")
    reference.step()
    assert all(torch.equal(c, p) for c, p in zip(clones, first + second))


def test_a_small_group_never_builds_the_loop(monkeypatch):
    monkeypatch.delenv(native.ENV, raising=False)
    monkeypatch.setattr(loader, "_built", [])
    monkeypatch.setattr(loader, "build", lambda: pytest.fail("built for a group of 4 tensors"))
    assert native.MIN_TENSORS > 4
    params, opt, layout = flat_group()
    for _ in range(3):
        opt.step()
    opt.zero_grad()
    assert loader._built == []  # not even tried


def test_a_flat_group_shortened_in_place_still_builds_before_anything_changes(monkeypatch,
                                                                              no_compiler):
    """The layout still holds the parameter the list lost: the build must come while the
    step checks its groups, counted by the larger of the two lists, not at the layout's own
    check inside the step (after the first group stepped)."""
    monkeypatch.setattr(group_pass, "MIN_TENSORS", 4)
    gen = torch.Generator().manual_seed(6)
    first = [torch.nn.Parameter(torch.randn(3, generator=gen)) for _ in range(3)]
    flat = [torch.nn.Parameter(torch.randn(3, generator=gen)) for _ in range(4)]
    opt = RMSprop([{"params": first}, {"params": flat}], lr=1e-2, impl="fused", flat=True)
    opt.param_groups[1]["params"].pop()  # 3 listed, 4 in the layout
    for p in first + flat:
        p.grad = torch.randn(3, generator=gen)
    stopped_by_the_build_warning(opt, first + flat)
    assert len(no_compiler) == 1


def test_a_kept_library_cut_short_is_built_again_not_loaded(fake_compiler, tmp_path):
    """Mapping a library cut short on disk kills the process (SIGBUS): its digest must not
    match, and the build runs again."""
    import torch.utils.cpp_extension as cpp_extension

    loader.build()  # kept, with its digest
    kept = native_library()
    whole = kept.read_bytes()
    kept.write_bytes(whole[:4096])
    loader.build()
    assert len(fake_compiler) == 2
    assert kept.read_bytes() == whole
    digest = kept.with_name(kept.name + ".sha256").read_text()
    assert digest == hashlib.sha256(whole).hexdigest()
    assert cpp_extension.LIB_EXT in kept.name
