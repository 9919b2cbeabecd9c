"""The other nodes on the same model whose behaviour changes once the cutoff drops a branch.

Found in a run's (or a node's input model's) ``model_options`` by what they install: the module
of the function in a hook, or the key of a wrapper (read from the host 0.3.75: PerpNeg, PAG, SAG,
SkipLayerGuidanceDiT[Simple], APG, EasyCache, LazyCache, TorchCompileModel; and the single
``model_function_wrapper`` slot the third-party caches take). For each one: one sentence of what
changes after the cut and the fix, or a refusal where the result would be wrong. Pure Python: no
ComfyUI import, so the plan, the summary and the README share one wording.
"""
from dataclasses import dataclass

from . import schedule as cs

PERPNEG, PAG, SAG, SLG, SLG_SIMPLE, APG = "PerpNeg", "PAG", "SAG", "SkipLayerGuidanceDiT", "SkipLayerGuidanceDiTSimple", "APG"
EASYCACHE, LAZYCACHE, TORCH_COMPILE, BATCH_CACHE = "EasyCache", "LazyCache", "TorchCompileModel", "a whole-batch cache"

# Neighbours that evaluate the model themselves, beside the cutoff's branches, at every step.
EXTRA_PASS = frozenset((PERPNEG, PAG, SAG, SLG))

# The host's modules (their file names, as the host names the module after its path).
_HOOK_MODULES = {
    "sampler_cfg_function": {"nodes_perpneg": PERPNEG},
    "sampler_post_cfg_function": {"nodes_pag": PAG, "nodes_sag": SAG, "nodes_slg": SLG},
    "sampler_pre_cfg_function": {"nodes_apg": APG},
}
_WRAPPER_KEYS = {"easycache": EASYCACHE, "lazycache": LAZYCACHE, "torch.compile": TORCH_COMPILE}
# Third-party caches in the model_function_wrapper slot that keep one residual for the whole batch.
_BATCH_CACHE_WORDS = ("teacache", "magcache", "wavespeed", "first_block", "fbcache")


def _module_of(function):
    return (getattr(function, "__module__", "") or "").rsplit(".", 1)[-1].lower()


def is_skip_layer_simple(function):
    """Whether ``function`` (in the calc_cond_batch slot) is SkipLayerGuidanceDiTSimple's."""
    return function is not None and _module_of(function) == "nodes_slg"


def _closure_value(function, name, default=None):
    """A variable ``function`` closes over (read only), e.g. APG's momentum; ``default`` if absent."""
    code, cells = getattr(function, "__code__", None), getattr(function, "__closure__", None) or ()
    names = getattr(code, "co_freevars", ())
    for var, cell in zip(names, cells):
        if var == name:
            try:
                return cell.cell_contents
            except ValueError:  # an empty cell
                return default
    return default


@dataclass(frozen=True)
class Neighbour:
    name: str  # the node as the user knows it
    detail: str = ""  # e.g. which pack a batch cache comes from

    @property
    def extra_pass(self):
        return self.name in EXTRA_PASS


def find_neighbours(model_options, previous_calc_cond_batch=None):
    """The neighbours on a model, in a stable order, each once."""
    found = []
    for key, modules in _HOOK_MODULES.items():
        hooks = model_options.get(key)
        for function in (hooks if isinstance(hooks, list) else [hooks] if hooks else []):
            name = modules.get(_module_of(function))
            if name == APG and not _closure_value(function, "momentum", 1):
                continue  # momentum 0: nothing carries over the cut
            if name:
                found.append(Neighbour(name))
    if is_skip_layer_simple(previous_calc_cond_batch):
        found.append(Neighbour(SLG_SIMPLE))
    wrappers = model_options.get("transformer_options", {}).get("wrappers", {})
    for per_key in wrappers.values():
        for key in per_key:
            if key in _WRAPPER_KEYS:
                found.append(Neighbour(_WRAPPER_KEYS[key]))
    wrapper = model_options.get("model_function_wrapper")
    if wrapper is not None:
        where = f"{getattr(wrapper, '__module__', '')}.{getattr(wrapper, '__qualname__', '')}".lower()
        if any(word in where for word in _BATCH_CACHE_WORDS):
            found.append(Neighbour(BATCH_CACHE, getattr(wrapper, "__module__", "") or ""))
    unique = []
    for neighbour in found:
        if neighbour not in unique:
            unique.append(neighbour)
    return tuple(unique)


def refusal(neighbours, settings):
    """The message for a combination that would give a wrong picture, or None."""
    names = {n.name for n in neighbours}
    if PERPNEG in names and settings.keep != cs.KEEP_COND:
        return (f"keep '{settings.keep}' with PerpNeg on the model: PerpNeg computes its result from the two "
                f"branches and its own empty-prompt pass, so after the cut it would amplify the negative prompt "
                f"(empty + cfg x (negative - empty)). Use keep 'cond' (PerpNeg then keeps guiding the prompt "
                f"against its empty pass), or remove PerpNeg and connect the empty prompt to the cutoff's "
                f"empty_conditioning for the paper's unconditional.")
    return None


def after_cut_note(neighbour, keep):
    """One sentence: what changes for this neighbour after the cut, and the fix; None: nothing."""
    name, text_kept = neighbour.name, keep == cs.KEEP_COND
    if name == PERPNEG:
        return ("PerpNeg: after the cut it still guides the prompt against its own empty-prompt pass at full "
                "strength, so only the negative prompt is dropped, not the text, and its extra pass keeps running; "
                "remove PerpNeg for a real cut.")
    if name in (PAG, SLG):
        what = "perturbed-attention" if name == PAG else "layer-skipped"
        if text_kept:
            return (f"{name}: its {what} pass of the prompt keeps running at every step after the cut (one more "
                    f"evaluation each), guiding the kept prompt as before.")
        return (f"{name}: its {what} pass of the prompt keeps running after the cut, and with the text dropped its "
                f"term pushes the picture against the prompt; use keep 'cond' with {name}, or leave it off.")
    if name == SAG:
        if text_kept:
            return ("SAG: it reads the negative prompt's attention map, which stops at the cut, so it reuses the "
                    "last map from before it (stale); use keep 'uncond' with SAG.")
        return "SAG: its blurred pass of the negative prompt keeps running at every step after the cut."
    if name == SLG_SIMPLE:
        return ("SkipLayerGuidanceDiTSimple: after the cut the kept branch is the plain model, not its "
                "layer-skipped one (its guidance ends with the text).")
    if name == APG:
        return ("APG: its momentum carries the guidance of the last guided steps on after the cut, fading over "
                "a few steps; set APG's momentum to 0 for a clean cut.")
    if name == TORCH_COMPILE:
        return ("TorchCompileModel: the batch halves at the cut, so the compiled model compiles the one-branch "
                "shape too (once per shape; many recompiles can hit torch's recompile limit).")
    if name == BATCH_CACHE:
        return (f"{neighbour.detail or 'a model function wrapper cache'}: it keeps one residual for the whole "
                f"batch, and the batch shrinks from both branches to one at the cut, so it may reuse a residual "
                f"of the other size or branch; if the pictures break, turn the cache or the cutoff off.")
    return None


def extra_pass_names(neighbours):
    """The neighbours that evaluate the model themselves, as a phrase ("PAG and SAG"), or ''."""
    names = [n.name for n in neighbours if n.extra_pass]
    return " and ".join(names)


# Guiders that compute their batch themselves (the cutoff's slot never runs there), as nodes.
GUIDER_NODES = {"Guider_PerpNeg": "PerpNegGuider", "Guider_DualCFG": "DualCFGGuider"}


def guider_node_name(class_name):
    """'the guider PerpNegGuider' for the host's Guider_PerpNeg; the class name otherwise."""
    return f"the guider {GUIDER_NODES.get(class_name, class_name or 'in use')}"


def instead_of_guider(class_name):
    """What to use instead of a guider that bypasses the cutoff."""
    if class_name == "Guider_PerpNeg":
        return ("For the paper's cut use a KSampler or the Cutoff Guider (ShapeFirst) with the empty prompt on "
                "empty_conditioning: after the cut PerpNeg's negative term has nothing left to act on.")
    return ("Use a KSampler, CFGGuider or the Cutoff Guider (ShapeFirst) with the cutoff, or this guider without "
            "it.")


EASYCACHE_LOST_BRANCH = (
    "EasyCache: it decides from the branch it saw first (the negative prompt when both share a batch, the prompt "
    "when they run apart), and that branch stopped at the cut, so it skipped nothing after it; keep the other "
    "branch, or use LazyCache, which follows the whole step.")


def cache_refusal(caches, start_sigma, first_sigma):
    """The message for EasyCache active before a guidance start, or None. Before the start one branch
    runs, so EasyCache caches that branch only; at the window's first evaluation with both it may skip
    and apply a cache the other branch never made (ComfyUI then fails inside EasyCache)."""
    if start_sigma is None or first_sigma is None or first_sigma <= start_sigma:
        return None  # no evaluation before the start
    for name, holder in caches:
        if name == EASYCACHE and float(getattr(holder, "start_t", 0.0)) > start_sigma:
            return ("EasyCache with a guidance start: before the start only one branch runs, so EasyCache caches "
                    "that branch alone, and where both start it would reuse a cache the other branch never made "
                    "(ComfyUI fails inside EasyCache). Set the guidance start to 0, start EasyCache after the "
                    "guidance start (its start_percent), or use LazyCache.")
    return None


def cache_follows(holder, kept_uuids):
    """Whether an EasyCache still sees the branch it decides from after the cut (LazyCache: always)."""
    followed = getattr(holder, "first_cond_uuid", None)
    return followed is None or followed in kept_uuids


def cache_holders(model_options):
    """(name, holder) of the host's EasyCache / LazyCache on this run (their skip counts)."""
    holder = model_options.get("transformer_options", {}).get("easycache")
    name = getattr(holder, "name", None)
    return [(name, holder)] if name and hasattr(holder, "total_steps_skipped") else []
