"""Output projection + cross-entropy computed chunk by chunk, gradients included.

With a 32k vocabulary the [tokens, vocab] logits are the largest activation of a small LLaMA, and the
standard path writes them, reads them for log-softmax, writes the log-probabilities, then reads and
writes them twice more in the backward pass. Here each chunk of rows is projected, reduced to its loss,
turned into its logit gradient (softmax - one_hot) and immediately multiplied back into the gradients of
the hidden states and of the output matrix, while it is still in cache; the full logits never exist.
The backward pass only scales the stored gradients. Same mean and ignore_index semantics as
F.cross_entropy (a batch whose targets are all ignored gives nan, as there).
"""

from __future__ import annotations

import torch


def default_chunk_rows(vocab_size: int, device: torch.device | str = "cpu") -> int:
    """Rows per chunk: ~8 MiB of fp32 logits on a CPU (cache-friendly; below ~256 rows the matmuls lose
    efficiency, measured at vocab 32k), ~256 MiB on an accelerator, where bigger matmuls run faster and
    fewer chunks keep a compiled graph small. Always a multiple of 128 rows (tensor-core and matmul tile
    friendly: 2,048 rather than 2,097 at vocab 32k on a GPU)."""
    budget = 1 << 21 if torch.device(device).type == "cpu" else 1 << 26
    return max(256, budget // vocab_size // 128 * 128)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, weight, targets, ignore_index: int, chunk_rows: int):
        valid = targets != ignore_index
        safe_targets = targets.masked_fill(~valid, 0)[:, None]
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for start in range(0, h.shape[0], chunk_rows):
            rows = slice(start, start + chunk_rows)
            hc, tc, vc = h[rows], safe_targets[rows], valid[rows, None]
            logits = (hc @ weight.t()).float()  # follows autocast for the matmul, softmax math in fp32
            log_probs = torch.log_softmax(logits, dim=-1)
            del logits
            total -= (log_probs.gather(1, tc) * vc).sum()
            grad_logits = log_probs.exp_()  # softmax, in place
            grad_logits.scatter_add_(1, tc, -vc.to(grad_logits.dtype))
            grad_logits.mul_(vc)
            grad_logits = grad_logits.to(weight.dtype)  # under autocast the matmuls below cast it again
            grad_h[rows] = grad_logits @ weight
            grad_w += grad_logits.t() @ hc
        count = valid.sum()
        ctx.save_for_backward(grad_h, grad_w, count)
        ctx.weight_dtype = weight.dtype
        return total / count

    @staticmethod
    def backward(ctx, grad_loss):
        grad_h, grad_w, count = ctx.saved_tensors
        scale = grad_loss / count
        return (grad_h * scale.to(grad_h.dtype)), (grad_w * scale).to(ctx.weight_dtype), None, None, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
                         ignore_index: int = -100, chunk_rows: int | None = None) -> torch.Tensor:
    """mean CE of (h @ weight.T) against targets; h [N, d], weight [V, d], targets [N] (long)."""
    rows = chunk_rows or default_chunk_rows(weight.shape[0], h.device)
    return _LinearCrossEntropy.apply(h, weight, targets, ignore_index, rows)
