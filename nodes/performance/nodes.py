"""Node: torch.compile the diffusion model with a chosen mode (CUDA graphs included).

The host's TorchCompileModel offers a backend but no mode. On a fast GPU the eager UNet is
bound by kernel launches at small batches, so dropping a CFG branch (the guidance cutoff)
saves little time there; ``mode="reduce-overhead"`` (inductor + CUDA graphs) removes the
launch overhead and makes the halved batch of the late steps really cheaper.
"""
from comfy_api.latest import io
from comfy_api.torch_helpers import set_torch_compile_wrapper

from ..validation import check_choice, require

BACKENDS = ("inductor", "cudagraphs", "eager")
MODES = ("reduce-overhead", "default", "max-autotune", "max-autotune-no-cudagraphs")


def compiled_clone(model, backend="inductor", mode="reduce-overhead"):
    """A clone of ``model`` (a ModelPatcher) whose diffusion model runs through torch.compile.

    Uses the host's own wrapper, so the compiled module is swapped in only while the host
    applies the model and unloading/LoRA handling stay the host's. ``dynamic=False``: every
    batch shape gets its own static graph (and CUDA graph), compiled once and reused; the
    guidance cutoff uses two shapes (both branches, then one), a fixed cost per shape.
    """
    require(check_choice("backend", backend, BACKENDS), check_choice("mode", mode, MODES))
    compiled = model.clone()
    # torch.compile passes a mode only to inductor; other backends reject it.
    set_torch_compile_wrapper(compiled, backend=backend, mode=mode if backend == "inductor" else None, dynamic=False)
    return compiled


class ShapeFirstCompileModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstCompileModel",
            display_name="Compile Model (ShapeFirst)",
            category="shapefirst/performance",
            description=(
                "Compiles the diffusion model with torch.compile through ComfyUI's own compile wrapper, "
                "with a choice of mode. 'reduce-overhead' (inductor + CUDA graphs) removes the kernel-launch "
                "overhead that makes a small batch cost as much as a double one on a fast GPU: only then does "
                "the Guidance Cutoff's one-branch late steps save real time for a single image. Each batch "
                "shape compiles once (the cutoff uses two: both branches, then one); the first run is slow, "
                "later runs reuse the graphs. Needs a working torch.compile (Triton) on your GPU."),
            inputs=[
                io.Model.Input("model", tooltip="The model to compile; the input itself is not modified."),
                io.Combo.Input("backend", options=list(BACKENDS), default="inductor", tooltip=(
                    "inductor: generates fused GPU kernels (the mode below applies). cudagraphs: only "
                    "captures CUDA graphs of the unfused model. eager: traces without compiling, for "
                    "checking that compiling works.")),
                io.Combo.Input("mode", options=list(MODES), default="reduce-overhead", tooltip=(
                    "inductor only. reduce-overhead: CUDA graphs, the fastest for small batches. default: "
                    "fused kernels, no CUDA graphs. max-autotune: also searches kernel configurations "
                    "(compiles much longer). A CUDA graph keeps its own memory for each batch shape.")),
            ],
            outputs=[io.Model.Output(tooltip="The model, compiled when it first samples; connect it to a sampler "
                                             "or to the Guidance Cutoff.")],
        )

    @classmethod
    def execute(cls, model, backend, mode) -> io.NodeOutput:
        return io.NodeOutput(compiled_clone(model, backend, mode))


NODES = [ShapeFirstCompileModel]
