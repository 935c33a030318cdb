

def test_a_group_of_several_dtypes_is_planned_with_the_per_call_numbers(builds):
    params = (make_params(4, [(5,), (300,)], torch.float64) + make_params(5, [(7,), (2, 3)])
              + make_params(6, [(9,)], torch.bfloat16))
    params = [params[0], params[2], params[1], params[4], params[3]]  # interleaved dtypes
    opt = RMSprop(params, lr=1e-2, impl="fused", momentum=0.9, bias_correction=True)
    per_call = PerCall(params, {"momentum": 0.9, "bias_correction": True})
    for i, p in enumerate(per_call.params):  # the fused kernels keep float32 state for bf16
        if p.dtype == torch.bfloat16:
            for key in per_call.state:
                per_call.state[key][i] = per_call.state[key][i].float()
    for step in range(4):
        grads = grads_for(params, step)
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
        per_call.step(grads)
        assert_same(opt, params, per_call)
    assert builds["n"] == 1
