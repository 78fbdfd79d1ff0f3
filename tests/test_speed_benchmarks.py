"""The arithmetic of the speed benchmarks: the compile break-even and the profiler's categories."""

import math


def test_break_even_is_the_compile_cost_over_the_saving(benchmark_script):
    speed = benchmark_script("speed")
    costs = {"cold": {"extra_s": 60.2}, "warm": {"extra_s": 5.2}, "eager": {"extra_s": 0.2}}
    even = speed.break_even(costs, eager_ms=90.0, compiled_ms=60.0)  # 30 ms saved per iteration
    assert math.isclose(even["cold"], 2000) and math.isclose(even["warm"], 5.0 / 0.03)
    assert speed.break_even(costs, eager_ms=60.0, compiled_ms=60.0) == {"cold": math.inf, "warm": math.inf}


def test_profiler_events_fall_into_their_categories(benchmark_script):
    profile = benchmark_script("profile_iteration")
    expected = {
        "aten::addmm": "matmul",
        "aten::mm": "matmul",
        "aten::normal_": "random",
        "## Call CompiledFxGraph f3236syc6vvm ##": "compiled graphs",
        "TorchDynamo Cache Lookup": "compile runtime",
        "Optimizer.step#Adam.step": "optimizers",
        "autograd::engine::evaluate_function: AddmmBackward0": "autograd engine",
        "AddmmBackward0": "autograd engine",
        "aten::tanh": "other ops",
        "enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__": "other events",
    }
    assert {name: profile.category(name) for name in expected} == expected
