"""The [EOS] tools' work on a text conditioning, for the nodes in ``eos_tokens``.

The prompt is tokenized with word ids and encoded through the same CLIP calls the host's
CLIPTextEncode makes, so the full output is the stock one; the roles of its rows ([SOS],
prompt, [EOS], padding) come from the tokens, per encoder and per chunk, and the family's
layout says where each encoder's rows and columns sit in the conditioning tensor. The role
logic and the token map's text need no host: they are in ``roles`` beside this module.
"""
import numbers
from dataclasses import dataclass
from typing import Callable

import torch

import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.text_encoders.flux
import comfy.text_encoders.pixart_t5
import comfy.text_encoders.sd2_clip
import comfy.text_encoders.sd3_clip
import comfy.text_encoders.wan

from . import roles as tr


@dataclass(frozen=True)
class Encoder:
    name: str
    key: str  # in clip.tokenize()'s result
    attribute: str  # on the host's tokenizer and text-encoder objects
    has_start: bool
    tokenizer_attribute: str = None  # where the tokenizer's differs (Wan's: clip_umt5xxl)

    @property
    def on_tokenizer(self):
        return self.tokenizer_attribute or self.attribute


CLIP_L = Encoder("CLIP-L", "l", "clip_l", True)
CLIP_H = Encoder("CLIP-H", "h", "clip_h", True)
CLIP_G = Encoder("CLIP-G", "g", "clip_g", True)
T5_XXL = Encoder("T5-XXL", "t5xxl", "t5xxl", False)
UMT5_XXL = Encoder("umT5-XXL", "umt5xxl", "umt5xxl", False, "clip_umt5xxl")

# SD3 zero-fills CLIP-L's 768 columns when only CLIP-G is loaded (host: SD3ClipModel).
SD3_CLIP_L_COLUMNS = 768


def _input_width(encoder_model):
    embedding = encoder_model.transformer.get_input_embeddings()
    return getattr(embedding, "embedding_dim", None) or embedding.weight.shape[-1]


def _token_position(entry, vocab, width):
    token, weight, word_id = entry
    if isinstance(token, numbers.Integral):
        return tr.TokenPosition(vocab.get(int(token), str(int(token))), weight, word_id)
    if torch.is_tensor(token):
        return tr.TokenPosition("<embedding vector>", weight, word_id, ignored=token.shape[-1] != width)
    raise ValueError(f"a token of type {type(token).__name__} in the prompt: only words and "
                     "embedding: vectors are supported by the [EOS] tools")


def _encoder_chunks(clip, tokens, encoder):
    """The rows of each chunk this encoder produces, and its width."""
    width = _input_width(getattr(clip.cond_stage_model, encoder.attribute))
    vocab = getattr(getattr(clip.tokenizer, encoder.on_tokenizer, None), "inv_vocab", {})
    chunks = tuple(tuple(tr.chunk_rows([_token_position(entry, vocab, width) for entry in chunk],
                                       encoder.has_start))
                   for chunk in tokens[encoder.key])
    return chunks, width


def _rows(encoder, first_row, columns, chunks):
    return tr.EncoderRows(encoder.name, encoder.key, first_row, columns, chunks)


def _single_layout(encoder):
    def layout(clip, tokens):
        chunks, width = _encoder_chunks(clip, tokens, encoder)
        return [_rows(encoder, 0, (0, width), chunks)]
    return layout


def _clip_pair_layout(clip, tokens, g_offset):
    """CLIP-L and CLIP-G side by side per row, cut to the shorter (SDXL, SD3)."""
    model = clip.cond_stage_model
    l_chunks, l_width = _encoder_chunks(clip, tokens, CLIP_L) if model.clip_l is not None else ((), 0)
    g_chunks, g_width = _encoder_chunks(clip, tokens, CLIP_G) if model.clip_g is not None else ((), 0)
    blocks = []
    if model.clip_l is not None and model.clip_g is not None:
        row_count = min(sum(map(len, l_chunks)), sum(map(len, g_chunks)))
        l_chunks, g_chunks = tr.truncate_chunks(l_chunks, row_count), tr.truncate_chunks(g_chunks, row_count)
        g_offset = l_width
    if model.clip_l is not None:
        blocks.append(_rows(CLIP_L, 0, (0, l_width), l_chunks))
    if model.clip_g is not None:
        blocks.append(_rows(CLIP_G, 0, (g_offset, g_offset + g_width), g_chunks))
    return blocks


def _sdxl_layout(clip, tokens):
    return _clip_pair_layout(clip, tokens, 0)


def _sd3_layout(clip, tokens):
    # CLIP rows (L and G side by side, zero-padded to 4096 columns), then the T5 rows below.
    blocks = _clip_pair_layout(clip, tokens, SD3_CLIP_L_COLUMNS)
    if clip.cond_stage_model.t5xxl is not None:
        t5_chunks, t5_width = _encoder_chunks(clip, tokens, T5_XXL)
        clip_rows = max((block.row_count for block in blocks), default=0)
        blocks.append(_rows(T5_XXL, clip_rows, (0, t5_width), t5_chunks))
    return blocks


def _flux_layout(clip, tokens):
    t5_chunks, t5_width = _encoder_chunks(clip, tokens, T5_XXL)
    l_chunks, _ = _encoder_chunks(clip, tokens, CLIP_L)
    # CLIP-L adds no rows: only its pooled output reaches the model.
    return [_rows(T5_XXL, 0, (0, t5_width), t5_chunks), _rows(CLIP_L, None, None, l_chunks)]


@dataclass(frozen=True)
class Family:
    name: str
    matches: Callable
    layout: Callable
    pooled_source: str


def _is_sd1(model):
    return type(model) is comfy.sd1_clip.SD1ClipModel and model.clip_name == "l"


FAMILIES = (
    Family("Flux (T5-XXL rows, CLIP-L pooled)", lambda m: isinstance(m, comfy.text_encoders.flux.FluxClipModel),
           _flux_layout, "CLIP-L at the first [EOS] of chunk 1"),
    Family("SD3 (CLIP-L + CLIP-G rows, then T5-XXL rows)",
           lambda m: isinstance(m, comfy.text_encoders.sd3_clip.SD3ClipModel),
           _sd3_layout, "CLIP-L and CLIP-G side by side, each at its first [EOS] of chunk 1"),
    Family("SDXL (CLIP-L + CLIP-G side by side)", lambda m: isinstance(m, comfy.sdxl_clip.SDXLClipModel),
           _sdxl_layout, "CLIP-G (projected) at the first [EOS] of chunk 1; it feeds the model's added conditioning"),
    Family("SD2.x (CLIP-H)", lambda m: isinstance(m, comfy.text_encoders.sd2_clip.SD2ClipModel),
           _single_layout(CLIP_H), "CLIP-H at the first [EOS] of chunk 1 (used only by unCLIP models)"),
    Family("SD1.x (CLIP-L)", _is_sd1, _single_layout(CLIP_L), "CLIP-L at the first [EOS] of chunk 1"),
    Family("Wan (umT5-XXL rows)", lambda m: isinstance(m, comfy.text_encoders.wan.WanT5Model),
           _single_layout(UMT5_XXL), "none (Wan takes no pooled vector)"),
    Family("Chroma / PixArt (T5-XXL rows)", lambda m: isinstance(m, comfy.text_encoders.pixart_t5.PixArtT5XXL),
           _single_layout(T5_XXL), "none (Chroma takes no pooled vector)"),
)
SUPPORTED_TEXT = ("SD1.x (CLIP-L), SD2.x (CLIP-H), SDXL (CLIP-L + CLIP-G), SD3 (CLIP-L/G + T5-XXL), "
                  "Flux (CLIP-L + T5-XXL), Wan (umT5-XXL), Chroma (T5-XXL)")

# Text encoders that are language models (decoder-only, the prompt inside a chat template), by
# the host module that defines them. Their rows are no CLIP-like [SOS]/prompt/[EOS]/padding:
# nothing after the prompt gathers it, so there is no [EOS] to split off or swap.
LLM_ENCODERS = {
    "comfy.text_encoders.hunyuan_video": "LLaVA-Llama-3 of HunyuanVideo",
    "comfy.text_encoders.qwen_image": "Qwen2.5-VL of Qwen-Image",
    "comfy.text_encoders.lumina2": "Gemma-2 of Lumina 2",
    "comfy.text_encoders.z_image": "Qwen3 of Z-Image",
    "comfy.text_encoders.hidream": "Llama-3 of HiDream",
    "comfy.text_encoders.omnigen2": "Qwen2.5-VL of OmniGen2",
    "comfy.text_encoders.hunyuan_image": "Qwen2.5-VL of HunyuanImage 2.1 / HunyuanVideo 1.5",
}


def family_of(clip, node_id):
    """The supported family of this CLIP, or a ValueError naming the one that is not."""
    if clip is None:
        raise ValueError(f"{node_id}: the 'clip' input is None: the checkpoint has no text encoder. "
                         "Load one (CLIPLoader, DualCLIPLoader) and connect its CLIP to 'clip'.")
    model = clip.cond_stage_model
    for family in FAMILIES:
        if family.matches(model):
            return family
    llm = LLM_ENCODERS.get(type(model).__module__)
    if llm is not None:
        raise ValueError(
            f"{node_id}: the text encoder connected to 'clip' is the {llm} ({type(model).__name__}), a language "
            f"model that reads the prompt inside a chat template: it has no [EOS] token and padding that gather "
            f"the prompt as CLIP's and T5's do, so the [EOS] tools cannot split or swap it. Supported: "
            f"{SUPPORTED_TEXT}.")
    raise ValueError(
        f"{node_id}: the text encoder {type(model).__name__} (tokenizer {type(clip.tokenizer).__name__}) "
        f"connected to 'clip' is not supported: its token layout is unknown to the [EOS] tools. "
        f"Supported: {SUPPORTED_TEXT}. Connect the CLIP of one of these.")


@dataclass(frozen=True)
class EncodedPrompt:
    entries: list  # [[cond, extras], ...] exactly as CLIPTextEncode returns it
    blocks: list  # tr.EncoderRows per encoder

    @property
    def row_blocks(self):
        return [block for block in self.blocks if block.first_row is not None]


def encode_prompt(clip, tokens, family):
    """Encodes word-id tokens by the calls CLIPTextEncode makes; the rows' roles beside them."""
    prompt = EncodedPrompt(clip.encode_from_tokens_scheduled(tr.strip_word_ids(tokens)), family.layout(clip, tokens))
    cond = prompt.entries[0][0]
    rows = max((block.first_row + block.row_count for block in prompt.row_blocks), default=0)
    columns = max((block.columns[1] for block in prompt.row_blocks), default=0)
    # A layout that does not cover the tensor exactly would edit the wrong rows: refuse it.
    if rows != cond.shape[1] or columns > cond.shape[-1]:
        raise RuntimeError(
            f"the {family.name} token layout ({rows} rows, {columns} columns) does not match the "
            f"encoded conditioning {tuple(cond.shape)}; please report this with the prompt used")
    return prompt


def _row_index(block, mask, device):
    return torch.tensor([block.first_row + i for i, on in enumerate(mask) if on], dtype=torch.long, device=device)


def _copy_rows(target, source, block, mask):
    """Rows of one encoder's block where ``mask`` is true, from ``source`` into ``target`` (a copy we own)."""
    rows = _row_index(block, mask, target.device)
    start, end = block.columns
    target[:, rows, start:end] = source[:, rows, start:end].to(target.dtype)


def _noise_like(cond, blocks, seed):
    """Seeded Gaussian rows with each encoder's own mean and spread (its [SOS] row left out:
    CLIP gives it a far larger norm than any other row)."""
    noise = torch.zeros_like(cond)
    generator = torch.Generator().manual_seed(seed)
    for block in blocks:
        start, end = block.columns
        values = cond[:, _row_index(block, [role != tr.SOS for role in block.roles], cond.device), start:end].float()
        sample = torch.randn((cond.shape[0], block.row_count, end - start), generator=generator)
        rows = slice(block.first_row, block.first_row + block.row_count)
        noise[:, rows, start:end] = (sample.to(cond.device) * values.std() + values.mean()).to(cond.dtype)
    return noise


def _replacements(clip, tokens, prompt, replacement, seed):
    """One tensor per conditioning entry, giving the value of every replaced row."""
    if replacement == tr.REPLACE_EMPTY:
        empty = tr.empty_tokens_like(tokens, clip.tokenize("", return_word_ids=True))
        return [cond for cond, _ in clip.encode_from_tokens_scheduled(tr.strip_word_ids(empty))]
    if replacement == tr.REPLACE_NOISE:
        return [_noise_like(cond, prompt.row_blocks, seed) for cond, _ in prompt.entries]
    return [torch.zeros_like(cond) for cond, _ in prompt.entries]


def _extras_with_pooled(extras, pooled):
    """A copy of the entry's dict (every key kept) with ``pooled`` as its pooled_output, if it has one."""
    out = dict(extras)
    if out.get("pooled_output") is not None:
        out["pooled_output"] = pooled
    return out


def _split_extras(extras, pooled_choice):
    if pooled_choice == tr.POOLED_ZERO and extras.get("pooled_output") is not None:
        return _extras_with_pooled(extras, torch.zeros_like(extras["pooled_output"]))
    return dict(extras)


def _swap_extras(extras, eos_extras, pooled_choice):
    if pooled_choice == tr.POOLED_FROM_EOS_PROMPT:
        return _extras_with_pooled(extras, eos_extras.get("pooled_output"))
    return _split_extras(extras, pooled_choice)  # the token prompt's own, or zeros


def _with_rows_replaced(prompt, replacements, eos_scope, pooled_choice, which_rows):
    out = []
    for (cond, extras), replacement in zip(prompt.entries, replacements):
        edited = cond.clone()
        for block in prompt.row_blocks:
            _copy_rows(edited, replacement, block, which_rows(block.roles, eos_scope))
        out.append([edited, _split_extras(extras, pooled_choice)])
    return out


def split_prompt(clip, tokens, family, replacement, eos_scope, pooled_output, seed):
    """The encoded prompt, its EOS-only entries and its prompt-only entries."""
    prompt = encode_prompt(clip, tokens, family)
    replacements = _replacements(clip, tokens, prompt, replacement, seed)
    eos_only = _with_rows_replaced(prompt, replacements, eos_scope, pooled_output, tr.replaced_in_eos_only)
    prompt_only = _with_rows_replaced(prompt, replacements, eos_scope, pooled_output, tr.replaced_in_prompt_only)
    return prompt, eos_only, prompt_only


def token_map_text(family, prompt):
    """The token map of an encoded prompt: every row's token and role per encoder."""
    cond = prompt.entries[0][0]
    return tr.format_token_map(family.name, family.pooled_source, cond.shape[1], cond.shape[-1], prompt.blocks)


def swap_eos(token_prompt, eos_prompt, eos_scope):
    """The token prompt's entries with their [EOS] rows taken from the [EOS] prompt, chunk by chunk."""
    out = []
    for (cond, _), (eos_cond, _) in zip(token_prompt.entries, eos_prompt.entries):
        swapped = cond.clone()
        for block, eos_block in zip(token_prompt.row_blocks, eos_prompt.row_blocks):
            targets, sources = tr.swap_row_pairs(block, eos_block, eos_scope)
            begin, end = block.columns
            targets = torch.tensor(targets, dtype=torch.long, device=cond.device)
            sources = torch.tensor(sources, dtype=torch.long, device=eos_cond.device)
            swapped[:, targets, begin:end] = eos_cond[:, sources, begin:end].to(swapped)
        out.append(swapped)
    return out


def swap_prompt(clip, token_text, eos_text, family, eos_scope, pooled_output):
    """The conditioning of ``token_text`` with the [EOS] rows of ``eos_text``, as CLIPTextEncode
    entries; the pooled output as ``pooled_output`` chooses."""
    token_tokens, eos_tokens = tr.pad_to_same_chunk_count(
        clip.tokenize(token_text, return_word_ids=True), clip.tokenize(eos_text, return_word_ids=True),
        clip.tokenize("", return_word_ids=True))
    token_prompt = encode_prompt(clip, token_tokens, family)
    eos_prompt = encode_prompt(clip, eos_tokens, family)
    out = []
    for swapped, (_, extras), (_, eos_extras) in zip(swap_eos(token_prompt, eos_prompt, eos_scope),
                                                     token_prompt.entries, eos_prompt.entries):
        out.append([swapped, _swap_extras(extras, eos_extras, pooled_output)])
    return out
