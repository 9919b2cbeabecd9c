"""Row roles, row selections and the swap's alignment, without the host."""
import pytest

from shapefirst.nodes import validation
from shapefirst.nodes.eos_tokens import roles as tr
from shapefirst.nodes.eos_tokens.roles import EOS, PADDING, PROMPT, SOS


def positions(word_ids, ignored=()):
    return [tr.TokenPosition(f"t{i}", 1.0, word_id, ignored=i in ignored) for i, word_id in enumerate(word_ids)]


def roles_of(rows):
    return [row.role for row in rows]


def test_clip_chunk_roles_come_from_position():
    rows = tr.chunk_rows(positions([0, 1, 1, 2, 0, 0, 0]), has_start=True)
    assert roles_of(rows) == [SOS, PROMPT, PROMPT, PROMPT, EOS, PADDING, PADDING]


def test_t5_chunk_has_no_sos():
    rows = tr.chunk_rows(positions([1, 1, 0, 0]), has_start=False)
    assert roles_of(rows) == [PROMPT, PROMPT, EOS, PADDING]


def test_empty_prompt_chunks():
    assert roles_of(tr.chunk_rows(positions([0, 0, 0]), has_start=True)) == [SOS, EOS, PADDING]
    assert roles_of(tr.chunk_rows(positions([0, 0, 0]), has_start=False)) == [EOS, PADDING, PADDING]


def test_full_chunk_ends_with_its_eos():
    rows = tr.chunk_rows(positions([0] + [1] * 75 + [0]), has_start=True)
    assert roles_of(rows) == [SOS] + [PROMPT] * 75 + [EOS]


def test_ignored_embedding_row_moves_to_the_end_as_padding():
    rows = tr.chunk_rows(positions([0, 1, 2, 3, 0, 0], ignored={2}), has_start=True)
    assert roles_of(rows) == [SOS, PROMPT, PROMPT, EOS, PADDING, PADDING]
    assert [row.label for row in rows] == ["t0", "t1", "t3", "t4", "t5", tr.IGNORED_EMBEDDING_LABEL]


def test_chunk_without_eos_or_with_tokens_after_it_is_refused():
    with pytest.raises(ValueError, match="without an \\[EOS\\]"):
        tr.chunk_rows(positions([0, 1, 1]), has_start=True)
    with pytest.raises(ValueError, match="after the \\[EOS\\]"):
        tr.chunk_rows(positions([0, 1, 0, 1]), has_start=True)


def test_weights_are_kept_on_rows():
    rows = tr.chunk_rows([tr.TokenPosition("cat", 1.3, 1), tr.TokenPosition("<eos>", 1.0, 0)], has_start=False)
    assert rows[0].weight == 1.3 and rows[1].weight == 1.0


def test_truncate_chunks_cuts_at_the_row_count():
    chunks = (tuple("abc"), tuple("def"))
    assert tr.truncate_chunks(chunks, 4) == (tuple("abc"), ("d",))
    assert tr.truncate_chunks(chunks, 6) == chunks


ROLES = [SOS, PROMPT, PROMPT, EOS, PADDING, PADDING]


def test_eos_only_replaces_prompt_rows_and_padding_outside_the_scope():
    assert tr.replaced_in_eos_only(ROLES, tr.EOS_SCOPE_BLOCK) == [False, True, True, False, False, False]
    assert tr.replaced_in_eos_only(ROLES, tr.EOS_SCOPE_FIRST) == [False, True, True, False, True, True]


def test_prompt_only_replaces_exactly_the_eos_rows():
    assert tr.replaced_in_prompt_only(ROLES, tr.EOS_SCOPE_BLOCK) == [False, False, False, True, True, True]
    assert tr.replaced_in_prompt_only(ROLES, tr.EOS_SCOPE_FIRST) == [False, False, False, True, False, False]


def test_eos_only_and_prompt_only_split_every_row_but_sos():
    for scope in tr.EOS_SCOPES:
        eos_only, prompt_only = tr.replaced_in_eos_only(ROLES, scope), tr.replaced_in_prompt_only(ROLES, scope)
        assert [a != b for a, b in zip(eos_only, prompt_only)] == [role != SOS for role in ROLES]


def test_swap_aligns_from_the_first_eos_and_repeats_the_last_row():
    short = [SOS, PROMPT, EOS, PADDING, PADDING, PADDING]
    long = [SOS, PROMPT, PROMPT, PROMPT, EOS, PADDING]
    # Token prompt short, [EOS] prompt long: its block runs out, the last row repeats.
    assert tr.swap_sources(short, long, tr.EOS_SCOPE_BLOCK) == [None, None, 4, 5, 5, 5]
    # Token prompt long, [EOS] prompt short: the extra rows of the block are left out.
    assert tr.swap_sources(long, short, tr.EOS_SCOPE_BLOCK) == [None, None, None, None, 2, 3]
    assert tr.swap_sources(short, long, tr.EOS_SCOPE_FIRST) == [None, None, 4, None, None, None]


def test_swap_row_pairs_are_absolute_rows_chunk_by_chunk():
    def block(first_row, *chunks):
        rows = tuple(tuple(tr.TokenRow(role, role) for role in chunk) for chunk in chunks)
        return tr.EncoderRows("CLIP-L", "l", first_row, (0, 4), rows)
    short = [SOS, PROMPT, EOS, PADDING]
    long = [SOS, PROMPT, PROMPT, EOS]
    targets, sources = tr.swap_row_pairs(block(0, short, long), block(10, long, short), tr.EOS_SCOPE_BLOCK)
    assert targets == [2, 3, 7] and sources == [13, 13, 16]


def test_pad_to_same_chunk_count_appends_empty_chunks_without_touching_inputs():
    a = {"l": [["a1"], ["a2"]], "t5xxl": [["ta"]]}
    b = {"l": [["b1"]], "t5xxl": [["tb"]]}
    empty = {"l": [["e"]], "t5xxl": [["te"]]}
    padded_a, padded_b = tr.pad_to_same_chunk_count(a, b, empty)
    assert padded_a == a
    assert padded_b == {"l": [["b1"], ["e"]], "t5xxl": [["tb"]]}
    assert b == {"l": [["b1"]], "t5xxl": [["tb"]]}


def test_empty_tokens_like_matches_every_chunk_length():
    tokens = {"l": [[1, 2, 3, 4], [5, 6, 7, 8]], "t5xxl": [[1, 2, 3, 4, 5]]}
    empty = {"l": [["S", "E", "p", "p"]], "t5xxl": [["E", "p", "p"]]}
    assert tr.empty_tokens_like(tokens, empty) == {
        "l": [["S", "E", "p", "p"], ["S", "E", "p", "p"]], "t5xxl": [["E", "p", "p", "p", "p"]]}


def test_strip_word_ids_gives_token_weight_pairs():
    assert tr.strip_word_ids({"l": [[(5, 1.2, 1), (6, 1.0, 0)]]}) == {"l": [[(5, 1.2), (6, 1.0)]]}


def test_token_map_lists_rows_and_folds_padding():
    chunk = tuple(tr.chunk_rows([tr.TokenPosition("<s>", 1.0, 0), tr.TokenPosition("cat", 1.3, 1)]
                                + [tr.TokenPosition("<e>", 1.0, 0)] * 4, has_start=True))
    lines = tr.format_encoder_map("CLIP-L", "rows 77-82", [chunk], first_row=77)
    assert lines[1] == "  chunk 1 (rows 77-82)"
    assert lines[3].split() == ["78", "prompt", "cat", "weight", "1.3"]
    assert lines[4].split() == ["79", "EOS", "<e>"]
    assert lines[5].split() == ["80-82", "(3x)", "padding", "<e>"]
    assert len(lines) == 6


def test_pooled_only_encoder_counts_positions_per_chunk():
    chunk = tuple(tr.chunk_rows(positions([0, 0]), has_start=True))
    lines = tr.format_encoder_map("CLIP-L", "pooled only", [chunk, chunk], first_row=None)
    assert "chunk 2 (positions 0-1)" in lines[4]


def test_token_map_names_the_family_size_and_every_encoder():
    chunk = tuple(tr.chunk_rows(positions([0, 1, 0]), has_start=True))
    blocks = [tr.EncoderRows("T5-XXL", "t5xxl", 0, (0, 24), (chunk,)),
              tr.EncoderRows("CLIP-L", "l", None, None, (chunk,))]
    text = tr.format_token_map("Flux", "CLIP-L at the first [EOS]", 3, 24, blocks)
    lines = text.splitlines()
    assert lines[:3] == ["Text encoder: Flux", "Conditioning: 3 rows x 24 columns",
                         "pooled_output: CLIP-L at the first [EOS]"]
    assert "T5-XXL (tokens 't5xxl'): rows 0-2, columns 0-23" in lines
    assert "CLIP-L (tokens 'l'): feeds only the pooled output, adds no rows" in lines
    assert text.endswith("t2\n") and not text.endswith("\n\n")


def test_check_choice_names_the_input_and_its_options():
    assert validation.check_choice("replacement", "zeros", tr.REPLACEMENTS) is None
    with pytest.raises(ValueError, match="replacement must be one of 'empty prompt', 'zeros', 'noise'; got 'blank'"):
        validation.require(validation.check_choice("replacement", "blank", tr.REPLACEMENTS))
