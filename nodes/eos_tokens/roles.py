"""Which row of a text conditioning is [SOS], a prompt token, the first [EOS] or padding.

Pure list logic for the [EOS] tools; nothing here imports ComfyUI or torch.

Vocabulary (used across the pack and its README):
- ``chunk``: one encoder pass of a tokenized prompt. CLIP encoders split a prompt into
  77-token chunks ``[SOS, tokens..., EOS, padding...]``; T5 makes one chunk of any length
  with no [SOS].
- ``word id``: the tokenizer's third entry with ``return_word_ids=True``. It is 0 for
  [SOS], [EOS] and padding alike, so roles come from position: a leading 0 is [SOS] (when
  the tokenizer has one), the first 0 after the prompt is the first [EOS], the rest padding.
- ``[EOS] rows``: by ``EOS_SCOPE_BLOCK`` the first [EOS] and all padding after it (the
  paper's [EOS] for SD1.x), by ``EOS_SCOPE_FIRST`` the first [EOS] alone.
"""
from dataclasses import dataclass

SOS = "SOS"
PROMPT = "prompt"
EOS = "EOS"
PADDING = "padding"

EOS_SCOPE_BLOCK = "[EOS] and the padding after it"
EOS_SCOPE_FIRST = "first [EOS] only"
EOS_SCOPES = (EOS_SCOPE_BLOCK, EOS_SCOPE_FIRST)

REPLACE_EMPTY = "empty prompt"
REPLACE_ZEROS = "zeros"
REPLACE_NOISE = "noise"
REPLACEMENTS = (REPLACE_EMPTY, REPLACE_ZEROS, REPLACE_NOISE)

POOLED_KEEP = "keep"
POOLED_ZERO = "zero"
SPLIT_POOLED_CHOICES = (POOLED_KEEP, POOLED_ZERO)

POOLED_FROM_EOS_PROMPT = "from the [EOS] prompt"
POOLED_FROM_TOKEN_PROMPT = "from the token prompt"
SWAP_POOLED_CHOICES = (POOLED_FROM_EOS_PROMPT, POOLED_FROM_TOKEN_PROMPT, POOLED_ZERO)

IGNORED_EMBEDDING_LABEL = "<pad: ignored embedding>"


@dataclass(frozen=True)
class TokenPosition:
    """One entry of a tokenized chunk, as the tokenizer gave it."""
    label: str
    weight: float
    word_id: int
    # The encoder skips an embedding vector whose width is not its own: that row disappears
    # and one padding row is added at the end of the chunk (host: SDClipModel.process_tokens).
    ignored: bool = False


@dataclass(frozen=True)
class TokenRow:
    """One row of the encoded chunk: what produced it and its role."""
    role: str
    label: str
    weight: float = 1.0


@dataclass(frozen=True)
class EncoderRows:
    """Where one text encoder's output sits in the conditioning tensor ``[batch, rows, columns]``."""
    name: str
    key: str
    first_row: int
    columns: tuple
    chunks: tuple  # per chunk, a tuple of TokenRow

    @property
    def row_count(self):
        return sum(len(chunk) for chunk in self.chunks)

    @property
    def roles(self):
        return [row.role for chunk in self.chunks for row in chunk]

    def chunk_starts(self):
        """Absolute row index of each chunk's first row."""
        starts, row = [], self.first_row
        for chunk in self.chunks:
            starts.append(row)
            row += len(chunk)
        return starts


def chunk_rows(positions, has_start):
    """The rows one chunk encodes to, each with its role.

    ``has_start``: the tokenizer begins every chunk with [SOS] (CLIP does, T5 does not).
    Raises ValueError when the chunk has no [EOS] or a prompt token follows it, which no
    supported tokenizer produces.
    """
    rows, seen_eos = [], False
    kept = [p for p in positions if not p.ignored]
    for index, position in enumerate(kept):
        if index == 0 and has_start and position.word_id == 0:
            role = SOS
        elif position.word_id != 0:
            if seen_eos:
                raise ValueError(f"prompt token {position.label!r} after the [EOS] of its chunk")
            role = PROMPT
        elif not seen_eos:
            role, seen_eos = EOS, True
        else:
            role = PADDING
        rows.append(TokenRow(role, position.label, position.weight))
    if not seen_eos:
        raise ValueError("a chunk without an [EOS] token: this tokenizer is not a CLIP or T5 one")
    rows += [TokenRow(PADDING, IGNORED_EMBEDDING_LABEL)] * (len(positions) - len(kept))
    return rows


def truncate_chunks(chunks, row_count):
    """The chunks cut to their first ``row_count`` rows (the host cuts SDXL's L and G to the shorter)."""
    out, left = [], row_count
    for chunk in chunks:
        if left <= 0:
            break
        out.append(tuple(chunk[:left]))
        left -= len(chunk)
    return tuple(out)


def is_eos_row(role, eos_scope):
    if eos_scope == EOS_SCOPE_FIRST:
        return role == EOS
    return role in (EOS, PADDING)


def replaced_in_eos_only(roles, eos_scope):
    """Rows the EOS-only conditioning replaces: all but [SOS] and the [EOS] rows."""
    return [role != SOS and not is_eos_row(role, eos_scope) for role in roles]


def replaced_in_prompt_only(roles, eos_scope):
    """Rows the prompt-only conditioning replaces: exactly the [EOS] rows."""
    return [is_eos_row(role, eos_scope) for role in roles]


def first_eos_index(roles):
    return roles.index(EOS)


def swap_sources(token_roles, eos_roles, eos_scope):
    """For each row of one chunk of the token prompt: ``None`` to keep it, or the row of the
    [EOS] prompt's chunk to take instead.

    Aligned from the first [EOS]: the token prompt's first-[EOS] row takes the [EOS] prompt's
    first-[EOS] row, the rows after it take the rows after that one. When the [EOS] prompt's
    chunk runs out (its prompt was longer), its last row is repeated; when it has more rows,
    the extra ones are left out, so every chunk keeps the token prompt's length.
    """
    token_eos, eos_eos = first_eos_index(token_roles), first_eos_index(eos_roles)
    sources = []
    for row, role in enumerate(token_roles):
        if row < token_eos or not is_eos_row(role, eos_scope):
            sources.append(None)
        else:
            sources.append(min(eos_eos + row - token_eos, len(eos_roles) - 1))
    return sources


def swap_row_pairs(block, eos_block, eos_scope):
    """(targets, sources): the rows of one encoder's block (EncoderRows) of the token prompt
    that take a row of the [EOS] prompt's block, and those rows, chunk by chunk, as absolute
    row indices (``swap_sources`` per chunk)."""
    targets, sources = [], []
    for chunk, eos_chunk, start, eos_start in zip(block.chunks, eos_block.chunks,
                                                  block.chunk_starts(), eos_block.chunk_starts()):
        roles, eos_roles = [row.role for row in chunk], [row.role for row in eos_chunk]
        for row, source in enumerate(swap_sources(roles, eos_roles, eos_scope)):
            if source is not None:
                targets.append(start + row)
                sources.append(eos_start + source)
    return targets, sources


def pad_to_same_chunk_count(tokens_a, tokens_b, empty_tokens):
    """Both tokenizations with the same number of chunks per encoder: the shorter one gets
    chunks of the empty prompt appended, as the host's CLIPTextEncodeSDXL does for text_l/text_g.
    The inputs are not modified."""
    out_a, out_b = {}, {}
    for key in tokens_a:
        a, b = list(tokens_a[key]), list(tokens_b[key])
        while len(a) < len(b):
            a.append(empty_tokens[key][0])
        while len(b) < len(a):
            b.append(empty_tokens[key][0])
        out_a[key], out_b[key] = a, b
    return out_a, out_b


def empty_tokens_like(tokens, empty_tokens):
    """The empty prompt's tokens shaped like ``tokens``: every chunk becomes the empty chunk
    (its last entry, the padding, repeated or cut to the chunk's length), so encoding them
    gives the empty prompt's embedding at each row's position."""
    out = {}
    for key, chunks in tokens.items():
        empty = list(empty_tokens[key][0])
        out[key] = [[empty[min(i, len(empty) - 1)] for i in range(len(chunk))] for chunk in chunks]
    return out


def strip_word_ids(tokens):
    """(token, weight, word_id) entries as the (token, weight) pairs ``clip.tokenize(text)`` gives."""
    return {key: [[(entry[0], entry[1]) for entry in chunk] for chunk in chunks] for key, chunks in tokens.items()}


def _row_text(rows_text, row):
    weight = f"  weight {row.weight:g}" if row.weight != 1.0 else ""
    return f"    {rows_text:<16} {row.role:<8} {row.label}{weight}"


def format_encoder_map(encoder, where, chunks, first_row=None):
    """Readable lines for one encoder: one per row, runs of identical padding folded.

    ``first_row`` None means the encoder adds no rows (Flux's CLIP-L feeds only the pooled
    output): positions are then counted within each chunk."""
    lines = [f"{encoder}: {where}"]
    start = first_row or 0
    for number, chunk in enumerate(chunks, start=1):
        if first_row is None:
            start = 0
        unit = "positions" if first_row is None else "rows"
        lines.append(f"  chunk {number} ({unit} {start}-{start + len(chunk) - 1})")
        index = 0
        while index < len(chunk):
            end = index
            if chunk[index].role == PADDING:
                while end + 1 < len(chunk) and chunk[end + 1] == chunk[index]:
                    end += 1
            first, last = start + index, start + end
            rows_text = str(first) if first == last else f"{first}-{last} ({last - first + 1}x)"
            lines.append(_row_text(rows_text, chunk[index]))
            index = end + 1
        start += len(chunk)
    return lines


def format_token_map(family_name, pooled_source, rows, columns, blocks):
    """The token map text: the text encoder family, the conditioning's size (``rows`` x
    ``columns``), where its pooled output is read, then each encoder's rows (``blocks``:
    EncoderRows, ``first_row`` None for one that adds no rows)."""
    lines = [
        f"Text encoder: {family_name}",
        f"Conditioning: {rows} rows x {columns} columns",
        f"pooled_output: {pooled_source}",
        "Roles: SOS = start token, prompt = a prompt token, EOS = the first end token, "
        "padding = the rows after it",
        "",
    ]
    for block in blocks:
        if block.first_row is None:
            where = "feeds only the pooled output, adds no rows"
        else:
            where = (f"rows {block.first_row}-{block.first_row + block.row_count - 1}, "
                     f"columns {block.columns[0]}-{block.columns[1] - 1}")
        lines += format_encoder_map(f"{block.name} (tokens '{block.key}')", where, block.chunks, block.first_row)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
