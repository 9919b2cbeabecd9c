"""The [EOS] tools in the real host: the real tokenizers, tiny random text encoders of each
family built from the host's classes, outputs compared with the stock CLIPTextEncode."""
import json
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("sd1", "sd2", "sdxl", "sd3", "flux")
WIDTH_L, WIDTH_H, WIDTH_G, WIDTH_T5 = 32, 40, 48, 24  # tiny_text_encoder's widths


@pytest.fixture(scope="module")
def eos(pack):
    """The [EOS] machinery the nodes use (the nodes themselves run through the host's registry)."""
    return pack["nodes.eos_tokens.conditioning"]


@pytest.fixture(scope="module")
def tr(pack):
    return pack["nodes.eos_tokens.roles"]


@pytest.fixture(scope="module")
def embedding_dir(tmp_path_factory):
    import safetensors.torch
    folder = tmp_path_factory.mktemp("embeddings")
    generator = torch.Generator().manual_seed(7)
    # SD1.x-style: CLIP-L vectors only, so wider encoders ignore it.
    safetensors.torch.save_file({"clip_l": torch.randn(3, WIDTH_L, generator=generator)},
                                str(folder / "tiny_l.safetensors"))
    # SDXL-style: a vector set per encoder.
    safetensors.torch.save_file({"clip_l": torch.randn(2, WIDTH_L, generator=generator),
                                 "clip_g": torch.randn(2, WIDTH_G, generator=generator)},
                                str(folder / "tiny_xl.safetensors"))
    return folder


@pytest.fixture(scope="module")
def encoder(tiny, embedding_dir):
    built = {}

    def get(family):
        if family not in built:
            built[family] = tiny.tiny_text_encoder(family, seed=3, embedding_directory=str(embedding_dir))
        return built[family]
    return get


def stock(clip, text):
    import nodes
    return nodes.CLIPTextEncode().encode(clip, text)[0]


def run(node_id, **inputs):
    import nodes
    return nodes.NODE_CLASS_MAPPINGS[node_id].EXECUTE_NORMALIZED(**inputs).result


def split(tr, clip, text, **options):
    settings = dict(replacement=tr.REPLACE_ZEROS, eos_scope=tr.EOS_SCOPE_BLOCK, pooled_output=tr.POOLED_KEEP, seed=0)
    settings.update(options)
    return run("ShapeFirstEOSSplit", clip=clip, text=text, **settings)


def swap(tr, clip, token_text, eos_text, **options):
    settings = dict(eos_scope=tr.EOS_SCOPE_BLOCK, pooled_output=tr.POOLED_FROM_EOS_PROMPT)
    settings.update(options)
    return run("ShapeFirstEOSSwap", clip=clip, token_text=token_text, eos_text=eos_text, **settings)[0]


def blocks(eos, clip, text):
    family = eos.family_of(clip, "test")
    return eos.encode_prompt(clip, clip.tokenize(text, return_word_ids=True), family).blocks


def roles_by_encoder(eos, clip, text):
    return {block.name: [[row.role for row in chunk] for chunk in block.chunks] for block in blocks(eos, clip, text)}


def token_count(clip, attribute, text):
    """Prompt tokens as the host's underlying Hugging Face tokenizer counts them."""
    ids = getattr(clip.tokenizer, attribute).tokenizer(text)["input_ids"]
    return len(ids) - (2 if attribute.startswith("clip") else 1)  # minus [SOS]/[EOS], or T5's </s>


def clip_chunk(prompt_tokens, length=77):
    return ["SOS"] + ["prompt"] * prompt_tokens + ["EOS"] + ["padding"] * (length - prompt_tokens - 2)


def t5_chunk(prompt_tokens, length):
    return ["prompt"] * prompt_tokens + ["EOS"] + ["padding"] * (length - prompt_tokens - 1)


def assert_same_conditioning(actual, expected):
    assert len(actual) == len(expected)
    for (cond, extras), (expected_cond, expected_extras) in zip(actual, expected):
        assert torch.equal(cond, expected_cond)
        assert extras.keys() == expected_extras.keys()
        assert torch.equal(extras["pooled_output"], expected_extras["pooled_output"])


def assert_rows_replaced(out, full, replacement, prompt_blocks, which_rows, eos_scope):
    """Inside each encoder's block, the chosen rows equal ``replacement`` and the others ``full``;
    columns outside every block (SD3's zero padding) stay as they were."""
    expected = full.clone()
    for block in prompt_blocks:
        if block.first_row is None:
            continue
        rows = [block.first_row + i for i, on in enumerate(which_rows(block.roles, eos_scope)) if on]
        start, end = block.columns
        expected[:, rows, start:end] = replacement[:, rows, start:end]
    assert torch.equal(out, expected)
    assert not torch.equal(out, full)


SHORT = "a red cube"


@pytest.mark.parametrize("family", FAMILIES)
def test_short_prompt_roles_and_layout_per_family(eos, encoder, family):
    clip = encoder(family)
    layout = {block.name: block for block in blocks(eos, clip, SHORT)}
    roles = roles_by_encoder(eos, clip, SHORT)
    n = token_count(clip, "clip_l" if family != "sd2" else "clip_h", SHORT)
    assert n == 3
    expected = {
        "sd1": {"CLIP-L": ((0, WIDTH_L), 0)},
        "sd2": {"CLIP-H": ((0, WIDTH_H), 0)},
        "sdxl": {"CLIP-L": ((0, WIDTH_L), 0), "CLIP-G": ((WIDTH_L, WIDTH_L + WIDTH_G), 0)},
        # SD3: CLIP rows first, T5's 4096-wide rows below them.
        "sd3": {"CLIP-L": ((0, WIDTH_L), 0), "CLIP-G": ((WIDTH_L, WIDTH_L + WIDTH_G), 0), "T5-XXL": ((0, 4096), 77)},
        # Flux: only T5 rows; CLIP-L gives the pooled output alone.
        "flux": {"T5-XXL": ((0, WIDTH_T5), 0), "CLIP-L": (None, None)},
    }[family]
    assert {name: (block.columns, block.first_row) for name, block in layout.items()} == expected
    for name in expected:
        if name == "T5-XXL":
            n_t5 = token_count(clip, "t5xxl", SHORT)
            assert roles[name] == [t5_chunk(n_t5, 256 if family == "flux" else 77)]
        else:
            assert roles[name] == [clip_chunk(n)]
    pad_labels = {name: block.chunks[0][-1].label for name, block in layout.items()}
    # SD1.x pads with [EOS] itself; SD2.x and CLIP-G pad with token 0 ("!"), T5 with <pad>.
    assert pad_labels == {name: {"CLIP-L": "<|endoftext|>", "CLIP-H": "!", "CLIP-G": "!", "T5-XXL": "<pad>"}[name]
                          for name in expected}


TEXTS = {
    "weighted": "a (red:1.4) cube on a (wooden table:0.8)",
    "embedding": "a embedding:tiny_l cube and embedding:tiny_xl",
    "two chunks": "cat " * 100,
}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("text", TEXTS.values(), ids=TEXTS.keys())
def test_full_output_is_clip_text_encode_bit_for_bit(tr, encoder, family, text):
    clip = encoder(family)
    full = split(tr, clip, text)[0]
    assert_same_conditioning(full, stock(clip, text))


def test_weighted_prompt_rows_keep_roles_and_weights(eos, encoder):
    clip = encoder("sd1")
    (block,) = blocks(eos, clip, "a (red:1.4) cube")
    rows = block.chunks[0]
    assert [(row.role, row.label, row.weight) for row in rows[:5]] == [
        ("SOS", "<|startoftext|>", 1.0), ("prompt", "a</w>", 1.0), ("prompt", "red</w>", 1.4),
        ("prompt", "cube</w>", 1.0), ("EOS", "<|endoftext|>", 1.0)]


def test_embedding_vectors_are_prompt_rows(eos, encoder):
    (block,) = blocks(eos, encoder("sd1"), "a embedding:tiny_l cube")
    rows = block.chunks[0]
    assert [row.role for row in rows[:7]] == ["SOS"] + ["prompt"] * 5 + ["EOS"]
    assert [row.label for row in rows[1:6]] == ["a</w>"] + ["<embedding vector>"] * 3 + ["cube</w>"]


def test_sdxl_embedding_of_clip_l_width_is_ignored_by_clip_g(eos, tr, encoder):
    clip = encoder("sdxl")
    text = "a embedding:tiny_l cube"
    layout = {block.name: block for block in blocks(eos, clip, text)}
    assert [row.role for row in layout["CLIP-L"].chunks[0][:7]] == ["SOS"] + ["prompt"] * 5 + ["EOS"]
    # The host drops the 32-wide vectors from the 48-wide CLIP-G and pads at the end instead.
    g_rows = layout["CLIP-G"].chunks[0]
    assert [row.role for row in g_rows] == clip_chunk(2)
    assert [row.label for row in g_rows[-3:]] == [tr.IGNORED_EMBEDDING_LABEL] * 3
    full, eos_only, _, _ = split(tr, clip, text)
    # Row 3 is an embedding row (prompt) in the L half but CLIP-G's [EOS]: only L is replaced.
    assert torch.equal(eos_only[0][0][0, 3, :WIDTH_L], torch.zeros(WIDTH_L))
    assert torch.equal(eos_only[0][0][0, 3, WIDTH_L:], full[0][0][0, 3, WIDTH_L:])


def test_sdxl_style_embedding_is_used_by_both_halves(eos, encoder):
    layout = blocks(eos, encoder("sdxl"), "a embedding:tiny_xl cube")
    for block in layout:
        assert [row.label for row in block.chunks[0][1:5]] == ["a</w>", "<embedding vector>", "<embedding vector>",
                                                               "cube</w>"]
        assert [row.role for row in block.chunks[0]] == clip_chunk(4)


def test_long_prompt_roles_per_chunk(eos, encoder):
    clip = encoder("sd1")
    text = "cat " * 100
    assert token_count(clip, "clip_l", text) == 100
    # One long run of tokens is split across chunks, each ending in its own [EOS].
    assert roles_by_encoder(eos, clip, text)["CLIP-L"] == [["SOS"] + ["prompt"] * 75 + ["EOS"], clip_chunk(25)]
    # A short weighted group that does not fit moves whole to the next chunk.
    (block,) = blocks(eos, clip, "cat " * 74 + "(red cube:1.1)")
    assert [[row.role for row in chunk] for chunk in block.chunks] == [
        ["SOS"] + ["prompt"] * 74 + ["EOS", "padding"], clip_chunk(2)]
    assert [row.weight for row in block.chunks[1][1:3]] == [1.1, 1.1]
    assert block.chunk_starts() == [0, 77]


def sdxl_tokens_like_clip_text_encode_sdxl(clip, text_g, text_l):
    """The tokens CLIPTextEncodeSDXL encodes, with word ids (same steps as the host's node)."""
    tokens = clip.tokenize(text_g, return_word_ids=True)
    tokens["l"] = clip.tokenize(text_l, return_word_ids=True)["l"]
    empty = clip.tokenize("", return_word_ids=True)
    while len(tokens["l"]) < len(tokens["g"]):
        tokens["l"] += empty["l"]
    while len(tokens["l"]) > len(tokens["g"]):
        tokens["g"] += empty["g"]
    return tokens


def test_sdxl_with_different_text_l_and_text_g(eos, tr, encoder):
    import nodes
    clip = encoder("sdxl")
    text_g, text_l = "cat " * 100, "a dog"
    reference = nodes.NODE_CLASS_MAPPINGS["CLIPTextEncodeSDXL"].EXECUTE_NORMALIZED(
        clip=clip, width=1024, height=1024, crop_w=0, crop_h=0, target_width=1024, target_height=1024,
        text_g=text_g, text_l=text_l).result[0]
    tokens = sdxl_tokens_like_clip_text_encode_sdxl(clip, text_g, text_l)
    family = eos.family_of(clip, "test")
    prompt, eos_only, prompt_only = eos.split_prompt(
        clip, tokens, family, tr.REPLACE_ZEROS, tr.EOS_SCOPE_BLOCK, tr.POOLED_KEEP, 0)
    assert torch.equal(prompt.entries[0][0], reference[0][0])
    assert torch.equal(prompt.entries[0][1]["pooled_output"], reference[0][1]["pooled_output"])
    layout = {block.name: [[row.role for row in chunk] for chunk in block.chunks] for block in prompt.blocks}
    assert layout == {"CLIP-L": [clip_chunk(2), clip_chunk(0)],  # padded with an empty chunk
                      "CLIP-G": [["SOS"] + ["prompt"] * 75 + ["EOS"], clip_chunk(25)]}
    full = prompt.entries[0][0]
    zeros = torch.zeros_like(full)
    assert_rows_replaced(eos_only[0][0], full, zeros, prompt.blocks, tr.replaced_in_eos_only, tr.EOS_SCOPE_BLOCK)
    assert_rows_replaced(prompt_only[0][0], full, zeros, prompt.blocks, tr.replaced_in_prompt_only,
                         tr.EOS_SCOPE_BLOCK)
    # Row 3 is CLIP-L's [EOS] but a CLIP-G prompt token: EOS-only keeps the L half only.
    assert torch.equal(eos_only[0][0][0, 3, :WIDTH_L], full[0, 3, :WIDTH_L])
    assert torch.equal(eos_only[0][0][0, 3, WIDTH_L:], torch.zeros(WIDTH_G))


def test_sd1_eos_only_and_prompt_only_rows(tr, encoder):
    clip = encoder("sd1")
    full, eos_only, prompt_only, _ = split(tr, clip, "a (red:1.4) cube")
    cond, eos_cond, prompt_cond = full[0][0][0], eos_only[0][0][0], prompt_only[0][0][0]
    zero_row = torch.zeros(WIDTH_L)
    # Rows: 0 [SOS], 1-3 prompt, 4 [EOS], 5-76 padding.
    assert all(torch.equal(eos_cond[row], zero_row) for row in (1, 2, 3))
    assert torch.equal(eos_cond[[0, *range(4, 77)]], cond[[0, *range(4, 77)]])
    assert torch.equal(prompt_cond[:4], cond[:4])
    assert torch.equal(prompt_cond[4:], torch.zeros(73, WIDTH_L))
    _, eos_first, prompt_first, _ = split(tr, clip, "a (red:1.4) cube", eos_scope=tr.EOS_SCOPE_FIRST)
    # First [EOS] only: EOS-only keeps [SOS] and row 4; prompt-only replaces row 4 alone.
    assert torch.equal(eos_first[0][0][0, [0, 4]], cond[[0, 4]])
    assert torch.equal(eos_first[0][0][0, [1, 2, 3, *range(5, 77)]], torch.zeros(75, WIDTH_L))
    assert torch.equal(prompt_first[0][0][0, 4], zero_row)
    assert torch.equal(prompt_first[0][0][0, [*range(4), *range(5, 77)]], cond[[*range(4), *range(5, 77)]])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scope", ["block", "first"])
def test_eos_only_and_prompt_only_per_family(eos, tr, encoder, family, scope):
    clip = encoder(family)
    eos_scope = tr.EOS_SCOPE_BLOCK if scope == "block" else tr.EOS_SCOPE_FIRST
    text = "a (red:1.3) cube"
    full, eos_only, prompt_only, _ = split(tr, clip, text, eos_scope=eos_scope)
    cond = full[0][0]
    layout = blocks(eos, clip, text)
    assert_rows_replaced(eos_only[0][0], cond, torch.zeros_like(cond), layout, tr.replaced_in_eos_only, eos_scope)
    assert_rows_replaced(prompt_only[0][0], cond, torch.zeros_like(cond), layout, tr.replaced_in_prompt_only,
                         eos_scope)


@pytest.mark.parametrize("family", ["sd1", "sdxl", "flux"])
def test_empty_prompt_replacement_is_the_empty_prompts_rows(eos, tr, encoder, family):
    clip = encoder(family)
    full, eos_only, prompt_only, _ = split(tr, clip, SHORT, replacement=tr.REPLACE_EMPTY)
    empty = stock(clip, "")[0][0]
    layout = blocks(eos, clip, SHORT)
    assert_rows_replaced(eos_only[0][0], full[0][0], empty, layout, tr.replaced_in_eos_only, tr.EOS_SCOPE_BLOCK)
    assert_rows_replaced(prompt_only[0][0], full[0][0], empty, layout, tr.replaced_in_prompt_only,
                         tr.EOS_SCOPE_BLOCK)


def test_empty_prompt_replacement_in_every_chunk(eos, tr, encoder):
    clip = encoder("sd1")
    text = "cat " * 100
    _, eos_only, _, _ = split(tr, clip, text, replacement=tr.REPLACE_EMPTY)
    empty = stock(clip, "")[0][0][0]
    # Chunk 2: rows 78-102 are prompt tokens, replaced by the empty prompt at positions 1-25.
    assert torch.allclose(eos_only[0][0][0, 78:103], empty[1:26], rtol=0, atol=1e-6)
    assert torch.allclose(eos_only[0][0][0, 1:76], empty[1:76], rtol=0, atol=1e-6)


def test_noise_replacement_is_seeded_and_scaled_like_the_rows(tr, encoder):
    clip = encoder("sd1")
    full, eos_only, prompt_only, _ = split(tr, clip, SHORT, replacement=tr.REPLACE_NOISE, seed=5)
    again = split(tr, clip, SHORT, replacement=tr.REPLACE_NOISE, seed=5)
    other = split(tr, clip, SHORT, replacement=tr.REPLACE_NOISE, seed=6)
    assert torch.equal(eos_only[0][0], again[1][0][0]) and torch.equal(prompt_only[0][0], again[2][0][0])
    assert not torch.equal(eos_only[0][0], other[1][0][0])
    cond = full[0][0][0]
    noise_rows = prompt_only[0][0][0, 4:]
    assert torch.equal(eos_only[0][0][0, 4:], cond[4:]) and torch.equal(prompt_only[0][0][0, :4], cond[:4])
    reference_std = cond[1:].std()
    assert 0.8 < float(noise_rows.std() / reference_std) < 1.25
    assert not torch.equal(noise_rows, cond[4:])


def test_pooled_output_options(tr, encoder):
    clip = encoder("sdxl")
    reference = stock(clip, SHORT)[0][1]["pooled_output"]
    full, eos_only, prompt_only, _ = split(tr, clip, SHORT, pooled_output=tr.POOLED_ZERO)
    assert torch.equal(full[0][1]["pooled_output"], reference)
    for out in (eos_only, prompt_only):
        assert torch.equal(out[0][1]["pooled_output"], torch.zeros_like(reference))
    kept = split(tr, clip, SHORT, pooled_output=tr.POOLED_KEEP)
    assert torch.equal(kept[1][0][1]["pooled_output"], reference)
    token_text, eos_text = "a red cube", "a blue sphere on grass"
    expected = {tr.POOLED_FROM_EOS_PROMPT: stock(clip, eos_text)[0][1]["pooled_output"],
                tr.POOLED_FROM_TOKEN_PROMPT: stock(clip, token_text)[0][1]["pooled_output"],
                tr.POOLED_ZERO: torch.zeros_like(reference)}
    for choice, pooled in expected.items():
        assert torch.equal(swap(tr, clip, token_text, eos_text, pooled_output=choice)[0][1]["pooled_output"], pooled)


def test_clip_skip_is_honoured(eos, tr, encoder):
    import nodes
    clip = encoder("sd1")
    skipped = nodes.CLIPSetLastLayer().set_last_layer(clip, -2)[0]
    full, eos_only, _, _ = split(tr, skipped, SHORT, replacement=tr.REPLACE_EMPTY)
    assert_same_conditioning(full, stock(skipped, SHORT))
    assert not torch.equal(full[0][0], stock(clip, SHORT)[0][0])
    assert_rows_replaced(eos_only[0][0], full[0][0], stock(skipped, "")[0][0], blocks(eos, skipped, SHORT),
                         tr.replaced_in_eos_only, tr.EOS_SCOPE_BLOCK)


def expected_swap_row(token_eos, eos_eos, row, length=77):
    return min(eos_eos + row - token_eos, length - 1)


@pytest.mark.parametrize("token_text,eos_text", [("a cat", "a photo of a red dog on a beach"),
                                                 ("a photo of a red dog on a beach", "a cat")])
def test_swap_rows_come_from_the_right_prompt(tr, encoder, token_text, eos_text):
    clip = encoder("sd1")
    token_cond, eos_cond = stock(clip, token_text)[0][0][0], stock(clip, eos_text)[0][0][0]
    token_eos, eos_eos = 1 + token_count(clip, "clip_l", token_text), 1 + token_count(clip, "clip_l", eos_text)
    swapped = swap(tr, clip, token_text, eos_text)[0][0][0]
    assert swapped.shape == token_cond.shape
    assert torch.equal(swapped[:token_eos], token_cond[:token_eos])
    for row in range(token_eos, 77):
        assert torch.equal(swapped[row], eos_cond[expected_swap_row(token_eos, eos_eos, row)]), row
    first_only = swap(tr, clip, token_text, eos_text, eos_scope=tr.EOS_SCOPE_FIRST)[0][0][0]
    assert torch.equal(first_only[token_eos], eos_cond[eos_eos])
    others = [row for row in range(77) if row != token_eos]
    assert torch.equal(first_only[others], token_cond[others])


def test_swap_pads_the_shorter_prompt_with_empty_chunks(tr, encoder):
    clip = encoder("sd1")
    long_text, short_text = "cat " * 100, "a dog"
    long_cond, short_cond = stock(clip, long_text)[0][0][0], stock(clip, short_text)[0][0][0]
    empty = stock(clip, "")[0][0][0]
    close = dict(rtol=0, atol=1e-6)  # chunks encoded in a batch of two vs alone
    # Token prompt two chunks, [EOS] prompt one: chunk 2's [EOS] rows are the empty prompt's.
    swapped = swap(tr, clip, long_text, short_text)[0][0][0]
    assert swapped.shape == (154, WIDTH_L)
    assert torch.equal(swapped[:76], long_cond[:76])
    assert torch.allclose(swapped[76], short_cond[3], **close)
    assert torch.equal(swapped[77:103], long_cond[77:103])
    assert torch.allclose(swapped[103:154], empty[1:52], **close)
    # Token prompt one chunk, [EOS] prompt two: an empty chunk takes chunk 2's [EOS] rows.
    swapped = swap(tr, clip, short_text, long_text)[0][0][0]
    assert swapped.shape == (154, WIDTH_L)
    assert torch.allclose(swapped[:3], short_cond[:3], **close)
    assert torch.allclose(swapped[3], long_cond[76], **close)  # chunk 1's [EOS] is its last row
    assert torch.allclose(swapped[77], empty[0], **close)
    assert torch.allclose(swapped[4:77], long_cond[76].expand(73, -1), **close)  # then repeated
    # Chunk 2's rows after [SOS] follow from its [EOS] (row 103) on; past the end, the last row repeats.
    assert torch.allclose(swapped[78:154], torch.cat([long_cond[103:154], long_cond[153].expand(25, -1)]), **close)


@pytest.mark.parametrize("family", ["sd2", "sdxl", "sd3", "flux"])
def test_swap_per_family(eos, tr, encoder, family):
    clip = encoder(family)
    token_text, eos_text = "a red cube", "a photo of a blue sphere on green grass"
    token_cond, eos_cond = stock(clip, token_text)[0][0], stock(clip, eos_text)[0][0]
    expected = token_cond.clone()
    token_layout, eos_layout = blocks(eos, clip, token_text), blocks(eos, clip, eos_text)
    for block, eos_block in zip(token_layout, eos_layout):
        if block.first_row is None:
            continue
        start, end = block.columns
        for row, source in enumerate(tr.swap_sources(block.roles, eos_block.roles, tr.EOS_SCOPE_BLOCK)):
            if source is not None:
                expected[:, block.first_row + row, start:end] = eos_cond[:, eos_block.first_row + source, start:end]
    swapped = swap(tr, clip, token_text, eos_text)
    assert torch.equal(swapped[0][0], expected)
    assert not torch.equal(swapped[0][0], token_cond)
    assert torch.equal(swapped[0][1]["pooled_output"], stock(clip, eos_text)[0][1]["pooled_output"])


def test_missing_clip_is_named(tr):
    with pytest.raises(ValueError, match="'clip' input is None"):
        split(tr, None, SHORT)
    with pytest.raises(ValueError, match="'clip' input is None"):
        swap(tr, None, SHORT, SHORT)


def test_unsupported_text_encoder_is_named(tr, encoder):
    refiner = encoder("sdxl_refiner")
    for call in (lambda: split(tr, refiner, SHORT), lambda: swap(tr, refiner, SHORT, SHORT)):
        with pytest.raises(ValueError, match="SDXLRefinerClipModel .* is not supported.*Supported: SD1.x"):
            call()


def test_bad_option_is_named(tr, encoder):
    with pytest.raises(ValueError, match="replacement must be one of"):
        split(tr, encoder("sd1"), SHORT, replacement="blank")
    with pytest.raises(ValueError, match="pooled_output must be one of"):
        swap(tr, encoder("sd1"), SHORT, SHORT, pooled_output="keep")


def test_nothing_in_the_graph_is_mutated(tr, encoder):
    import nodes
    clip = nodes.CLIPSetLastLayer().set_last_layer(encoder("sdxl"), -2)[0]
    weights = {name: value.clone() for name, value in clip.cond_stage_model.state_dict().items()}
    before = stock(clip, SHORT)
    outputs = [split(tr, clip, SHORT, replacement=choice) for choice in tr.REPLACEMENTS]
    swapped = swap(tr, clip, SHORT, "a blue sphere")
    after = stock(clip, SHORT)
    assert_same_conditioning(after, before)
    assert clip.layer_idx == -2 and clip.tokenizer_options == {}
    assert all(torch.equal(value, weights[name]) for name, value in clip.cond_stage_model.state_dict().items())
    for full, eos_only, prompt_only, _ in outputs:
        assert_same_conditioning(full, before)  # building the other two did not touch it
        assert eos_only[0][0] is not full[0][0] and prompt_only[0][0] is not full[0][0]
        assert eos_only[0][1] is not full[0][1]
    assert swapped[0][0].shape == before[0][0].shape


def test_every_key_of_the_conditioning_is_kept(tr, encoder):
    import comfy.hooks
    import nodes
    hooks = comfy.hooks.create_hook_lora({}, strength_model=1.0, strength_clip=1.0)
    set_hooks = nodes.NODE_CLASS_MAPPINGS["SetClipHooks"]()
    clip = set_hooks.apply_hooks(encoder("sd1"), schedule_clip=False, apply_to_conds=True, hooks=hooks)[0]
    reference = stock(clip, SHORT)
    assert set(reference[0][1]) == {"pooled_output", "hooks"}
    for choice in tr.SPLIT_POOLED_CHOICES:
        for out in split(tr, clip, SHORT, pooled_output=choice)[:3]:
            assert out[0][1].keys() == reference[0][1].keys()
            assert out[0][1]["hooks"] is reference[0][1]["hooks"]
    for choice in tr.SWAP_POOLED_CHOICES:
        assert swap(tr, clip, SHORT, "a dog", pooled_output=choice)[0][1].keys() == reference[0][1].keys()


def test_token_map_names_every_encoder_and_row(tr, encoder):
    token_map = split(tr, encoder("sdxl"), "a (red:1.4) cube")[3]
    assert "Text encoder: SDXL" in token_map
    assert "CLIP-L (tokens 'l'): rows 0-76, columns 0-31" in token_map
    assert "CLIP-G (tokens 'g'): rows 0-76, columns 32-79" in token_map
    lines = token_map.splitlines()
    assert sum(line.split()[:4] == ["2", "prompt", "red</w>", "weight"] for line in lines) == 2
    assert sum(line.split()[:3] == ["4", "EOS", "<|endoftext|>"] for line in lines) == 2
    assert any(line.split() == ["5-76", "(72x)", "padding", "!"] for line in lines)
    flux_map = split(tr, encoder("flux"), SHORT)[3]
    assert "CLIP-L (tokens 'l'): feeds only the pooled output, adds no rows" in flux_map


# --- example workflows -------------------------------------------------------------------

UI_WORKFLOWS = sorted((REPO / "example_workflows").glob("eos_*.json"))


def api_twin(path):
    """The API-format twin of a UI example: example_workflows/api/<same name>."""
    return path.parent / "api" / path.name
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
FRONTEND_ONLY = {"Note"}  # drawn by the frontend, never sent to the server


def widget_count(node_class):
    """Values the frontend stores for the node's widgets: one per widget input, plus the
    'control after generate' value of seed-like INTs (the frontend's rule)."""
    count = 0
    for section in ("required", "optional"):
        for name, spec in node_class.INPUT_TYPES().get(section, {}).items():
            options = spec[1] if len(spec) > 1 else {}
            if options.get("forceInput") or not (isinstance(spec[0], list) or spec[0] in WIDGET_TYPES):
                continue
            count += 1
            control = options.get("control_after_generate")
            if control is None:
                control = spec[0] == "INT" and name in ("seed", "noise_seed")
            count += bool(control)
    return count


def test_both_example_workflows_exist():
    assert [path.name for path in UI_WORKFLOWS] == ["eos_only_vs_prompt_only.json", "eos_switch_experiment.json"]
    for path in UI_WORKFLOWS:
        assert api_twin(path).is_file()


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda path: path.name)
def test_ui_workflow_nodes_exist_with_matching_widgets(pack, path):
    import nodes
    workflow = json.loads(path.read_text())
    node_ids = {node["id"] for node in workflow["nodes"]}
    for node in workflow["nodes"]:
        if node["type"] in FRONTEND_ONLY:
            continue
        assert node["type"] in nodes.NODE_CLASS_MAPPINGS, node["type"]
        node_class = nodes.NODE_CLASS_MAPPINGS[node["type"]]
        assert len(node.get("widgets_values", [])) == widget_count(node_class), node["type"]
    for link_id, source, _, target, _, _ in workflow["links"]:
        assert source in node_ids and target in node_ids, link_id
    assert any(node["type"].startswith("ShapeFirstEOS") for node in workflow["nodes"])


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda path: path.name)
def test_api_twin_matches_node_inputs(pack, path):
    import nodes
    ui_types = sorted(node["type"] for node in json.loads(path.read_text())["nodes"] if node["type"] not in FRONTEND_ONLY)
    api = json.loads(api_twin(path).read_text())
    assert sorted(node["class_type"] for node in api.values()) == ui_types
    for node_id, node in api.items():
        spec = nodes.NODE_CLASS_MAPPINGS[node["class_type"]].INPUT_TYPES()
        required, optional = spec.get("required", {}), spec.get("optional", {})
        assert set(required) <= set(node["inputs"]), (node_id, set(required) - set(node["inputs"]))
        assert set(node["inputs"]) <= set(required) | set(optional), node_id
        for value in node["inputs"].values():
            if isinstance(value, list):  # a link: [source node id, output index]
                assert value[0] in api, (node_id, value)
