"""ShapeFirstCompileModel in the real host (CPU): a clone through the host's compile wrapper,
the input untouched, and compiled sampling (dynamo with the 'eager' backend, the cheapest
one that still traces the model) equal to uncompiled sampling, with and without the cutoff."""
import copy

import pytest
import torch

pytestmark = pytest.mark.host

STEPS = 2
CFG = 7.0


@pytest.fixture(scope="module")
def compile_model(pack):
    return pack["nodes.performance.nodes"]


@pytest.fixture(scope="module")
def model(tiny):
    return tiny.tiny_model("sd15", seed=4)


@pytest.fixture(scope="module")
def conds():
    generator = torch.Generator().manual_seed(5)
    return [[torch.randn(1, 77, 32, generator=generator), {}]], [[torch.randn(1, 77, 32, generator=generator), {}]]


def sample(model, conds, cfg=CFG):
    import comfy.sample
    latent = torch.zeros(1, 4, 8, 8)
    noise = comfy.sample.prepare_noise(latent, 6)
    return comfy.sample.sample(model, noise, STEPS, cfg, "euler", "normal", conds[0], conds[1], latent,
                               disable_pbar=True, seed=6)


def compile_wrappers(patcher):
    from comfy.patcher_extension import WrappersMP
    from comfy_api.torch_helpers.torch_compile import COMPILE_KEY
    return patcher.wrappers.get(WrappersMP.APPLY_MODEL, {}).get(COMPILE_KEY, [])


def test_node_returns_a_compiled_clone_and_leaves_the_input_alone(compile_model, model):
    options = copy.deepcopy(model.model_options)
    wrappers = {k: {k1: list(v1) for k1, v1 in v.items()} for k, v in model.wrappers.items()}
    out = compile_model.ShapeFirstCompileModel.execute(model, "inductor", "reduce-overhead").result[0]
    assert out is not model and out.is_clone(model)
    assert len(compile_wrappers(out)) == 1
    assert out.model_options["torch_compile_kwargs"]["mode"] == "reduce-overhead"
    assert out.model_options["torch_compile_kwargs"]["backend"] == "inductor"
    assert out.model_options["torch_compile_kwargs"]["dynamic"] is False
    assert model.model_options == options
    assert {k: {k1: list(v1) for k1, v1 in v.items()} for k, v in model.wrappers.items()} == wrappers
    assert compile_wrappers(model) == []


def test_mode_is_given_only_to_inductor(compile_model, model):
    out = compile_model.compiled_clone(model, "cudagraphs", "reduce-overhead")
    assert out.model_options["torch_compile_kwargs"]["backend"] == "cudagraphs"
    assert out.model_options["torch_compile_kwargs"]["mode"] is None


@pytest.mark.parametrize("backend, mode", [("tvm", "default"), ("inductor", "fastest")])
def test_unknown_backend_or_mode_is_refused(compile_model, model, backend, mode):
    with pytest.raises(ValueError, match="must be one of"):
        compile_model.compiled_clone(model, backend, mode)


def test_compiled_sampling_matches_uncompiled_with_and_without_cutoff(pack, compile_model, model, conds):
    cutoff_patch = pack["nodes.guidance_cutoff.patch"]
    cs = pack["nodes.guidance_cutoff.schedule"]
    settings = cs.CutoffSettings(cutoff_mode=cs.MODE_STEPS, guided_steps=1)
    from torch._dynamo.utils import counters
    graphs = counters["stats"]["unique_graphs"]
    compiled = compile_model.compiled_clone(model, "eager", "default")
    # the cutoff on top of the compiled model: both batch shapes (2 then 1) go through it
    compiled_cut, patch = cutoff_patch.apply_cutoff(compiled, settings)
    cut = sample(compiled_cut, conds)
    assert (patch.last_run.full_evaluations, patch.last_run.single_evaluations) == (1, 1)
    assert counters["stats"]["unique_graphs"] > graphs  # dynamo really traced the UNet
    reference_cut = sample(cutoff_patch.apply_cutoff(model, settings)[0], conds)
    stock, reference_stock = sample(compiled, conds), sample(model, conds)
    assert torch.allclose(cut, reference_cut, rtol=1e-5, atol=1e-5)
    assert torch.allclose(stock, reference_stock, rtol=1e-5, atol=1e-5)
    assert not torch.equal(cut, stock)  # the cutoff did change the run
    assert torch.isfinite(cut).all()
