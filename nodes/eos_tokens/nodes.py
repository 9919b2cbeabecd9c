"""Nodes: isolate, remove and swap the [EOS] rows of a text conditioning.

What they do to the conditioning is in ``conditioning``; which row is [SOS], a prompt
token, [EOS] or padding is in ``roles`` (host-free).
"""
from comfy_api.latest import io

from . import conditioning as ec
from . import roles as tr
from ..validation import check_choice, require

CATEGORY = "shapefirst/conditioning"


def _eos_scope_input():
    return io.Combo.Input("eos_scope", options=list(tr.EOS_SCOPES), default=tr.EOS_SCOPE_BLOCK, tooltip=(
        "Which rows count as [EOS]. '[EOS] and the padding after it': the paper's [EOS] block "
        "(SD1.x pads with [EOS] itself; SD2.x, CLIP-G and T5 pad with another token that still "
        "reads the whole prompt). 'first [EOS] only': just the one end token of each chunk."))


class ShapeFirstEOSSplit(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstEOSSplit",
            display_name="EOS Split (ShapeFirst)",
            category=CATEGORY,
            description=(
                "Encodes a prompt like CLIP Text Encode and also gives it split in two: with only its "
                "[EOS] rows (prompt tokens replaced) and with only its prompt tokens ([EOS] rows "
                "replaced). Early sampling steps build the image's shape mostly from [EOS] (Yi et al., "
                "NeurIPS 2024); compare the three to see it. The token map lists every row's token "
                "and role per text encoder. SD1.x, SD2.x, SDXL, SD3 and Flux text encoders."),
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder, e.g. from Load Checkpoint; clip skip "
                                              "(CLIP Set Last Layer) is honoured."),
                io.String.Input("text", multiline=True, dynamic_prompts=True, tooltip=(
                    "The prompt. Weights like (word:1.3) and embedding:name work as in CLIP Text Encode.")),
                io.Combo.Input("replacement", options=list(tr.REPLACEMENTS), default=tr.REPLACE_EMPTY, tooltip=(
                    "What replaces the removed rows. 'empty prompt': the empty prompt's embedding at the "
                    "same position (the mildest). 'zeros': zero vectors. 'noise': seeded Gaussian noise "
                    "with the mean and spread of that encoder's rows.")),
                _eos_scope_input(),
                io.Combo.Input("pooled_output", options=list(tr.SPLIT_POOLED_CHOICES), default=tr.POOLED_KEEP,
                               tooltip=(
                    "The pooled vector of the EOS-only and prompt-only outputs. It is read at the first "
                    "[EOS], so it carries the prompt's meaning: SDXL, SD3 and Flux feed it to the model. "
                    "'keep': the prompt's own. 'zero': zeros. The full output always keeps it.")),
                # No randomize control: the same seed gives the same noise, so runs stay comparable.
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=False, tooltip=(
                    "Seed of the noise; used only when replacement is 'noise'. The same seed gives the "
                    "same noise rows in the EOS-only and prompt-only outputs and across runs.")),
            ],
            outputs=[
                io.Conditioning.Output("full", display_name="full", tooltip=(
                    "The prompt's conditioning, identical to CLIP Text Encode's.")),
                io.Conditioning.Output("eos_only", display_name="EOS only", tooltip=(
                    "[SOS] and the [EOS] rows kept, every other row replaced.")),
                io.Conditioning.Output("prompt_only", display_name="prompt only", tooltip=(
                    "The [EOS] rows replaced, every other row kept.")),
                io.String.Output("token_map", display_name="token map", tooltip=(
                    "Every row's token and role (SOS / prompt / EOS / padding) per text encoder and "
                    "chunk; connect to Preview Any to read it.")),
            ],
        )

    @classmethod
    def execute(cls, clip, text, replacement, eos_scope, pooled_output, seed) -> io.NodeOutput:
        require(check_choice("replacement", replacement, tr.REPLACEMENTS),
                check_choice("eos_scope", eos_scope, tr.EOS_SCOPES),
                check_choice("pooled_output", pooled_output, tr.SPLIT_POOLED_CHOICES))
        family = ec.family_of(clip, "ShapeFirstEOSSplit")
        prompt, eos_only, prompt_only = ec.split_prompt(
            clip, clip.tokenize(text, return_word_ids=True), family, replacement, eos_scope, pooled_output, seed)
        return io.NodeOutput(prompt.entries, eos_only, prompt_only, ec.token_map_text(family, prompt))


class ShapeFirstEOSSwap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="ShapeFirstEOSSwap",
            display_name="EOS Swap (ShapeFirst)",
            category=CATEGORY,
            description=(
                "The paper's switched prompt: the prompt tokens of one text with the [EOS] rows of "
                "another (Yi et al., NeurIPS 2024). The image's shape follows the text that gave the "
                "[EOS]. Rows are aligned from the first [EOS]: it and the rows after it come from the "
                "[EOS] text, starting at that text's first [EOS]. Prompts of different lengths in "
                "chunks get empty-prompt chunks added, as CLIP Text Encode SDXL does."),
            inputs=[
                io.Clip.Input("clip", tooltip="The text encoder for both texts; clip skip is honoured."),
                io.String.Input("token_text", multiline=True, dynamic_prompts=True, tooltip=(
                    "The text whose [SOS] and prompt tokens are kept (the details' prompt).")),
                io.String.Input("eos_text", multiline=True, dynamic_prompts=True, tooltip=(
                    "The text whose [EOS] rows are used (the shape's prompt).")),
                _eos_scope_input(),
                io.Combo.Input("pooled_output", options=list(tr.SWAP_POOLED_CHOICES),
                               default=tr.POOLED_FROM_EOS_PROMPT, tooltip=(
                    "Where the pooled vector comes from. It is read at the first [EOS], so by default it "
                    "follows the [EOS] rows. SDXL, SD3 and Flux feed it to the model; SD1.x ignores it.")),
            ],
            outputs=[io.Conditioning.Output(tooltip=(
                "token_text's prompt tokens with eos_text's [EOS] rows; every other key of the "
                "token text's conditioning kept."))],
        )

    @classmethod
    def execute(cls, clip, token_text, eos_text, eos_scope, pooled_output) -> io.NodeOutput:
        require(check_choice("eos_scope", eos_scope, tr.EOS_SCOPES),
                check_choice("pooled_output", pooled_output, tr.SWAP_POOLED_CHOICES))
        family = ec.family_of(clip, "ShapeFirstEOSSwap")
        return io.NodeOutput(ec.swap_prompt(clip, token_text, eos_text, family, eos_scope, pooled_output))


NODES = [ShapeFirstEOSSplit, ShapeFirstEOSSwap]
