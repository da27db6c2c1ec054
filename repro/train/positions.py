"""Per-document position ids for packed sequences (intra-document masking).

A training window packs several documents separated by EOS (the tokenizer appends EOS to
every document). SmolLM3 trained with intra-document masking and positions restarting at
every document (nanotron `_use_doc_masking`, `return_positions`; FACTS 3.3). transformers
derives the same mask from position ids alone: when `attention_mask` is None and the
position ids of a row restart, `masking_utils.find_packed_sequence_indices` splits the row
into sequences and the causal mask becomes block-diagonal (sdpa, eager and flex alike). So
the only thing training has to supply is the position ids.

A window may start in the middle of a document (windows are cut at fixed offsets); that
document's positions then start at 0 at the window start, as in nanotron.
"""

from __future__ import annotations

import torch


def document_position_ids(inputs, eos_id: int) -> torch.Tensor:
    """(batch, seq) position ids restarting at 0 on the token after every EOS (the EOS ends
    its document). Accepts a tensor or an array of token ids."""
    if not torch.is_tensor(inputs):
        import numpy as np

        inputs = torch.as_tensor(np.asarray(inputs))
    if inputs.dim() != 2:
        raise ValueError(f"document_position_ids expects (batch, seq) token ids, got shape {tuple(inputs.shape)}")
    batch, seq = inputs.shape
    starts = torch.zeros((batch, seq), dtype=torch.bool, device=inputs.device)
    starts[:, 0] = True
    starts[:, 1:] = inputs[:, :-1] == eos_id
    index = torch.arange(seq, device=inputs.device).expand(batch, seq)
    last_start = torch.where(starts, index, torch.zeros_like(index)).cummax(dim=1).values
    return index - last_start
